"""Per-API-key request rate limit: fixed one-second windows counted in PostgreSQL, so the
limit holds across every API process."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from postyard.core.errors import RateLimitExceeded
from postyard.tenancy.models import RateLimitWindow

WINDOW = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class RateState:
    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        return {
            "ratelimit-limit": str(self.limit),
            "ratelimit-remaining": str(self.remaining),
            "ratelimit-reset": str(self.reset_seconds),
        }


def check(count: int, *, limit: int) -> RateState:
    """The headers' state for the ``count``-th request of the window; raises
    RateLimitExceeded over ``limit`` (the count itself is taken while authenticating)."""
    state = RateState(limit=limit, remaining=max(0, limit - count), reset_seconds=1)
    if count > limit:
        msg = f"Too many requests: this API key may make {limit} requests per second."
        raise RateLimitExceeded(msg, headers={**state.headers(), "retry-after": "1"})
    return state


async def forget_old_windows(session: AsyncSession, *, now: datetime) -> int:
    """Delete finished windows (maintenance; session: a system_tx)."""
    result = await session.execute(
        delete(RateLimitWindow).where(RateLimitWindow.window_start < now - 60 * WINDOW)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
