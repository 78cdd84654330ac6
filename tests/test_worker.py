"""How a worker process's share divides the per-process limits (pure)."""

from __future__ import annotations

import pytest

from postyard.worker import ONE_PROCESS, Share


def test_a_process_alone_keeps_every_limit() -> None:
    assert Share.parse("0/1") == ONE_PROCESS
    assert [ONE_PROCESS.part(n) for n in (1, 10, 600)] == [1, 10, 600]


@pytest.mark.parametrize(("limit", "count"), [(10, 2), (10, 3), (5, 4), (600, 3), (4, 4)])
def test_the_parts_add_up_to_the_limit(limit: int, count: int) -> None:
    parts = [Share(i, count).part(limit) for i in range(count)]
    assert sum(parts) == limit
    assert max(parts) - min(parts) <= 1


def test_each_process_gets_at_least_one() -> None:
    assert [Share(i, 3).part(2) for i in range(3)] == [1, 1, 1]


@pytest.mark.parametrize("value", ["2/2", "-1/2", "1", "a/b", "0/0"])
def test_a_bad_share_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match=r"share|invalid literal"):
        Share.parse(value)
