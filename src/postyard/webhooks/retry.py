"""The webhook retry ladder (Svix's, which Resend users know) and what a response means.

Pure functions: no clock, no I/O; the dispatcher passes ``now`` and a random source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum

LADDER = (
    timedelta(0),
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
"""``LADDER[i]`` is the wait before attempt ``i + 1``: immediately, then 5 s ... 10 h (about
28 hours in all, eight attempts)."""
JITTER = 0.1
BACKOFF_STATUSES = frozenset({429, 503})
"""Answers whose Retry-After field is honoured (RFC 6585 section 4, RFC 9110 section 10.2.3)."""
MAX_RETRY_AFTER = LADDER[-1]
"""The longest wait a Retry-After obtains: a receiver cannot park deliveries for longer."""
DISABLE_AFTER = timedelta(days=5)
"""An endpoint that has failed continuously for this long is disabled."""


class Verdict(StrEnum):
    SUCCEEDED = "succeeded"
    RETRY = "retry"
    EXHAUSTED = "exhausted"
    GONE = "gone"  # 410: the receiver says the endpoint is gone for good


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    next_attempt_at: datetime | None = None


def retry_after_delay(value: str, now: datetime) -> timedelta | None:
    """A Retry-After field's wait from ``now``: delay-seconds or an HTTP-date (RFC 9110
    section 10.2.3); None when it is neither (or empty). A date in the past waits 0."""
    value = value.strip()
    if value.isascii() and value.isdigit():  # not "²": str.isdigit takes it, int() does not
        return timedelta(seconds=min(int(value), int(MAX_RETRY_AFTER.total_seconds())))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; the obsolete forms may lack a zone
        when = when.replace(tzinfo=UTC)
    return max(when - now, timedelta(0))


def decide(
    *,
    status: int | None,
    error: str | None,
    attempts: int,
    now: datetime,
    rand: Callable[[], float],
    retry_after: str = "",
) -> Decision:
    """What follows attempt number ``attempts`` (1-based) that ended at ``now``.

    Only a 2xx without an error succeeds (redirects and everything else fail); 410 means
    gone; otherwise the next rung of ``LADDER``, spread by +-10 %, or exhausted after the
    last. A 429 or 503 with a ``retry_after`` field (as received) waits at least what it
    asks, at most MAX_RETRY_AFTER, never less than the rung. Raises ValueError for
    ``attempts < 1`` or ``rand()`` outside [0, 1].
    """
    if attempts < 1:
        raise ValueError("attempts counts attempts made, so it is at least 1")
    if error is None and status is not None and 200 <= status < 300:
        return Decision(Verdict.SUCCEEDED)
    if status == 410:
        return Decision(Verdict.GONE)
    if attempts >= len(LADDER):
        return Decision(Verdict.EXHAUSTED)
    sample = rand()
    if not 0.0 <= sample <= 1.0:
        raise ValueError(f"rand() must return a value in [0, 1], not {sample!r}")
    delay = LADDER[attempts] * (1.0 + JITTER * (2.0 * sample - 1.0))
    asked = retry_after_delay(retry_after, now) if status in BACKOFF_STATUSES else None
    if asked is not None:
        delay = max(delay, min(asked, MAX_RETRY_AFTER))
    return Decision(Verdict.RETRY, now + delay)


def should_disable(failing_since: datetime | None, now: datetime) -> bool:
    """True once an endpoint has been failing without a success for ``DISABLE_AFTER``."""
    return failing_since is not None and now - failing_since >= DISABLE_AFTER
