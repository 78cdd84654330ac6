"""The retry ladder and the auto-disable rule (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from postyard.webhooks.retry import (
    DISABLE_AFTER,
    LADDER,
    MAX_RETRY_AFTER,
    Verdict,
    decide,
    retry_after_delay,
    should_disable,
)

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


def _after(status: int, retry_after: str, attempts: int = 1) -> datetime | None:
    decision = decide(
        status=status,
        error=f"HTTP {status}",
        attempts=attempts,
        now=NOW,
        rand=lambda: 0.5,
        retry_after=retry_after,
    )
    assert decision.verdict is Verdict.RETRY
    return decision.next_attempt_at


def test_a_429_or_503_waits_what_its_retry_after_asks() -> None:
    assert _after(429, "120") == NOW + timedelta(seconds=120)  # the rung is 5 s
    assert _after(503, "Tue, 01 Dec 2026 13:00:00 GMT") == NOW + timedelta(hours=1)
    assert _after(429, " 3600 ", attempts=3) == NOW + timedelta(hours=1)


def test_retry_after_never_shortens_the_rung_nor_parks_a_delivery_for_long() -> None:
    assert _after(429, "1", attempts=3) == NOW + LADDER[3]  # asks 1 s, the rung is 30 min
    assert _after(429, "Tue, 01 Dec 2026 11:00:00 GMT") == NOW + LADDER[1]  # a past date
    assert _after(503, "99999999999999999999") == NOW + MAX_RETRY_AFTER
    assert _after(429, "Sun, 01 Dec 2030 12:00:00 GMT") == NOW + MAX_RETRY_AFTER


@pytest.mark.parametrize("value", ["", "soon", "-5", "1.5", "\u00b2", "Tue, 99 Foo 2026"])
def test_a_retry_after_that_means_nothing_is_ignored(value: str) -> None:
    assert retry_after_delay(value, NOW) is None
    assert _after(429, value) == NOW + LADDER[1]


def test_retry_after_counts_only_on_429_and_503() -> None:
    assert _after(500, "3600") == NOW + LADDER[1]
    assert _after(502, "3600") == NOW + LADDER[1]
