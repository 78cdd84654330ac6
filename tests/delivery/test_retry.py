"""The retry schedule: the list of delays, symmetric jitter, giving up at max_age."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from postyard.delivery.retry import RetryPolicy, next_attempt

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NO_JITTER = RetryPolicy(jitter=0.0)


def middle() -> float:
    return 0.5


def constant(value: float) -> Callable[[], float]:
    return lambda: value


def test_delays_follow_the_list_then_keep_the_last() -> None:
    waits = [
        next_attempt(NO_JITTER, attempts=n, first_attempt_at=T0, now=T0, rand=middle)
        for n in (1, 2, 3, 8, 9, 12)
    ]
    assert waits == [
        T0 + timedelta(minutes=1),
        T0 + timedelta(minutes=5),
        T0 + timedelta(minutes=15),
        T0 + timedelta(hours=8),
        T0 + timedelta(hours=8),
        T0 + timedelta(hours=8),
    ]


@pytest.mark.parametrize(("sample", "factor"), [(0.0, 0.9), (0.5, 1.0), (1.0, 1.1)])
def test_jitter_is_symmetric_and_bounded(sample: float, factor: float) -> None:
    now = T0 + timedelta(hours=1)
    when = next_attempt(
        RetryPolicy(), attempts=5, first_attempt_at=T0, now=now, rand=lambda: sample
    )
    assert when == now + timedelta(hours=1) * factor


def test_every_jittered_delay_stays_within_the_fraction() -> None:
    policy = RetryPolicy(jitter=0.25)
    samples = [i / 100 for i in range(101)]
    for sample in samples:
        when = next_attempt(policy, attempts=2, first_attempt_at=T0, now=T0, rand=constant(sample))
        assert when is not None
        assert timedelta(minutes=3.75) <= when - T0 <= timedelta(minutes=6.25)


def test_gives_up_when_the_next_attempt_would_pass_max_age() -> None:
    policy = RetryPolicy(max_age=timedelta(hours=72), jitter=0.0)
    just_fits = T0 + timedelta(hours=64)
    too_late = T0 + timedelta(hours=64, seconds=1)
    assert next_attempt(policy, attempts=20, first_attempt_at=T0, now=just_fits, rand=middle) == (
        T0 + timedelta(hours=72)
    )
    assert next_attempt(policy, attempts=20, first_attempt_at=T0, now=too_late, rand=middle) is None


def test_jitter_can_push_an_attempt_past_max_age() -> None:
    policy = RetryPolicy(max_age=timedelta(hours=72), jitter=0.1)
    now = T0 + timedelta(hours=64)
    assert next_attempt(policy, attempts=20, first_attempt_at=T0, now=now, rand=lambda: 0.0)
    assert next_attempt(policy, attempts=20, first_attempt_at=T0, now=now, rand=lambda: 1.0) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"delays": ()},
        {"delays": (timedelta(0),)},
        {"max_age": timedelta(0)},
        {"jitter": 1.0},
        {"jitter": -0.1},
    ],
)
def test_policies_that_cannot_work_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_misuse_raises() -> None:
    with pytest.raises(ValueError):
        next_attempt(NO_JITTER, attempts=0, first_attempt_at=T0, now=T0, rand=middle)
    with pytest.raises(ValueError):
        next_attempt(
            NO_JITTER, attempts=1, first_attempt_at=T0.replace(tzinfo=None), now=T0, rand=middle
        )
    with pytest.raises(ValueError):
        next_attempt(NO_JITTER, attempts=1, first_attempt_at=T0, now=T0, rand=lambda: 1.5)
