"""/v1/destinations: the shaping policies and the adaptive state of each destination site."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from postyard.core.http import Services
from postyard.core.json_route import JsonRoute
from postyard.delivery import shaping_state
from postyard.delivery.shaping import DEFAULT_POLICIES, SitePolicy, SiteState
from postyard.tenancy.auth import FullAccess

router = APIRouter(route_class=JsonRoute, prefix="/destinations", tags=["Destinations"])


class DestinationOut(BaseModel):
    object: Literal["destination"] = "destination"
    site: str
    max_connections: int
    messages_per_connection: int
    messages_per_minute: int = Field(description="The policy's rate.")
    current_rate: float = Field(description="Messages per minute allowed now (adaptive).")
    suspended_until: datetime | None
    throttles_in_a_row: int
    last_throttle: str | None = Field(description="The reply that last slowed the site down.")

    @classmethod
    def of(cls, site: str, policy: SitePolicy, state: SiteState | None) -> DestinationOut:
        return cls(
            site=site,
            max_connections=policy.max_connections,
            messages_per_connection=policy.messages_per_connection,
            messages_per_minute=policy.messages_per_minute,
            current_rate=state.rate if state else float(policy.messages_per_minute),
            suspended_until=state.suspended_until if state else None,
            throttles_in_a_row=state.throttles_in_a_row if state else 0,
            last_throttle=state.last_throttle if state else None,
        )


class DestinationList(BaseModel):
    object: Literal["list"] = "list"
    data: list[DestinationOut]


@router.get("")
async def list_destinations(principal: FullAccess, services: Services) -> DestinationList:
    """Each destination site's default policy and what the workers learned: the rate used
    now and any suspension after throttling replies. The state is shared by every tenant
    (the sending IPs are), and names no tenant."""
    async with services.db.system_tx(reason="destinations: shared shaping state") as session:
        states = {s.site: s for s in await shaping_state.load(session)}
    sites = sorted(set(DEFAULT_POLICIES) | set(states))
    default = DEFAULT_POLICIES["default"]
    return DestinationList(
        data=[DestinationOut.of(s, DEFAULT_POLICIES.get(s, default), states.get(s)) for s in sites]
    )
