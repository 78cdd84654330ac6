"""``scheduled_at``: ISO 8601, or natural language as Resend accepts ("in 1 hour"). Pure."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from postyard.core.errors import ValidationFailed

MAX_AHEAD = timedelta(days=30)
_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}  # fmt: skip
_PART = r"(?<![a-z0-9])(\d+|an?(?=\s)|one(?=\s))\s*([a-z]+)\b"
_RELATIVE = re.compile(rf"^in\s+{_PART}(?:\s*(?:,|and)?\s*{_PART})*$")
_PARTS = re.compile(_PART)


def _relative(text: str) -> timedelta | None:
    if not _RELATIVE.match(text):
        return None
    total = 0
    for amount, unit in _PARTS.findall(text[2:]):
        if unit not in _UNITS:
            return None
        count = 1 if amount in {"a", "an", "one"} else int(amount)
        total += count * _UNITS[unit]
    return timedelta(seconds=total)


def parse_scheduled_at(value: str, *, now: datetime) -> datetime:
    """The UTC instant ``value`` names; raises ValidationFailed when it cannot be read, is in
    the past, or is more than 30 days ahead. A time without offset is taken as UTC."""
    text = value.strip().lower()
    delta = _relative(text)
    if delta is not None:
        when = now + delta
    else:
        try:
            when = datetime.fromisoformat(
                value.strip().replace("Z", "+00:00").replace("z", "+00:00")
            )
        except ValueError:
            msg = (
                "Invalid `scheduled_at` field: use ISO 8601 (e.g. 2026-08-05T11:52:01Z) "
                "or natural language like 'in 1 hour'."
            )
            raise ValidationFailed(msg) from None
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    if when < now:
        raise ValidationFailed("Invalid `scheduled_at` field: the time is in the past.")
    if when - now > MAX_AHEAD:
        raise ValidationFailed("Invalid `scheduled_at` field: at most 30 days ahead.")
    return when
