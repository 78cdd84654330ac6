"""Lanes: several copies of one batch loop in the running event loop, woken early by an
event, next to a periodic maintenance loop. The delivery worker and the webhook dispatcher
both run this way, so that database round trips and network I/O of one lane overlap with
the others'.

A lane runs batches back to back while they find work, then waits for ``wake`` (set after a
commit that made work due) or ``poll_interval``, whichever comes first. A failed batch or
maintenance round is logged and the loop goes on: rows a failed batch held come back when
their lease expires. Lanes finish the batch they hold once ``stop`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Lanes:
    name: str
    """What runs, for the logs ("delivery", "webhook")."""
    lanes: int
    batch: Callable[[], Awaitable[int]]
    """One claim-and-process round; returns how much it did (0: nothing was due)."""
    wake: asyncio.Event
    poll_interval: float
    maintain: Callable[[], Awaitable[None]]
    maintenance_interval: float

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; lanes finish their batch before returning."""
        tasks = [asyncio.create_task(self._lane(stop)) for _ in range(self.lanes)]
        tasks.append(asyncio.create_task(self._maintenance(stop)))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _lane(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.wake.clear()
            try:
                if await self.batch():
                    continue
            except Exception:  # a lane must outlive a database hiccup
                log.exception("%s batch failed", self.name)
            waiters = [asyncio.create_task(self.wake.wait()), asyncio.create_task(stop.wait())]
            await asyncio.wait(
                waiters, timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in waiters:
                waiter.cancel()

    async def _maintenance(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.maintain()
            except Exception:  # maintenance must outlive a database or DNS hiccup
                log.exception("%s maintenance failed", self.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.maintenance_interval)
