"""/v1/warmups: an organisation sees where its sending domains are on their warm-up ramps.
Read-only: starting, changing and ending a warm-up is the operator's (`postyard warmup`),
since it protects the reputation every tenant of the instance sends with."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from postyard.core.http import Services
from postyard.core.json_route import JsonRoute
from postyard.delivery import warmup
from postyard.delivery.warmup import WarmupPolicy, WarmupState
from postyard.tenancy.auth import FullAccess

router = APIRouter(route_class=JsonRoute, prefix="/warmups", tags=["Warm-up"])


class WarmupOut(BaseModel):
    object: Literal["warmup"] = "warmup"
    domain: str
    started_on: date
    schedule: list[int] = Field(
        description="The ramp in force: recipients allowed on day 1, 2, … (the instance's "
        "default ramp unless the operator gave this domain its own)."
    )
    day: int = Field(description="Today's day of the ramp, from 1 (past its end: finished).")
    finished: bool = Field(description="The ramp is over: the domain sends without a limit.")
    allowance_today: int | None = Field(description="Recipients allowed today; null: no limit.")
    sent_today: int
    ends_on: date = Field(description="The first day without a limit.")

    @classmethod
    def of(cls, state: WarmupState, policy: WarmupPolicy, now: datetime) -> WarmupOut:
        ramp = state.schedule or policy.schedule
        allowance, sent = warmup.today_of(state, policy, now)
        return cls(
            domain=state.domain,
            started_on=state.started_on,
            schedule=list(ramp),
            day=max((now.date() - state.started_on).days, 0) + 1,
            finished=allowance is None,
            allowance_today=allowance,
            sent_today=sent,
            ends_on=state.started_on + timedelta(days=len(ramp)),
        )


class WarmupList(BaseModel):
    object: Literal["list"] = "list"
    data: list[WarmupOut]


@router.get("")
async def list_warmups(principal: FullAccess, services: Services, request: Request) -> WarmupList:
    """This organisation's sending domains with a warm-up, by name."""
    policy: WarmupPolicy = request.app.state.warmup_policy
    async with services.db.tenant_tx(principal.tenant_id) as session:
        states = await warmup.list_warmups(session, principal.tenant_id)
    now = services.clock.now()
    return WarmupList(data=[WarmupOut.of(s, policy, now) for s in states])
