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
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class ClaimGate(Generic[T]):
    """Lanes of one process claim one at a time, and while work trickles in, not more often
    than every ``interval`` seconds (the claim interval).

    Every commit wakes every lane. A lane claiming for itself ran a claim to find what the
    first one took, and a lane that claimed again right after its batch took the one or two
    rows committed meanwhile: most of a process's CPU per row went on claims when rows
    arrive one by one. Through the gate, a lane that asked while a claim ran skips its own
    when a claim that began after it asked took every due row (that claim saw all it was
    woken for). And after a claim that took every due row, the next waits until ``interval``
    seconds have passed since, so rows committed meanwhile are claimed together; with a
    backlog (a claim that left rows behind) the next claim starts at once.
    """

    def __init__(
        self,
        interval: float = 0.0,
        *,
        monotonic: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._interval = interval
        self._monotonic = monotonic
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._begun = 0
        self._took_all_at = 0
        """The number of the last claim that left no due row behind (0: none yet)."""
        self._took_all_ended = 0.0
        """When that claim ended (``monotonic`` time)."""

    def _now(self) -> float:
        return self._monotonic() if self._monotonic else asyncio.get_running_loop().time()

    async def claim(self, run: Callable[[], Awaitable[tuple[T, bool]]]) -> T | None:
        """``run()``'s result, or None when a claim that began after this call took every
        due row. ``run`` returns its result and whether it took every due row."""
        asked = self._begun
        async with self._lock:
            if self._took_all_at > asked:
                return None
            if self._interval > 0 and self._took_all_at == self._begun > 0:
                wait = self._took_all_ended + self._interval - self._now()
                if wait > 0:
                    await self._sleep(wait)
            self._begun += 1
            begun = self._begun
            result, took_all = await run()
            if took_all:
                self._took_all_at = begun
                self._took_all_ended = self._now()
        return result


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
