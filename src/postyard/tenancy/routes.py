"""/v1/api-keys: thin adapters over the tenancy service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from postyard.core.errors import NotFound
from postyard.core.http import Services
from postyard.core.json_route import JsonRoute
from postyard.core.pagination import PageRequest
from postyard.tenancy import service
from postyard.tenancy.auth import FullAccess
from postyard.tenancy.schemas import (
    ApiKeyItem,
    ApiKeyList,
    CreateApiKeyRequest,
    CreateApiKeyResponse,
    DeletedApiKey,
)

router = APIRouter(route_class=JsonRoute, prefix="/api-keys", tags=["API Keys"])


@router.post("", status_code=201)
async def create_api_key(
    body: CreateApiKeyRequest, principal: FullAccess, services: Services
) -> CreateApiKeyResponse:
    """Create an API key. The token is in this response only; store it now."""
    if body.domain_id is not None:
        msg = f"Domain {body.domain_id!r} not found."
        raise NotFound(msg)
    async with services.db.tenant_tx(principal.tenant_id) as session:
        created = await service.create_api_key(
            session, principal.tenant_id, name=body.name, scope=body.permission.scope
        )
    return CreateApiKeyResponse(id=str(created.id), token=created.token)


@router.get("")
async def list_api_keys(
    principal: FullAccess,
    services: Services,
    limit: Annotated[int | None, Query()] = None,
    after: Annotated[str | None, Query()] = None,
    before: Annotated[str | None, Query()] = None,
) -> ApiKeyList:
    """List the organization's API keys (never their tokens), newest first."""
    page = PageRequest.parse(limit, after, before)
    async with services.db.tenant_tx(principal.tenant_id) as session:
        result = await service.list_api_keys(session, principal.tenant_id, page=page)
    return ApiKeyList(has_more=result.has_more, data=[ApiKeyItem.of(v) for v in result.items])


@router.delete("/{api_key_id}")
async def delete_api_key(
    api_key_id: str, principal: FullAccess, services: Services
) -> DeletedApiKey:
    """Revoke an API key; it stops authenticating immediately."""
    async with services.db.tenant_tx(principal.tenant_id) as session:
        revoked = await service.revoke_api_key(session, principal.tenant_id, api_key_id)
    return DeletedApiKey(id=str(revoked))
