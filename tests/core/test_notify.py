"""Wake-ups after commits: the first poke notifies at once, pokes while the minimum interval
runs share one more NOTIFY after it, and nothing is sent once nobody pokes. Real PostgreSQL
LISTEN/NOTIFY; the interval's sleep is the test's to end. The test's own notifications
(with a payload; the waker's have none) show what arrived before them: PostgreSQL delivers
notifications in commit order."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from postyard.core.db import Database, asyncpg_connect
from postyard.core.notify import Waker
from postyard.runtime import Runtime

GUARD_SECONDS = 60.0  # against a hang only; the waits end as soon as the NOTIFY arrives


class HeldSleep:
    """A sleep that lasts until the test lets it end."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self.sleeping = asyncio.Event()
        self._end = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        self.sleeping.set()
        await self._end.wait()
        self._end.clear()
        self.sleeping.clear()

    def end(self) -> None:
        self._end.set()


@contextlib.asynccontextmanager
async def notifications(runtime: Runtime, channel: str) -> AsyncIterator[asyncio.Queue[str]]:
    """The payloads of the notifications on ``channel``, in the order they arrive."""
    queue: asyncio.Queue[str] = asyncio.Queue()

    def on_notify(*args: Any) -> None:
        queue.put_nowait(args[3])

    conn = await asyncpg_connect(runtime.urls.system)
    try:
        await conn.add_listener(channel, on_notify)  # LISTEN has run when this returns
        async with asyncio.timeout(GUARD_SECONDS):
            yield queue
    finally:
        await conn.close()


async def _mark(db: Database, channel: str, payload: str) -> None:
    async with db.system_conn(reason="test: a notification of the test's own") as conn:
        await conn.execute("SELECT pg_notify($1, $2)", channel, payload)


def _channel() -> str:
    return f"test_wake_{uuid.uuid4().hex[:8]}"


async def test_pokes_during_the_interval_share_one_notify_after_it(
    db: Database, runtime: Runtime
) -> None:
    channel, sleep = _channel(), HeldSleep()
    async with notifications(runtime, channel) as got:
        waker = Waker(db, channel, min_interval=30.0, sleep=sleep)
        waker.poke()
        assert await got.get() == ""  # the first poke notified without waiting
        await sleep.sleeping.wait()
        assert 0 < sleep.asked[0] <= 30.0
        for _ in range(5):
            waker.poke()
        await _mark(db, channel, "during the interval")
        assert await got.get() == "during the interval"  # nothing from the waker before it
        sleep.end()
        assert await got.get() == ""  # the five pokes' one NOTIFY, once the interval ended
        await sleep.sleeping.wait()
        sleep.end()  # nobody poked during the second interval: the waker stops
        await waker.aclose()
        await _mark(db, channel, "end")
        assert await got.get() == "end"
    assert len(sleep.asked) == 2


async def test_without_an_interval_a_poke_after_the_last_notify_sends_another(
    db: Database, runtime: Runtime
) -> None:
    channel, sleep = _channel(), HeldSleep()
    async with notifications(runtime, channel) as got:
        waker = Waker(db, channel, sleep=sleep)
        for _ in range(3):
            waker.poke()  # one NOTIFY for the three: it is sent after all of them
        await waker.aclose()
        waker.poke()
        await waker.aclose()
        await _mark(db, channel, "end")
        assert [await got.get() for _ in range(3)] == ["", "", "end"]
    assert sleep.asked == []
