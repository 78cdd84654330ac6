"""Group commit: the accepts of concurrent callers with the same key (the SMTP relay's is
the principal: one tenant, one API key) committed together, in one transaction, each caller
answered with its own result.

A transaction's fixed costs (BEGIN with the tenant setting, the context read, the write
statement's planning and round trips, COMMIT's WAL flush) dominate a single message's
accept; shared by a group they almost vanish. Callers of ``submit`` wait while their item is
in a group. A group starts ``window`` seconds after its first item arrives (on the loop's
next turn with a window of 0; at once when ``max_items`` are waiting). While it commits, the
items that arrive queue for the next group, which starts as soon as the previous commit has
finished and carries all of them (up to ``max_items``). Under no load a caller waits for its
own commit only; under load the groups grow with it. One group per key commits at a time;
groups of different keys run side by side.

What is guaranteed:

- A caller's ``submit`` returns only after the transaction that held its item committed
  (``commit`` returned), and returns its own result.
- A failed group fails every member with the group's exception: none of them is answered as
  if stored. When ``split_on(exc)`` says the failure may come from one item's data (a
  constraint, a value the database refuses), the members are committed one by one instead,
  so only the item at fault fails.
- An item's own refusal (``commit`` returns an exception in its place) fails that caller
  only.
- A caller that is cancelled before its group starts is left out of it; once its group has
  started, the commit goes on without it, as when a connection drops between a commit and
  its reply (the client may send the message again: RFC 5321 section 6.1 accepts that
  duplicate rather than a loss).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")

Commit = Callable[[K, Sequence[T]], Awaitable[Sequence[R | Exception]]]
"""Commit the items of one key in one transaction; one result or refusal per item, in
order. Raises when the transaction did not commit."""


@dataclass(slots=True)
class _Waiting(Generic[T, R]):
    item: T
    answer: asyncio.Future[R] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def _no_split(_: BaseException) -> bool:
    return False


class GroupCommitter(Generic[K, T, R]):
    """Per-process group commit over ``commit`` (see the module docstring). Holds only
    the items waiting and the running groups; create one at start-up, ``aclose`` on exit."""

    def __init__(
        self,
        commit: Commit[K, T, R],
        *,
        window: float = 0.0,
        max_items: int = 100,
        split_on: Callable[[BaseException], bool] = _no_split,
    ) -> None:
        if window < 0 or max_items < 1:
            raise ValueError("window must be >= 0 and max_items >= 1")
        self._commit = commit
        self._window = window
        self._max_items = max_items
        self._split_on = split_on
        self._waiting: dict[K, list[_Waiting[T, R]]] = {}
        self._groups: dict[K, asyncio.Task[None]] = {}
        self._full: dict[K, asyncio.Event] = {}
        """Set when ``max_items`` are waiting for a group that is still in its window."""

    async def submit(self, key: K, item: T) -> R:
        """``item``'s result once the transaction that held it committed. Raises the
        item's refusal, or the exception of its group's failed commit."""
        waiting: _Waiting[T, R] = _Waiting(item)
        queue = self._waiting.setdefault(key, [])
        queue.append(waiting)
        if key not in self._groups:
            self._full[key] = asyncio.Event()
            self._groups[key] = asyncio.get_running_loop().create_task(self._run(key))
        if len(queue) >= self._max_items and key in self._full:
            self._full[key].set()
        return await waiting.answer

    async def aclose(self) -> None:
        """Start the groups still in their window now, and wait for every group (new
        submits still join)."""
        for full in self._full.values():
            full.set()
        while self._groups:
            await asyncio.gather(*self._groups.values(), return_exceptions=True)

    async def _run(self, key: K) -> None:
        try:
            if self._window > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._window):
                        await self._full[key].wait()
            else:
                await asyncio.sleep(0)
            del self._full[key]  # the window is over: no need to say when it is full
            while group := self._take(key):
                await self._commit_group(key, group)
        finally:
            # Nothing waits here unless this task was cancelled (the loop is closing): fail
            # those items rather than leave their callers waiting.
            del self._groups[key]
            self._full.pop(key, None)
            for waiting in self._waiting.pop(key, []):
                _answer(waiting, RuntimeError("group commit stopped"))

    def _take(self, key: K) -> list[_Waiting[T, R]]:
        queue = self._waiting.get(key, [])
        live = [w for w in queue if not w.answer.done()]  # cancelled callers drop out
        group, rest = live[: self._max_items], live[self._max_items :]
        if rest:
            self._waiting[key] = rest
        else:
            self._waiting.pop(key, None)
        return group

    async def _commit_group(self, key: K, group: list[_Waiting[T, R]]) -> None:
        try:
            results = await self._commit(key, [w.item for w in group])
        except Exception as exc:  # noqa: BLE001 - handed to every member's caller
            if len(group) > 1 and self._split_on(exc):
                for waiting in group:
                    await self._commit_group(key, [waiting])
                return
            for waiting in group:
                _answer(waiting, exc)
            return
        except BaseException:
            for waiting in group:
                _answer(waiting, RuntimeError("group commit stopped"))
            raise
        if len(results) != len(group):  # a bug of ``commit``: never answer as if stored
            results = [RuntimeError("commit returned a result count unlike its items'")] * len(
                group
            )
        for waiting, result in zip(group, results, strict=True):
            _answer(waiting, result)


def _answer(waiting: _Waiting[T, R], result: R | Exception) -> None:
    if waiting.answer.done():  # the caller was cancelled meanwhile
        return
    if isinstance(result, Exception):
        waiting.answer.set_exception(result)
    else:
        waiting.answer.set_result(result)
