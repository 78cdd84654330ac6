"""Email tags, validated as Resend does: ASCII letters, digits, underscores and dashes. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

from postyard.core.errors import ValidationFailed

MAX_TAGS = 50
MAX_LENGTH = 256
_ALLOWED = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True, slots=True)
class Tag:
    name: str
    value: str


def validate_tags(pairs: list[tuple[str, str]]) -> tuple[Tag, ...]:
    """Tags in request order; raises ValidationFailed naming the bad tag."""
    if len(pairs) > MAX_TAGS:
        msg = f"Invalid `tags` field: at most {MAX_TAGS} tags."
        raise ValidationFailed(msg)
    seen: set[str] = set()
    tags = []
    for index, (name, value) in enumerate(pairs):
        for part, text in (("name", name), ("value", value)):
            if not text or len(text) > MAX_LENGTH or not _ALLOWED.match(text):
                msg = (
                    f"Invalid `tags[{index}].{part}` field: use 1-{MAX_LENGTH} ASCII letters, "
                    "numbers, underscores or dashes."
                )
                raise ValidationFailed(msg)
        if name in seen:
            msg = f"Invalid `tags[{index}].name` field: the tag {name!r} is repeated."
            raise ValidationFailed(msg)
        seen.add(name)
        tags.append(Tag(name, value))
    return tuple(tags)
