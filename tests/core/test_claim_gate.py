"""The claim gate: lanes claim one at a time, a lane skips its claim when one that began after
it asked took every due row, and after such a claim the next waits out the settle time
(with a backlog it does not). Time is a fake clock here; nothing sleeps."""

from __future__ import annotations

import asyncio

from postyard.core.lanes import ClaimGate


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # a real sleep lets the other lanes run meanwhile


class Claims:
    """A claim that returns its number and whether it took every due row."""

    def __init__(self, time: FakeTime, *, took_all: bool = True) -> None:
        self.time = time
        self.took_all = took_all
        self.started_at: list[float] = []
        self.release = asyncio.Event()
        self.release.set()

    async def run(self) -> tuple[int, bool]:
        self.started_at.append(self.time.now)
        await self.release.wait()
        return len(self.started_at), self.took_all


async def test_lanes_that_asked_during_a_claim_share_the_next_one() -> None:
    time = FakeTime()
    gate = ClaimGate[int](monotonic=time.monotonic, sleep=time.sleep)
    claims = Claims(time)
    claims.release.clear()
    first = asyncio.create_task(gate.claim(claims.run))
    await asyncio.sleep(0)  # the first claim runs and waits
    others = [asyncio.create_task(gate.claim(claims.run)) for _ in range(3)]
    await asyncio.sleep(0)
    claims.release.set()
    results = [await first, *[await o for o in others]]
    # The first lane's claim may not have seen the rows the others were woken for; one
    # claim that began after they asked did, so the two remaining lanes skip theirs.
    assert results == [1, 2, None, None]
    assert time.sleeps == []  # no settle time asked for


async def test_after_a_claim_that_took_everything_the_next_waits_out_the_settle_time() -> None:
    time = FakeTime()
    gate = ClaimGate[int](0.05, monotonic=time.monotonic, sleep=time.sleep)
    claims = Claims(time)
    assert await gate.claim(claims.run) == 1  # the first claim ever does not wait
    time.now += 0.01
    assert await gate.claim(claims.run) == 2
    assert len(time.sleeps) == 1
    assert abs(time.sleeps[0] - 0.04) < 1e-9
    assert claims.started_at[1] - claims.started_at[0] >= 0.05 - 1e-9
    time.now += 1.0  # a claim long after the last one does not wait either
    assert await gate.claim(claims.run) == 3
    assert len(time.sleeps) == 1


async def test_a_claim_that_left_rows_behind_is_followed_at_once() -> None:
    time = FakeTime()
    gate = ClaimGate[int](0.05, monotonic=time.monotonic, sleep=time.sleep)
    backlog = Claims(time, took_all=False)
    assert [await gate.claim(backlog.run) for _ in range(3)] == [1, 2, 3]
    assert time.sleeps == []
    assert backlog.started_at == [100.0, 100.0, 100.0]


async def test_lanes_woken_during_the_settle_time_share_the_claim_after_it() -> None:
    time = FakeTime()
    gate = ClaimGate[int](0.05, monotonic=time.monotonic, sleep=time.sleep)
    claims = Claims(time)
    assert await gate.claim(claims.run) == 1
    lanes = [asyncio.create_task(gate.claim(claims.run)) for _ in range(4)]
    assert [await lane for lane in lanes] == [2, None, None, None]
    assert len(time.sleeps) == 1
