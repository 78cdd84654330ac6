"""Identifiers. UUIDv7 (RFC 9562) so ids sort by creation time and serve as cursors."""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime


def uuid7(now_ms: int | None = None) -> uuid.UUID:
    """A UUIDv7: 48-bit Unix milliseconds, version and variant bits, 74 random bits."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF
    return uuid.UUID(int=value)


def parse_uuid(value: str) -> uuid.UUID | None:
    """The UUID in ``value``, or None when it is not one (ids from clients)."""
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def uuid7_batch(count: int, now_ms: int | None = None) -> list[uuid.UUID]:
    """``count`` UUIDv7s of one millisecond, from one read of the OS random source (a
    system call per id is measurable at thousands of rows a second)."""
    ms = (time.time_ns() // 1_000_000 if now_ms is None else now_ms) & 0xFFFF_FFFF_FFFF
    head = (ms << 80) | (0x7 << 76) | (0b10 << 62)
    pool = os.urandom(10 * count)
    ids = []
    for offset in range(0, 10 * count, 10):
        rand = int.from_bytes(pool[offset : offset + 10], "big")
        ids.append(
            uuid.UUID(int=head | ((rand >> 62) & 0xFFF) << 64 | rand & 0x3FFF_FFFF_FFFF_FFFF)
        )
    return ids


def uuid7_floor(at: datetime) -> uuid.UUID:
    """The smallest UUIDv7 of ``at``'s millisecond: every UUIDv7 made earlier sorts below it,
    every one made then or later at or above it (the time is the top 48 bits)."""
    ms = int(at.timestamp() * 1000) & 0xFFFF_FFFF_FFFF
    return uuid.UUID(int=(ms << 80) | (0x7 << 76) | (0b10 << 62))
