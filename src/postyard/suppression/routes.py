"""/v1/suppressions: thin adapters over the suppression service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from postyard.core.http import Services
from postyard.core.json_route import JsonRoute
from postyard.core.pagination import PageRequest
from postyard.suppression import service
from postyard.suppression.schemas import (
    CreateSuppressionRequest,
    DeletedSuppression,
    SuppressionList,
    SuppressionOut,
)
from postyard.suppression.types import SuppressionReason
from postyard.tenancy.auth import FullAccess

router = APIRouter(route_class=JsonRoute, prefix="/suppressions", tags=["Suppressions"])


@router.post("")
async def create_suppression(
    body: CreateSuppressionRequest, principal: FullAccess, services: Services
) -> SuppressionOut:
    """Stop sending to an address (the organisation's list, every domain and path). Adding
    an address already listed updates its entry (same id)."""
    async with services.db.tenant_tx(principal.tenant_id) as session:
        view = await service.add_suppression(
            session,
            principal.tenant_id,
            body.email,
            body.reason,
            now=services.clock.now(),
            expires_at=body.expires_at,
        )
    return SuppressionOut.of(view)


@router.get("")
async def list_suppressions(
    principal: FullAccess,
    services: Services,
    *,
    limit: Annotated[int | None, Query()] = None,
    after: Annotated[str | None, Query()] = None,
    before: Annotated[str | None, Query()] = None,
    reason: Annotated[SuppressionReason | None, Query()] = None,
) -> SuppressionList:
    """List entries newest first, optionally of one `reason`."""
    page = PageRequest.parse(limit, after, before)
    async with services.db.tenant_tx(principal.tenant_id) as session:
        result = await service.list_suppressions(
            session, principal.tenant_id, page=page, reason=reason
        )
    return SuppressionList(
        has_more=result.has_more, data=[SuppressionOut.of(v) for v in result.items]
    )


@router.get("/{suppression_id}")
async def get_suppression(
    suppression_id: str, principal: FullAccess, services: Services
) -> SuppressionOut:
    """One entry, by id or by address."""
    async with services.db.tenant_tx(principal.tenant_id) as session:
        view = await service.get_suppression(session, principal.tenant_id, suppression_id)
    return SuppressionOut.of(view)


@router.delete("/{suppression_id}")
async def delete_suppression(
    suppression_id: str, principal: FullAccess, services: Services
) -> DeletedSuppression:
    """Remove an entry, by id or by address: mail to the address goes out again."""
    async with services.db.tenant_tx(principal.tenant_id) as session:
        view = await service.remove_suppression(session, principal.tenant_id, suppression_id)
    return DeletedSuppression(id=str(view.id), email=view.email)
