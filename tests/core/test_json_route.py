"""Request bodies are parsed as JSON text by orjson on every route: what JSON must not hold
(an unpaired surrogate, NaN) is a 400 naming where the parser stopped, and nothing is
written; a UTF-8 byte order mark is ignored, as before."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import func, select
from starlette.routing import BaseRoute

from postyard.core.db import Database
from postyard.core.http import AppServices
from postyard.core.json_route import JsonRoute
from postyard.sending.models import Message
from tests.conftest import AppFactory, Tenant
from tests.tenancy.test_api_keys import assert_error

_EMAIL = '{"from": "a@acme.test", "to": "b@one.test", "subject": "Hi", "text": "Hi"'


def _api_routes(routes: list[BaseRoute]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None)  # an included router, unflattened
        if inner is not None:
            yield from _api_routes(inner.routes)


def test_every_api_route_parses_with_orjson(app_factory: AppFactory, services: AppServices) -> None:
    routes = list(_api_routes(app_factory(services).routes))
    assert len(routes) > 40  # the walk reached the routers' routes
    plain = [f"{sorted(r.methods or ())} {r.path}" for r in routes if not isinstance(r, JsonRoute)]
    assert plain == [], "make these routers with route_class=JsonRoute"


async def _messages(db: Database, tenant: Tenant) -> int:
    async with db.tenant_tx(tenant.org.id) as s:
        return int(await s.scalar(select(func.count()).select_from(Message)) or 0)


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("/v1/emails", _EMAIL + ', "text": "x\\ud800y"}', "at character 85: no low surrogate"),
        ("/v1/emails", _EMAIL + ', "html": "\\udc00"}', "invalid high surrogate"),
        ("/v1/emails/batch", f'[{_EMAIL}, "subject": "\\ud83d"}}]', "surrogate"),
        ("/v1/emails", _EMAIL + ', "headers": {"X-N": NaN}}', "not valid JSON at character"),
        ("/v1/domains", '{"name": "example.com",}', "not valid JSON at character"),
    ],
)
async def test_what_json_must_not_hold_is_refused_and_writes_nothing(
    http: httpx.AsyncClient, db: Database, tenant: Tenant, path: str, body: str, fragment: str
) -> None:
    headers = {**tenant.auth, "content-type": "application/json"}
    reply = await http.post(path, content=body.encode(), headers=headers)
    assert_error(reply, 400, "validation_error")
    message: Any = reply.json()["message"]
    assert message.startswith("The request body is not valid JSON"), message
    assert fragment in message, message
    assert await _messages(db, tenant) == 0


async def test_a_byte_order_mark_is_ignored(
    http: httpx.AsyncClient, db: Database, tenant: Tenant
) -> None:
    headers = {**tenant.auth, "content-type": "application/json"}
    reply = await http.post("/v1/emails", content=b"\xef\xbb\xbf" + _EMAIL.encode() + b"}",
                            headers=headers)  # fmt: skip
    assert reply.status_code == 200, reply.text
    assert await _messages(db, tenant) == 1
