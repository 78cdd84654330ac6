"""The retry ladder and the auto-disable rule (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from postyard.webhooks.retry import DISABLE_AFTER, LADDER, Verdict, decide, should_disable

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_the_ladder_is_svix_s() -> None:
    hours = [d / timedelta(hours=1) for d in LADDER]
    assert hours == [0, 5 / 3600, 5 / 60, 0.5, 2, 5, 10, 10]


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_any_2xx_succeeds(status: int) -> None:
    decision = decide(status=status, error=None, attempts=1, now=NOW, rand=lambda: 0.5)
    assert decision.verdict is Verdict.SUCCEEDED


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (301, "redirect"),
        (302, "redirect"),
        (400, "HTTP 400"),
        (500, "HTTP 500"),
        (None, "connect timeout"),
        (200, "incomplete answer"),
    ],
)
def test_everything_else_is_retried_on_the_next_rung(status: int | None, error: str) -> None:
    for attempts in range(1, len(LADDER)):
        decision = decide(status=status, error=error, attempts=attempts, now=NOW, rand=lambda: 0.5)
        assert (decision.verdict, decision.next_attempt_at) == (
            Verdict.RETRY,
            NOW + LADDER[attempts],
        )


def test_jitter_spreads_by_ten_percent_either_way() -> None:
    low = decide(status=500, error="x", attempts=2, now=NOW, rand=lambda: 0.0)
    high = decide(status=500, error="x", attempts=2, now=NOW, rand=lambda: 1.0)
    assert low.next_attempt_at == NOW + timedelta(minutes=4.5)
    assert high.next_attempt_at == NOW + timedelta(minutes=5.5)


def test_the_last_rung_exhausts_and_410_is_gone() -> None:
    last = decide(status=500, error="x", attempts=len(LADDER), now=NOW, rand=lambda: 0.5)
    assert last.verdict is Verdict.EXHAUSTED and last.next_attempt_at is None
    gone = decide(status=410, error="HTTP 410", attempts=1, now=NOW, rand=lambda: 0.5)
    assert gone.verdict is Verdict.GONE


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        decide(status=500, error="x", attempts=0, now=NOW, rand=lambda: 0.5)
    with pytest.raises(ValueError, match="rand"):
        decide(status=500, error="x", attempts=1, now=NOW, rand=lambda: 1.5)


def test_disable_after_five_days_of_failures() -> None:
    assert timedelta(days=5) == DISABLE_AFTER
    assert not should_disable(None, NOW)
    assert not should_disable(NOW - DISABLE_AFTER + timedelta(seconds=1), NOW)
    assert should_disable(NOW - DISABLE_AFTER, NOW)
