"""Group commit of single sends on the API, over real HTTP and the real database: concurrent
POST /v1/emails of one key are stored in one transaction, each answered with its own id; a
refused email fails alone; database trouble is a 503 for every member and stores nothing;
no answer leaves before the commit. Requests with an Idempotency-Key commit alone.

The app runs with a window far longer than any test and groups of three, so a group starts
exactly when the third email arrives: nothing depends on timing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx

from postyard.core.clock import SystemClock
from postyard.core.db import Database, TenantId
from postyard.core.http import AppServices
from postyard.migrations.runner import schema_head
from tests.conftest import TEST_KEK, TEST_POLICY, AppFactory, Tenant, start_server, stop_server
from tests.smtp import GUARD_SECONDS, unreachable_database
from tests.support.dns_server import DnsServer
from tests.support.domains import verified_domain
from tests.support.failing_db import CommitFails, UnreachableTenants

UNAVAILABLE = "service_unavailable"


@asynccontextmanager
async def _serving(
    app_factory: AppFactory, db: Database, *, strict: bool = False
) -> AsyncIterator[httpx.AsyncClient]:
    services = AppServices(
        db=db,
        clock=SystemClock(),
        schema_head=schema_head(),
        require_verified_domain=strict,
        group_commit_window=60.0,  # never waited out: each test sends three at once
        group_commit_max_messages=3,
    )
    server, task, base = await start_server(app_factory(services))
    try:
        async with httpx.AsyncClient(base_url=base, timeout=GUARD_SECONDS) as client:
            yield client
    finally:
        await stop_server(server, task)


def _email(subject: str, sender: str = "App <app@example.com>") -> dict[str, Any]:
    return {"from": sender, "to": "ann@example.org", "subject": subject, "text": "Hello"}


async def _send_together(
    client: httpx.AsyncClient, tenant: Tenant, emails: list[dict[str, Any]]
) -> list[httpx.Response]:
    return list(
        await asyncio.gather(
            *(client.post("/v1/emails", json=e, headers=tenant.auth) for e in emails)
        )
    )


async def _rows(db: Database, tenant_id: TenantId) -> list[asyncpg.Record]:
    async with db.tenant_conn(tenant_id) as conn:
        return list(
            await conn.fetch(
                """
                SELECT CAST(m.id AS text) AS id, m.subject, m.source,
                       CAST(m.xmin AS text) AS tx,
                       (SELECT count(*) FROM deliveries d WHERE d.message_id = m.id) AS deliveries,
                       (SELECT array_agg(e.type) FROM events e WHERE e.message_id = m.id)
                           AS events
                  FROM messages m
                """
            )
        )


async def test_concurrent_sends_share_one_transaction_and_each_gets_its_own_id(
    app_factory: AppFactory, db: Database, tenant: Tenant
) -> None:
    async with _serving(app_factory, db) as client:
        replies = await _send_together(client, tenant, [_email(f"n{i}") for i in range(3)])
    assert [r.status_code for r in replies] == [200, 200, 200]
    ids = [r.json()["id"] for r in replies]
    assert len(set(ids)) == 3
    rows = await _rows(db, TenantId(tenant.org.id))
    assert sorted((r["id"], r["subject"]) for r in rows) == sorted(
        (ids[i], f"n{i}") for i in range(3)
    )
    assert len({r["tx"] for r in rows}) == 1
    # Each email has its own rows, as when it was committed alone.
    assert {(r["source"], r["deliveries"], tuple(r["events"])) for r in rows} == {
        ("api", 1, ("email.sent",))
    }


async def test_a_refused_email_does_not_fail_the_others_of_its_group(
    app_factory: AppFactory, db: Database, tenant: Tenant, dns_server: DnsServer
) -> None:
    tenant_id = TenantId(tenant.org.id)
    name = f"d{uuid.uuid4().hex[:8]}.example.com"
    await verified_domain(db, dns_server, tenant_id, name, kek=TEST_KEK, policy=TEST_POLICY)
    emails = [
        _email("ok 1", f"App <app@{name}>"),
        _email("refused", "App <app@unverified.example>"),
        _email("ok 2", f"App <app@{name}>"),
    ]
    async with _serving(app_factory, db, strict=True) as client:
        first, refused, second = await _send_together(client, tenant, emails)
    assert (first.status_code, second.status_code) == (200, 200)
    assert refused.status_code == 403
    assert refused.json()["name"] == "validation_error"
    assert "unverified.example domain is not verified" in refused.json()["message"]
    rows = await _rows(db, tenant_id)
    assert sorted(r["id"] for r in rows) == sorted([first.json()["id"], second.json()["id"]])
    assert len({r["tx"] for r in rows}) == 1


async def test_nul_characters_are_refused_before_anything_is_stored(
    app_factory: AppFactory, db: Database, tenant: Tenant
) -> None:
    # PostgreSQL's text cannot hold NUL: refused as a client mistake (never a 500), before
    # the email could join a group.
    async with _serving(app_factory, db) as client:
        for field in ("subject", "text", "html"):
            reply = await client.post(
                "/v1/emails", json={**_email("nul"), field: "Hello \x00 there"}, headers=tenant.auth
            )
            assert reply.status_code == 422
            assert reply.json()["name"] == "validation_error"
            assert f"`{field}` field must not contain NUL" in reply.json()["message"]
    assert await _rows(db, TenantId(tenant.org.id)) == []


async def test_database_trouble_is_503_for_every_email_of_the_group(
    app_factory: AppFactory, db: Database, tenant: Tenant
) -> None:
    async with (
        unreachable_database() as broken,
        _serving(app_factory, UnreachableTenants(broken, db)) as client,
    ):
        replies = await _send_together(client, tenant, [_email(f"n{i}") for i in range(3)])
    assert [(r.status_code, r.json()["name"]) for r in replies] == [(503, UNAVAILABLE)] * 3
    assert all(r.headers["retry-after"] for r in replies)
    assert await _rows(db, TenantId(tenant.org.id)) == []


async def test_no_answer_leaves_before_the_commit(
    app_factory: AppFactory, db: Database, tenant: Tenant
) -> None:
    failing = CommitFails(db)
    async with _serving(app_factory, failing) as client:
        sending = asyncio.ensure_future(
            _send_together(client, tenant, [_email(f"n{i}") for i in range(3)])
        )
        async with asyncio.timeout(GUARD_SECONDS):
            await failing.before_commit.wait()
        # The group's statements ran; its commit has not: no request has its answer.
        assert not sending.done()
        failing.go_on.set()
        replies = await sending
    assert [(r.status_code, r.json()["name"]) for r in replies] == [(503, UNAVAILABLE)] * 3
    assert await _rows(db, TenantId(tenant.org.id)) == []


async def test_a_keyed_send_commits_alone_and_replays(
    app_factory: AppFactory, db: Database, tenant: Tenant
) -> None:
    keyed = {**tenant.auth, "Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    async with _serving(app_factory, db) as client:
        # A group of three never forms: the keyed send does not join one and is answered
        # at once (with a window of 60 s, a grouped send would still be waiting).
        first = await client.post("/v1/emails", json=_email("keyed"), headers=keyed)
        again = await client.post("/v1/emails", json=_email("keyed"), headers=keyed)
    assert first.status_code == 200
    assert again.json() == first.json()
    rows = await _rows(db, TenantId(tenant.org.id))
    assert [r["id"] for r in rows] == [first.json()["id"]]
