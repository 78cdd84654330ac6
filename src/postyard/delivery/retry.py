"""Retry policy as data, and the pure function that schedules the next attempt.

RFC 5321 §4.5.4.1 asks senders to back off and to give up only after days; Postfix backs off
without jitter, which makes deferred mail for one destination retry in a herd. The schedule
here grows along a list of delays, keeps the last one once the list runs out, spreads each
delay by a symmetric random fraction, and gives up once the next attempt would fall after
``max_age`` from the first attempt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

_DEFAULT_DELAYS = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(minutes=30),
    timedelta(hours=1),
    timedelta(hours=2),
    timedelta(hours=4),
    timedelta(hours=8),
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to retry a deferred delivery.

    ``delays[i]`` is the wait after attempt ``i + 1``; ``max_age`` bounds the time from the
    first attempt to the last; ``jitter`` is the fraction (0 <= jitter < 1) by which each
    delay may be lengthened or shortened. Raises ValueError for a policy that cannot work.
    """

    delays: tuple[timedelta, ...] = _DEFAULT_DELAYS
    max_age: timedelta = timedelta(hours=72)
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if not self.delays:
            raise ValueError("a retry policy needs at least one delay")
        if any(delay <= timedelta(0) for delay in self.delays):
            raise ValueError("retry delays must be positive")
        if self.max_age <= timedelta(0):
            raise ValueError("max_age must be positive")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError("jitter must be in [0, 1)")


def next_attempt(
    policy: RetryPolicy,
    *,
    attempts: int,
    first_attempt_at: datetime,
    now: datetime,
    rand: Callable[[], float],
) -> datetime | None:
    """When to try again after ``attempts`` attempts (the latest one ending at ``now``).

    Returns ``now + delay * (1 + jitter * (2 * rand() - 1))``, where ``delay`` is
    ``policy.delays[attempts - 1]`` (the last delay once the list runs out), or None when
    that moment would be more than ``policy.max_age`` after ``first_attempt_at``: give up.
    ``rand`` returns a float in [0, 1], e.g. ``random.random``; it is called at most once.

    Raises ValueError when ``attempts < 1``, a datetime is naive, or ``rand`` leaves [0, 1].
    """
    if attempts < 1:
        raise ValueError("attempts counts attempts already made, so it is at least 1")
    if first_attempt_at.tzinfo is None or now.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware (UTC)")
    delay = policy.delays[min(attempts, len(policy.delays)) - 1]
    sample = rand()
    if not 0.0 <= sample <= 1.0:
        raise ValueError(f"rand() must return a value in [0, 1], not {sample!r}")
    when = now + delay * (1.0 + policy.jitter * (2.0 * sample - 1.0))
    if when - first_attempt_at > policy.max_age:
        return None
    return when
