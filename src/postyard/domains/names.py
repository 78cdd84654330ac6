"""Domain names users add (pure): IDNA, syntax, and public suffixes."""

from __future__ import annotations

import functools
import re

from publicsuffixlist import PublicSuffixList

from postyard.core.errors import ValidationFailed

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


@functools.cache
def _public_suffixes() -> PublicSuffixList:
    # The list ships with the package; building the lookup once is a constant, not state.
    return PublicSuffixList()


def normalize_domain(value: str) -> str:
    """The ASCII (IDNA A-label) lowercase form of a domain a tenant may register.

    Raises ValidationFailed for syntax errors, single labels and public suffixes (``co.uk``).
    """
    text = value.strip().rstrip(".").lower()
    if not text or len(text) > 253 or any(c in text for c in "\r\n\t @/\\:"):
        msg = f"Invalid `name` field: {value!r} is not a domain name."
        raise ValidationFailed(msg)
    try:
        ascii_name = text.encode("idna").decode("ascii")
    except UnicodeError:
        msg = f"Invalid `name` field: {value!r} is not a valid internationalised domain name."
        raise ValidationFailed(msg) from None
    labels = ascii_name.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        msg = f"Invalid `name` field: {value!r} is not a domain name."
        raise ValidationFailed(msg)
    if _public_suffixes().is_public(ascii_name):
        msg = (
            f"Invalid `name` field: {value!r} is a public suffix; add a domain you own "
            "under it (e.g. example.co.uk)."
        )
        raise ValidationFailed(msg)
    return ascii_name


def validate_subdomain_label(value: str, *, field: str) -> str:
    """A single DNS label such as the return-path subdomain ``send``."""
    label = value.strip().lower()
    if not _LABEL.match(label):
        msg = f"Invalid `{field}` field: {value!r} must be one DNS label (letters, digits, -)."
        raise ValidationFailed(msg)
    return label
