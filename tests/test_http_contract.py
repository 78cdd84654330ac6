"""Contract of the HTTP layer over every route: tenant isolation by id, JSON errors for
malformed input with nothing written, the commit before the response, health and OpenAPI."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from postyard.core.db import Database
from postyard.core.http import AppServices
from postyard.core.rls import tenant_tables
from tests.conftest import AppFactory, KeyFactory, Tenant, start_server, stop_server
from tests.tenancy.test_api_keys import assert_error


@dataclass(frozen=True)
class Makers:
    make_key: KeyFactory
    http: httpx.AsyncClient
    db: Database


# An id, or the ids of a route with several (by placeholder name).
ObjectFactory = Callable[[Tenant, Makers], Awaitable[str | dict[str, str]]]


async def _api_key_of(owner: Tenant, makers: Makers) -> str:
    return str((await makers.make_key(owner.org.id)).id)


async def _scheduled_email_of(owner: Tenant, makers: Makers) -> str:
    response = await makers.http.post(
        "/v1/emails",
        json={
            "from": "a@sender.test",
            "to": "b@rcpt.test",
            "subject": "s",
            "text": "t",
            "scheduled_at": "in 1 hour",
        },
        headers=owner.auth,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


async def _domain_of(owner: Tenant, makers: Makers) -> str:
    name = f"d{uuid.uuid4().hex[:10]}.test"
    response = await makers.http.post("/v1/domains", json={"name": name}, headers=owner.auth)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


async def _webhook_of(owner: Tenant, makers: Makers) -> str:
    response = await makers.http.post(
        "/v1/webhooks",
        json={"endpoint": "https://hooks.example.com/h", "events": ["domain.created"]},
        headers=owner.auth,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


async def _hold_of(owner: Tenant, makers: Makers) -> str:
    response = await makers.http.post(
        "/v1/holds", json={"kind": "domain", "value": "held.test"}, headers=owner.auth
    )
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


async def _suppression_of(owner: Tenant, makers: Makers) -> str:
    email = f"s{uuid.uuid4().hex[:10]}@rcpt.test"
    response = await makers.http.post("/v1/suppressions", json={"email": email}, headers=owner.auth)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


async def _webhook_delivery_of(owner: Tenant, makers: Makers) -> dict[str, str]:
    webhook_id = await _webhook_of(owner, makers)
    await _domain_of(owner, makers)  # writes domain.created, which fans out to the webhook
    async with makers.db.system_tx(reason="test: find the delivery") as session:
        delivery_id = await session.scalar(
            text("SELECT id FROM webhook_deliveries WHERE endpoint_id = :id"),
            {"id": uuid.UUID(webhook_id)},
        )
    return {"webhook_id": webhook_id, "delivery_id": str(delivery_id)}


# Every route that takes an id, with a way to create such an object for a tenant and a valid
# body where the route takes one. A new route with an id and no entry here fails
# test_every_id_route_is_covered.
ID_ROUTES: dict[str, ObjectFactory] = {
    "/v1/api-keys/{api_key_id}": _api_key_of,
    "/v1/emails/{email_id}": _scheduled_email_of,
    "/v1/emails/{email_id}/cancel": _scheduled_email_of,
    "/v1/emails/{email_id}/events": _scheduled_email_of,
    "/v1/emails/{email_id}/content": _scheduled_email_of,
    "/v1/domains/{domain_id}": _domain_of,
    "/v1/domains/{domain_id}/verify": _domain_of,
    "/v1/domains/{domain_id}/rotate-dkim": _domain_of,
    "/v1/webhooks/{webhook_id}": _webhook_of,
    "/v1/webhooks/{webhook_id}/rotate-secret": _webhook_of,
    "/v1/webhooks/{webhook_id}/deliveries": _webhook_of,
    "/v1/webhooks/{webhook_id}/replay": _webhook_of,
    "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/replay": _webhook_delivery_of,
    "/v1/holds/{hold_id}": _hold_of,
    "/v1/suppressions/{suppression_id}": _suppression_of,
}
VALID_BODIES: dict[tuple[str, str], dict[str, object]] = {
    ("PATCH", "/v1/emails/{email_id}"): {"scheduled_at": "in 2 hours"},
    ("PATCH", "/v1/webhooks/{webhook_id}"): {"events": ["domain.updated"]},
    ("POST", "/v1/webhooks/{webhook_id}/replay"): {"since": "2026-01-01T00:00:00Z"},
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    has_body: bool


def _operations(app_factory: AppFactory, services: AppServices) -> list[Operation]:
    """Every operation of the app, from its OpenAPI document (the public route table)."""
    spec = app_factory(services).openapi()
    return [
        Operation(method.upper(), path, "requestBody" in op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
    ]


def test_every_id_route_is_covered(services: AppServices, app_factory: AppFactory) -> None:
    with_ids = {op.path for op in _operations(app_factory, services) if "{" in op.path}
    assert with_ids, "no routes with ids found: the enumeration is broken"
    assert with_ids <= set(ID_ROUTES), (
        f"routes without a cross-tenant test: {with_ids - set(ID_ROUTES)}"
    )


async def test_other_tenants_objects_are_404_on_every_id_route(
    http: httpx.AsyncClient,
    services: AppServices,
    app_factory: AppFactory,
    tenant: Tenant,
    other_tenant: Tenant,
    make_key: KeyFactory,
    db: Database,
) -> None:
    checked = 0
    for op in _operations(app_factory, services):
        if op.path not in ID_ROUTES:
            continue
        ids = await ID_ROUTES[op.path](tenant, Makers(make_key, http, db))
        path = re.sub(r"\{[^}]+\}", ids, op.path) if isinstance(ids, str) else op.path.format(**ids)
        body = VALID_BODIES.get((op.method, op.path), {}) if op.has_body else None
        response = await http.request(op.method, path, json=body, headers=other_tenant.auth)
        assert_error(response, 404, "not_found")
        # ...while the owner still reaches it
        if op.method == "GET":
            assert (await http.get(path, headers=tenant.auth)).status_code == 200
        else:
            owner = await http.request(op.method, path, json=body, headers=tenant.auth)
            assert owner.status_code == 200, (op, owner.text)
        checked += 1
    assert checked >= len(ID_ROUTES)
    listed = (await http.get("/v1/api-keys", headers=other_tenant.auth)).json()
    mine = {k["id"] for k in listed["data"]}
    assert str(tenant.key.id) not in mine
    assert str(other_tenant.key.id) in mine


async def _row_count(db: Database) -> int:
    async with db.system_tx(reason="test: count rows") as session:
        conn = await session.connection()
        total = 0
        for table in [*await tenant_tables(conn), "organizations"]:
            total += int(await session.scalar(text(f"SELECT count(*) FROM {table}")) or 0)
        return total


MALFORMED: list[tuple[str, bytes, dict[str, str]]] = [
    ("invalid json", b'{"name": ', {"content-type": "application/json"}),
    ("array", b"[1, 2]", {"content-type": "application/json"}),
    ("string", b'"x"', {"content-type": "application/json"}),
    ("null", b"null", {"content-type": "application/json"}),
    ("empty", b"", {"content-type": "application/json"}),
    (
        "wrong types",
        b'{"name": 12, "permission": [], "domain_id": {}}',
        {"content-type": "application/json"},
    ),
    ("unknown field", b'{"name": "a", "surprise": true}', {"content-type": "application/json"}),
    ("bad enum", b'{"name": "a", "permission": "root"}', {"content-type": "application/json"}),
    ("too long", json.dumps({"name": "x" * 51}).encode(), {"content-type": "application/json"}),
    ("form", b"name=a", {"content-type": "application/x-www-form-urlencoded"}),
    ("not utf-8", b'{"name": "\xff\xfe"}', {"content-type": "application/json"}),
    ("oversize", b'{"name": "' + b"a" * 70_000 + b'"}', {"content-type": "application/json"}),
]


@pytest.mark.parametrize(("label", "body", "headers"), MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_malformed_bodies_get_a_json_4xx_and_write_nothing(
    http: httpx.AsyncClient,
    db: Database,
    services: AppServices,
    app_factory: AppFactory,
    tenant: Tenant,
    label: str,
    body: bytes,
    headers: dict[str, str],
) -> None:
    routes = [(op.method, op.path) for op in _operations(app_factory, services) if op.has_body]
    assert routes
    for method, template in routes:
        path = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), template)
        before = await _row_count(db)
        response = await http.request(
            method, path, content=body, headers={**tenant.auth, **headers}
        )
        assert 400 <= response.status_code < 500, (label, path, response.text)
        error = response.json()
        assert set(error) == {"statusCode", "name", "message"}
        assert error["statusCode"] == response.status_code
        assert await _row_count(db) == before, (label, path)


async def test_chunked_oversize_body_is_413(http: httpx.AsyncClient, tenant: Tenant) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"a" * 8192

    response = await http.post(
        "/v1/api-keys",
        content=chunks(),
        headers={**tenant.auth, "content-type": "application/json"},
    )
    assert_error(response, 413, "payload_too_large")


async def test_unknown_route_and_method(http: httpx.AsyncClient, tenant: Tenant) -> None:
    assert_error(await http.get("/v1/nothing-here", headers=tenant.auth), 404, "not_found")
    assert_error(await http.put("/v1/api-keys", headers=tenant.auth), 405, "method_not_allowed")
    assert_error(await http.get("/v1/api-keys/", headers=tenant.auth), 404, "not_found")


async def test_health_request_id_and_openapi(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    generated = ready.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    echoed = await http.get("/healthz", headers={"x-request-id": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    refused = await http.get("/healthz", headers={"x-request-id": "has spaces/and slash"})
    assert refused.headers["x-request-id"] != "has spaces/and slash"
    spec = (await http.get("/v1/openapi.json")).json()
    assert "/v1/api-keys" in spec["paths"]
    docs = await http.get("/v1/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


async def test_readyz_reports_an_outdated_schema(
    services: AppServices, app_factory: AppFactory
) -> None:
    stale = AppServices(db=services.db, clock=services.clock, schema_head="9999")
    app = app_factory(stale)
    server, task, base = await start_server(app)
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            assert_error(await client.get("/readyz"), 503, "not_ready")
    finally:
        await stop_server(server, task)


class _CommitProbe:
    """Checks, at the moment the response starts, what another connection can see."""

    def __init__(self, app: ASGIApp, db: Database) -> None:
        self.app = app
        self.db = db
        self.visible_at_response_start: list[int] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def probing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and scope["method"] == "POST":
                async with self.db.system_tx(reason="test: commit probe") as session:
                    count = await session.scalar(
                        text("SELECT count(*) FROM api_keys WHERE name = 'probe'")
                    )
                self.visible_at_response_start.append(int(count or 0))
            await send(message)

        await self.app(scope, receive, probing_send)


async def test_transaction_commits_before_the_response_is_sent(
    services: AppServices, app_factory: AppFactory, db: Database, tenant: Tenant
) -> None:
    probe = _CommitProbe(app_factory(services), db)
    server, task, base = await start_server(probe)
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            response = await client.post(
                "/v1/api-keys", json={"name": "probe"}, headers=tenant.auth
            )
    finally:
        await stop_server(server, task)
    assert response.status_code == 201
    assert probe.visible_at_response_start == [1]
