"""LISTEN/NOTIFY wake-ups: a trigger only (tables hold the truth, so a lost notification
means a short delay until the next poll, never lost work)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from postyard.core.db import Database, asyncpg_connect

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


class Waker:
    """Wakes listeners on ``channel`` after commits, coalescing bursts into one NOTIFY.

    A NOTIFY inside the accepting transaction would serialise every commit behind
    PostgreSQL's global notify-queue lock (no group commit: one fsync per request). Instead
    the adapter calls ``poke()`` after its commit; at most one NOTIFY is in flight per
    process, sent on its own autocommit statement. Losing one only costs a poll interval.
    """

    def __init__(self, db: Database, channel: str) -> None:
        self._db = db
        self._channel = channel
        self._pending: asyncio.Task[None] | None = None
        self._again = False

    def poke(self) -> None:
        if self._pending is not None and not self._pending.done():
            self._again = True
            return
        self._pending = asyncio.create_task(self._notify())

    async def _notify(self) -> None:
        while True:
            self._again = False
            try:
                async with self._db.system_conn(reason="wake workers") as conn:
                    await conn.execute("SELECT pg_notify($1, '')", self._channel)
            except Exception:  # a trigger only: the workers' poll picks the rows up anyway
                log.warning("could not notify workers", exc_info=True)
                return
            if not self._again:
                return

    async def aclose(self) -> None:
        if self._pending is not None:
            await asyncio.gather(self._pending, return_exceptions=True)
