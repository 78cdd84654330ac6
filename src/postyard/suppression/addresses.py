"""The form addresses are kept in: ``local@domain`` with the domain in its ASCII (IDNA) form,
which is how sending stores recipients, so that a list entry matches what is sent to."""

from __future__ import annotations

from postyard.core.addr_spec import check_addr_spec
from postyard.core.errors import ValidationFailed

MAX_INPUT = 320


def normalize_address(value: str) -> str:
    """The addr-spec of ``value`` with an ASCII domain; raises ValidationFailed (naming the
    ``email`` field) for anything that is not one address. Letter case is kept: the list
    compares addresses case-insensitively."""
    text = value.strip()
    invalid = f"Invalid `email` field: {text[:80]!r} is not a valid email address."
    if not text or len(text) > MAX_INPUT:
        raise ValidationFailed(invalid)
    checked = check_addr_spec(text)
    if isinstance(checked, str):
        raise ValidationFailed(f"{invalid} {checked}")
    local, domain = checked
    return f"{local}@{domain}"
