"""The group commit's rules, without a database: who shares a commit, who gets which
answer, what happens when a commit fails. Commits are held on events the tests release, so
no test depends on timing (a large window is never waited out: full groups start at once)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from postyard.sending.group_commit import GroupCommitter

LONG_WINDOW = 3600.0  # never waited out: the tests fill their groups to max_items


class Refused(Exception):
    pass


class DataProblem(Exception):
    pass


class Ledger:
    """A commit function that records its groups; items named "refuse" are refused, items
    named "bad" make the whole commit fail, and ``hold`` keeps commits from finishing."""

    def __init__(self) -> None:
        self.groups: list[tuple[str, list[str]]] = []
        self.stored: list[str] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.entered = asyncio.Event()

    async def commit(self, key: str, items: Sequence[str]) -> list[str | Exception]:
        self.groups.append((key, list(items)))
        self.entered.set()
        await self.hold.wait()
        if "bad" in items:
            raise DataProblem("one item's data")
        if "down" in items:
            raise ConnectionError("database unreachable")
        results: list[str | Exception] = [
            Refused(item) if item == "refuse" else f"id-{item}" for item in items
        ]
        self.stored += [item for item in items if item != "refuse"]
        return results


async def _gather(
    committer: GroupCommitter[str, str, str], key: str, items: list[str]
) -> list[object]:
    return list(
        await asyncio.gather(
            *(committer.submit(key, item) for item in items), return_exceptions=True
        )
    )


async def test_items_that_arrive_together_share_one_commit_and_get_their_own_results() -> None:
    ledger = Ledger()
    committer = GroupCommitter(ledger.commit)
    results = await _gather(committer, "t1", ["a", "b", "c"])
    assert results == ["id-a", "id-b", "id-c"]
    assert ledger.groups == [("t1", ["a", "b", "c"])]


async def test_a_full_group_does_not_wait_for_its_window() -> None:
    ledger = Ledger()
    committer = GroupCommitter(ledger.commit, window=LONG_WINDOW, max_items=2)
    assert await _gather(committer, "t1", ["a", "b"]) == ["id-a", "id-b"]
    assert ledger.groups == [("t1", ["a", "b"])]


async def test_items_that_arrive_during_a_commit_go_together_in_the_next_one() -> None:
    ledger = Ledger()
    ledger.hold.clear()
    committer = GroupCommitter(ledger.commit)
    first = asyncio.ensure_future(committer.submit("t1", "a"))
    await ledger.entered.wait()  # "a" is committing alone
    later = asyncio.ensure_future(_gather(committer, "t1", ["b", "c", "d"]))
    await asyncio.sleep(0)  # let them queue (ordering only: nothing to wait out)
    assert not first.done()
    ledger.hold.set()
    assert await first == "id-a"
    assert await later == ["id-b", "id-c", "id-d"]
    assert ledger.groups == [("t1", ["a"]), ("t1", ["b", "c", "d"])]


async def test_max_items_splits_a_queue_into_several_groups() -> None:
    ledger = Ledger()
    committer = GroupCommitter(ledger.commit, max_items=2)
    results = await _gather(committer, "t1", ["a", "b", "c"])
    assert results == ["id-a", "id-b", "id-c"]
    assert ledger.groups == [("t1", ["a", "b"]), ("t1", ["c"])]


async def test_keys_never_share_a_group() -> None:
    ledger = Ledger()
    committer = GroupCommitter(ledger.commit)
    results = await asyncio.gather(
        committer.submit("t1", "a"), committer.submit("t2", "b"), committer.submit("t1", "c")
    )
    assert list(results) == ["id-a", "id-b", "id-c"]
    assert sorted(ledger.groups) == [("t1", ["a", "c"]), ("t2", ["b"])]


async def test_a_refused_item_fails_alone() -> None:
    ledger = Ledger()
    committer = GroupCommitter(ledger.commit)
    results = await _gather(committer, "t1", ["a", "refuse", "c"])
    assert results[0] == "id-a"
    assert isinstance(results[1], Refused)
    assert results[2] == "id-c"
    assert ledger.stored == ["a", "c"]


async def test_a_failed_commit_fails_every_member() -> None:
    ledger = Ledger()
    committer = GroupCommitter(ledger.commit, split_on=lambda e: isinstance(e, DataProblem))
    results = await _gather(committer, "t1", ["a", "down", "c"])
    assert all(isinstance(r, ConnectionError) for r in results)
    assert ledger.stored == []
    assert ledger.groups == [("t1", ["a", "down", "c"])]  # not retried one by one


async def test_a_failure_split_on_is_retried_one_by_one_so_only_the_culprit_fails() -> None:
    ledger = Ledger()
    committer = GroupCommitter(ledger.commit, split_on=lambda e: isinstance(e, DataProblem))
    results = await _gather(committer, "t1", ["a", "bad", "c"])
    assert results[0] == "id-a"
    assert isinstance(results[1], DataProblem)
    assert results[2] == "id-c"
    assert ledger.stored == ["a", "c"]
    assert ledger.groups == [
        ("t1", ["a", "bad", "c"]),
        ("t1", ["a"]),
        ("t1", ["bad"]),
        ("t1", ["c"]),
    ]


async def test_without_split_on_a_data_failure_fails_the_group() -> None:
    ledger = Ledger()
    committer = GroupCommitter(ledger.commit)
    results = await _gather(committer, "t1", ["a", "bad"])
    assert all(isinstance(r, DataProblem) for r in results)


async def test_nobody_is_answered_before_the_commit_returns() -> None:
    ledger = Ledger()
    ledger.hold.clear()
    committer = GroupCommitter(ledger.commit, window=LONG_WINDOW, max_items=2)
    waiting = asyncio.ensure_future(_gather(committer, "t1", ["a", "down"]))
    await ledger.entered.wait()
    for _ in range(10):  # many turns of the loop: still no answer while the commit runs
        await asyncio.sleep(0)
    assert not waiting.done()
    ledger.hold.set()
    assert all(isinstance(r, ConnectionError) for r in await waiting)


async def test_a_caller_cancelled_before_its_group_starts_is_left_out() -> None:
    ledger = Ledger()
    ledger.hold.clear()
    committer = GroupCommitter(ledger.commit)
    first = asyncio.ensure_future(committer.submit("t1", "a"))
    await ledger.entered.wait()
    gone = asyncio.ensure_future(committer.submit("t1", "gone"))
    kept = asyncio.ensure_future(committer.submit("t1", "kept"))
    await asyncio.sleep(0)
    gone.cancel()
    ledger.hold.set()
    assert await first == "id-a"
    assert await kept == "id-kept"
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert ledger.groups == [("t1", ["a"]), ("t1", ["kept"])]


async def test_aclose_waits_for_the_groups_being_committed() -> None:
    ledger = Ledger()
    ledger.hold.clear()
    committer = GroupCommitter(ledger.commit)
    caller = asyncio.ensure_future(committer.submit("t1", "a"))
    await ledger.entered.wait()
    caller.cancel()  # the session went away; its message is committed all the same
    closing = asyncio.ensure_future(committer.aclose())
    await asyncio.sleep(0)
    assert not closing.done()
    ledger.hold.set()
    await closing
    assert ledger.stored == ["a"]


def test_settings_are_checked() -> None:
    ledger = Ledger.__new__(Ledger)
    with pytest.raises(ValueError, match="max_items"):
        GroupCommitter(ledger.commit, max_items=0)
    with pytest.raises(ValueError, match="window"):
        GroupCommitter(ledger.commit, window=-1)


async def test_aclose_does_not_wait_out_a_window() -> None:
    ledger = Ledger()
    committer = GroupCommitter(ledger.commit, window=LONG_WINDOW, max_items=10)
    caller = asyncio.ensure_future(committer.submit("t1", "a"))
    await asyncio.sleep(0)  # "a" waits in its group's window
    async with asyncio.timeout(60):  # a guard against a hang, not a measurement
        await committer.aclose()
    assert await caller == "id-a"
