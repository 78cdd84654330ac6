"""FastAPI dependencies that turn a bearer token into a Principal (and count the request
against the key's rate limit)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from postyard.core.errors import RestrictedApiKey
from postyard.core.http import Services
from postyard.tenancy import ratelimit, service
from postyard.tenancy.types import Principal, Scope

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer py_...`")


async def _principal(
    services: Services,
    response: Response,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    token = credentials.credentials if credentials is not None else None
    now = services.clock.now()
    limit = services.rate_limit_per_second
    async with services.db.system_conn(reason="authenticate api key") as conn:
        principal, count = await service.authenticate(conn, token, now=now, rate_limit=limit)
    if limit > 0 and count is not None:
        response.headers.update(ratelimit.check(count, limit=limit).headers())
    return principal


async def _full_access(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
    if principal.scope is not Scope.FULL:
        msg = "This API key is restricted to sending emails; this endpoint needs full access."
        raise RestrictedApiKey(msg)
    return principal


AnyKey = Annotated[Principal, Depends(_principal)]
"""Any valid key (full or sending scope)."""
FullAccess = Annotated[Principal, Depends(_full_access)]
"""A key with the full scope."""
