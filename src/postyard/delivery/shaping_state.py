"""The shaping state in ``destination_states``: workers publish throttles and recoveries and
adopt each other's; the API and CLI read it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from postyard.delivery.models import DestinationState
from postyard.delivery.shaping import SiteState


def _state(row: DestinationState) -> SiteState:
    return SiteState(
        site=row.site,
        rate=row.rate,
        suspended_until=row.suspended_until,
        throttles_in_a_row=row.throttles_in_a_row,
        last_change=row.last_change,
        last_throttle=row.last_throttle,
    )


async def publish(session: AsyncSession, states: Sequence[SiteState], *, now: datetime) -> None:
    """Store each site's state (system session)."""
    for state in states:
        values = {
            "rate": state.rate,
            "suspended_until": state.suspended_until,
            "throttles_in_a_row": state.throttles_in_a_row,
            "last_throttle": state.last_throttle,
            "last_change": state.last_change,
            "updated_at": now,
        }
        await session.execute(
            insert(DestinationState)
            .values(site=state.site, **values)
            .on_conflict_do_update(index_elements=["site"], set_=values)
        )


async def load(session: AsyncSession) -> list[SiteState]:
    """Every site's shared state, by site name (system session)."""
    rows = await session.scalars(select(DestinationState).order_by(DestinationState.site))
    return [_state(r) for r in rows]
