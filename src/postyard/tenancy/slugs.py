"""Organisation slugs (pure): lowercase ASCII letters, digits and single hyphens."""

from __future__ import annotations

import re
import unicodedata

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){0,62}$")


def slugify(name: str) -> str:
    """A slug derived from a display name; empty when nothing usable remains."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:63].rstrip("-")


def is_valid_slug(slug: str) -> bool:
    return bool(SLUG_RE.match(slug))
