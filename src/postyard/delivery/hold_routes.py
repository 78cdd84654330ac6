"""/v1/holds: a tenant holds and releases its own traffic (operators use `postyard holds`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from postyard.core.http import Services
from postyard.core.json_route import JsonRoute
from postyard.delivery import holds
from postyard.delivery.holds import HoldKind, HoldOrigin, HoldView
from postyard.tenancy.auth import FullAccess

router = APIRouter(route_class=JsonRoute, prefix="/holds", tags=["Holds"])


class CreateHoldRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: HoldKind = Field(
        description="`tenant`: all of this organization's mail; `domain`: mail from one "
        "sending domain; `destination`: mail to one recipient domain or site."
    )
    value: str | None = Field(
        default=None,
        max_length=253,
        description="The sending domain, the recipient domain or a site (`google`, "
        "`microsoft`, `yahoo`, `apple`); omitted for `tenant`.",
    )
    reason: str = Field(default="", max_length=500, description="Shown on held recipients.")


class HoldOut(BaseModel):
    object: Literal["hold"] = "hold"
    id: str
    kind: HoldKind
    value: str | None
    reason: str
    origin: HoldOrigin
    created_at: datetime
    released_at: datetime | None
    held: int = Field(description="Recipients held now (on release: how many were released).")

    @classmethod
    def of(cls, view: HoldView) -> HoldOut:
        h = view.hold
        return cls(
            id=str(h.id),
            kind=h.kind,
            value=h.value or None,
            reason=h.reason,
            origin=h.origin,
            created_at=h.created_at,
            released_at=h.released_at,
            held=view.held,
        )


class HoldList(BaseModel):
    object: Literal["list"] = "list"
    data: list[HoldOut]


@router.post("")
async def create_hold(
    body: CreateHoldRequest, principal: FullAccess, services: Services
) -> HoldOut:
    """Hold this organization's mail (all of it, one sending domain's, or one destination's).
    Held recipients stay queued with status `held` until the hold is released; nothing is
    dropped and retries do not run out while held."""
    async with services.db.tenant_tx(principal.tenant_id) as session:
        view = await holds.place_hold(
            session,
            principal.tenant_id,
            kind=body.kind,
            value=body.value,
            reason=body.reason,
            origin=HoldOrigin.TENANT,
            now=services.clock.now(),
        )
    return HoldOut.of(view)


@router.get("")
async def list_holds(principal: FullAccess, services: Services) -> HoldList:
    """Active holds on this organization, its own and an operator's."""
    async with services.db.tenant_tx(principal.tenant_id) as session:
        views = await holds.list_holds(session, principal.tenant_id)
    return HoldList(data=[HoldOut.of(v) for v in views])


@router.delete("/{hold_id}")
async def release_hold(hold_id: str, principal: FullAccess, services: Services) -> HoldOut:
    """Release a hold: the recipients it held are due at once (`held` says how many).
    An operator's hold answers 403 `hold_owned_by_operator`."""
    async with services.db.tenant_tx(principal.tenant_id) as session:
        view = await holds.release_hold(
            session, principal.tenant_id, hold_id, now=services.clock.now()
        )
    if services.waker is not None and view.held:
        services.waker.poke()
    return HoldOut.of(view)
