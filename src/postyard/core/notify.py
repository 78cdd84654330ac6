"""LISTEN/NOTIFY wake-ups: a trigger only (tables hold the truth, so a lost notification
means a short delay until the next poll, never lost work)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from postyard.core.db import asyncpg_connect

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def listening(url: str, channel: str, wake: asyncio.Event) -> AsyncIterator[None]:
    """Set ``wake`` on every notification on ``channel`` while the block runs."""

    def on_notify(*_: Any) -> None:
        wake.set()

    conn = await asyncpg_connect(url)
    try:
        await conn.add_listener(channel, on_notify)
        yield
    finally:
        with contextlib.suppress(Exception):
            await conn.close(timeout=5)
