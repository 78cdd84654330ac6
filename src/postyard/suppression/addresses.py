"""The form addresses are kept in: ``local@domain`` with the domain in its ASCII (IDNA) form,
which is how sending stores recipients, so that a list entry matches what is sent to."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

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
    try:
        # Every policy flag is explicit: email-validator's module-level defaults are mutable
        # globals. Same policy as the addresses sending accepts.
        valid = validate_email(
            text,
            check_deliverability=False,
            allow_smtputf8=True,
            allow_empty_local=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            globally_deliverable=True,
            test_environment=True,
        )
    except EmailNotValidError as exc:
        raise ValidationFailed(f"{invalid} {exc}") from exc
    if "." not in valid.ascii_domain:
        raise ValidationFailed(f"{invalid} The domain needs a period.")
    return f"{valid.local_part}@{valid.ascii_domain}"
