"""FastAPI dependencies that turn a bearer token into a Principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from postyard.core.errors import RestrictedApiKey
from postyard.core.http import Services
from postyard.tenancy import service
from postyard.tenancy.types import Principal, Scope

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer py_...`")


async def _principal(
    services: Services,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    token = credentials.credentials if credentials is not None else None
    async with services.db.system_tx(reason="authenticate api key") as session:
        return await service.authenticate(session, token, now=services.clock.now())


async def _full_access(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
    if principal.scope is not Scope.FULL:
        msg = "This API key is restricted to sending emails; this endpoint needs full access."
        raise RestrictedApiKey(msg)
    return principal


AnyKey = Annotated[Principal, Depends(_principal)]
"""Any valid key (full or sending scope)."""
FullAccess = Annotated[Principal, Depends(_full_access)]
"""A key with the full scope."""
