"""LISTEN/NOTIFY wake-ups: a trigger only (tables hold the truth, so a lost notification
means a short delay until the next poll, never lost work)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
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
    process, sent on its own autocommit statement, and after one is sent the next waits
    until ``min_interval`` seconds have passed (pokes meanwhile share it): the first commit
    after a quiet spell wakes the workers at once, a steady stream at most that often.
    Losing one only costs a poll interval.
    """

    def __init__(
        self,
        db: Database,
        channel: str,
        *,
        min_interval: float = 0.0,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._db = db
        self._channel = channel
        self._min_interval = min_interval
        self._sleep = sleep
        self._pending: asyncio.Task[None] | None = None
        self._again = False

    def poke(self) -> None:
        if self._pending is not None and not self._pending.done():
            self._again = True
            return
        self._pending = asyncio.create_task(self._notify())

    async def _notify(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._again = False
            sent_at = loop.time()
            try:
                async with self._db.system_conn(reason="wake workers") as conn:
                    await conn.execute("SELECT pg_notify($1, '')", self._channel)
            except Exception:  # a trigger only: the workers' poll picks the rows up anyway
                log.warning("could not notify workers", exc_info=True)
                return
            if self._min_interval > 0:
                await self._sleep(max(0.0, sent_at + self._min_interval - loop.time()))
            if not self._again:
                return

    async def aclose(self) -> None:
        if self._pending is not None:
            await asyncio.gather(self._pending, return_exceptions=True)
