"""Suppression on every send path, end to end: API (single and batch) and SMTP submissions,
the worker and an SMTP sink playing the remote server. A suppressed recipient never reaches
the sink, the others do, and the events say so. Hard bounces at send time suppress; blocks
do not.

Runs on a database of its own: the worker claims across tenants.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, select, update

from postyard.core.clock import SystemClock
from postyard.core.db import Database, TenantId
from postyard.core.http import AppServices
from postyard.delivery.mx import make_resolver
from postyard.delivery.routing import RelayDeliverer
from postyard.delivery.transport import Relay, SmtpTransport, TlsPolicy
from postyard.delivery.worker import DeliveryWorker, WorkerConfig
from postyard.migrations.runner import schema_head
from postyard.sending.models import Delivery
from postyard.suppression import SuppressionReason, suppress
from postyard.suppression.models import Suppression
from postyard.tenancy import service as tenancy
from postyard.tenancy.types import Scope
from tests.conftest import AppFactory, Isolated, start_server, stop_server
from tests.smtp import FakeClock, make_tls_files, queued_id, running_relay
from tests.support.smtp_sink import SmtpSink

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


class Env:
    def __init__(self, db: Database, http: httpx.AsyncClient, tenant: TenantId, token: str) -> None:
        self.db = db
        self.http = http
        self.tenant = tenant
        self.token = token
        self.auth = {"Authorization": f"Bearer {token}"}

    def body(self, to: list[str]) -> dict[str, Any]:
        return {"from": "App <app@sender.test>", "subject": "Hi", "text": "Body", "to": to}

    async def send(self, to: list[str]) -> str:
        response = await self.http.post("/v1/emails", json=self.body(to), headers=self.auth)
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    async def suppress(self, email: str, **kw: Any) -> None:
        clock = kw.pop("clock", SystemClock())
        async with self.db.tenant_tx(self.tenant) as s:
            await suppress(s, self.tenant, email, SuppressionReason.MANUAL, now=clock.now(), **kw)

    async def statuses(self, email_id: str) -> dict[str, tuple[str, str | None]]:
        async with self.db.tenant_tx(self.tenant) as s:
            rows = await s.execute(
                select(Delivery.recipient, Delivery.status, Delivery.bounce_type).where(
                    Delivery.message_id == uuid.UUID(email_id)
                )
            )
            return {r.recipient: (r.status, r.bounce_type) for r in rows}

    async def events(self, email_id: str) -> list[dict[str, Any]]:
        response = await self.http.get(f"/v1/emails/{email_id}/events", headers=self.auth)
        assert response.status_code == 200, response.text
        return list(response.json()["data"])

    async def last_event(self, email_id: str) -> str:
        response = await self.http.get(f"/v1/emails/{email_id}", headers=self.auth)
        return str(response.json()["last_event"])

    async def entry(self, email: str) -> Suppression | None:
        async with self.db.tenant_tx(self.tenant) as s:
            return await s.scalar(select(Suppression).where(Suppression.email == email))


@pytest_asyncio.fixture
async def env(isolated: Isolated) -> AsyncIterator[Env]:
    async with isolated.db.system_tx(reason="test") as s:
        org = await tenancy.create_organization(s, name="s", slug=f"s-{uuid.uuid4().hex[:10]}")
    async with isolated.db.tenant_tx(org.id) as s:
        key = await tenancy.create_api_key(s, org.id, name="k", scope=Scope.FULL)
    async with httpx.AsyncClient(base_url=isolated.base_url) as client:
        yield Env(isolated.db, client, org.id, key.token)


@pytest_asyncio.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    async with SmtpSink() as server:
        yield server


@pytest_asyncio.fixture
async def worker(isolated: Isolated, sink: SmtpSink) -> AsyncIterator[DeliveryWorker]:
    transport = SmtpTransport(
        ssl_context=ssl.create_default_context(),
        opportunistic_context=ssl.create_default_context(),
        resolver=make_resolver([]),
        helo_name="worker.test",
        connect_timeout=5,
        command_timeout=10,
    )
    relay = Relay("127.0.0.1", sink.port, TlsPolicy.NONE, False, None, None)
    yield DeliveryWorker(
        isolated.db,
        RelayDeliverer(transport, relay),
        WorkerConfig(owner=f"test-{uuid.uuid4().hex[:6]}"),
        SystemClock(),
    )
    await transport.aclose()


def _delivered_to(sink: SmtpSink) -> set[str]:
    return {r for m in sink.messages for r in m.recipients}


async def test_api_send_skips_a_suppressed_recipient(
    env: Env, sink: SmtpSink, worker: DeliveryWorker
) -> None:
    await env.suppress("Gone@One.test")
    email_id = await env.send(["ok@one.test", "gone@one.test"])
    assert await env.statuses(email_id) == {
        "ok@one.test": ("queued", None),
        "gone@one.test": ("suppressed", None),
    }
    assert await env.last_event(email_id) == "sent"  # one recipient is still to be sent to
    assert await worker.run_once() == 1
    await sink.wait_for_messages(1)
    assert _delivered_to(sink) == {"ok@one.test"}
    events = await env.events(email_id)
    suppressed = [e for e in events if e["type"] == "email.suppressed"]
    assert [(e["recipient"], e["data"]["reason"]) for e in suppressed] == [
        ("gone@one.test", "manual")
    ]
    assert await env.last_event(email_id) == "delivered"


async def test_batch_send_with_every_recipient_suppressed_is_still_accepted(
    env: Env, sink: SmtpSink, worker: DeliveryWorker
) -> None:
    await env.suppress("x@one.test")
    await env.suppress("y@one.test")
    response = await env.http.post(
        "/v1/emails/batch",
        json=[env.body(["x@one.test", "y@one.test"]), env.body(["z@one.test", "x@one.test"])],
        headers=env.auth,
    )
    assert response.status_code == 200, response.text
    all_suppressed, mixed = (item["id"] for item in response.json()["data"])
    assert await env.last_event(all_suppressed) == "suppressed"
    assert {s for s, _ in (await env.statuses(all_suppressed)).values()} == {"suppressed"}
    assert await worker.run_once() == 1
    await sink.wait_for_messages(1)
    assert _delivered_to(sink) == {"z@one.test"}
    types = [e["type"] for e in await env.events(all_suppressed)]
    assert types == ["email.sent", "email.suppressed", "email.suppressed"]
    assert (await env.statuses(mixed))["x@one.test"] == ("suppressed", None)


def _smtp_send(port: int, token: str, rcpt: list[str]) -> tuple[int, bytes]:
    data = b"From: App <app@sender.test>\r\nTo: a@one.test\r\nSubject: Hi\r\n\r\nBody\r\n"
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
        client.ehlo("client.test")
        client.login("anything", token)
        client.mail("app@sender.test")
        for address in rcpt:
            client.rcpt(address)
        return client.data(data)


async def test_smtp_submission_skips_a_suppressed_recipient(
    env: Env, isolated: Isolated, sink: SmtpSink, worker: DeliveryWorker, tmp_path: Path
) -> None:
    await env.suppress("blocked@one.test")
    tls = make_tls_files(tmp_path)
    async with running_relay(
        isolated.runtime.settings, isolated.db, data_dir=tmp_path, tls=tls
    ) as relay:
        reply = await asyncio.to_thread(
            _smtp_send, relay.port, env.token, ["a@one.test", "BLOCKED@one.test"]
        )
    email_id = queued_id(reply)
    assert await worker.run_once() == 1
    await sink.wait_for_messages(1)
    assert _delivered_to(sink) == {"a@one.test"}
    assert (await env.statuses(email_id))["BLOCKED@one.test"] == ("suppressed", None)
    events = await env.events(email_id)
    assert [e["recipient"] for e in events if e["type"] == "email.suppressed"] == [
        "BLOCKED@one.test"
    ]


async def test_an_expired_suppression_is_no_longer_enforced(
    env: Env, isolated: Isolated, app_factory: AppFactory
) -> None:
    clock = FakeClock()
    services = AppServices(db=isolated.db, clock=clock, schema_head=schema_head())
    server, task, base = await start_server(app_factory(services))
    try:
        await env.suppress(
            "later@one.test", clock=clock, expires_at=clock.now() + timedelta(hours=1)
        )
        async with httpx.AsyncClient(base_url=base) as client:
            timed = Env(env.db, client, env.tenant, env.token)
            before = await timed.send(["later@one.test"])
            clock.advance(timedelta(hours=1, seconds=1))
            after = await timed.send(["later@one.test"])
    finally:
        await stop_server(server, task)
    assert await env.statuses(before) == {"later@one.test": ("suppressed", None)}
    assert await env.statuses(after) == {"later@one.test": ("queued", None)}


async def test_a_hard_bounce_at_send_time_suppresses_the_address(
    env: Env, sink: SmtpSink, worker: DeliveryWorker
) -> None:
    sink.script_rcpt("nobody@one.test", "550 5.1.1 <nobody@one.test>: User unknown")
    email_id = await env.send(["nobody@one.test", "ok@one.test"])
    assert await worker.run_once() == 2
    await sink.wait_for_messages(1)
    assert await env.statuses(email_id) == {
        "nobody@one.test": ("bounced", "permanent"),
        "ok@one.test": ("delivered", None),
    }
    [bounced] = [e for e in await env.events(email_id) if e["type"] == "email.bounced"]
    assert bounced["data"]["bounce"] == {
        "type": "Permanent",
        "subType": "NoEmail",
        "message": "550 5.1.1 <nobody@one.test>: User unknown",
    }
    assert bounced["data"]["bounce_type"] == "permanent"
    timeline = await env.http.get(f"/v1/emails/{email_id}/events", headers=env.auth)
    states = {r["email"]: r for r in timeline.json()["recipients"]}
    assert states["nobody@one.test"]["bounce_type"] == "permanent"
    assert states["nobody@one.test"]["last_reply"] == "550 5.1.1 <nobody@one.test>: User unknown"
    entry = await env.entry("nobody@one.test")
    assert entry is not None
    assert (entry.reason, entry.source_email_id) == ("hard_bounce", uuid.UUID(email_id))
    assert entry.expires_at is None

    again = await env.send(["nobody@one.test"])
    assert await env.statuses(again) == {"nobody@one.test": ("suppressed", None)}
    assert await env.last_event(again) == "suppressed"


async def test_a_block_at_send_time_bounces_without_suppressing(
    env: Env, sink: SmtpSink, worker: DeliveryWorker
) -> None:
    reply = "550 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org"
    sink.script_rcpt("someone@one.test", reply)
    email_id = await env.send(["someone@one.test"])
    assert await worker.run_once() == 1
    assert await env.statuses(email_id) == {"someone@one.test": ("bounced", "block")}
    [bounced] = [e for e in await env.events(email_id) if e["type"] == "email.bounced"]
    assert bounced["data"]["bounce"]["subType"] == "Blocked"
    assert bounced["data"]["bounce_type"] == "block"
    assert await env.entry("someone@one.test") is None

    again = await env.send(["someone@one.test"])
    assert await env.statuses(again) == {"someone@one.test": ("queued", None)}
    assert await worker.run_once() == 1
    await sink.wait_for_messages(1)
    assert _delivered_to(sink) == {"someone@one.test"}


async def test_an_address_suppressed_after_acceptance_is_held_back_by_the_worker(
    env: Env, sink: SmtpSink, worker: DeliveryWorker
) -> None:
    body = {**env.body(["late@one.test", "fine@one.test"]), "scheduled_at": "in 1 hour"}
    response = await env.http.post("/v1/emails", json=body, headers=env.auth)
    assert response.status_code == 200, response.text
    email_id = str(response.json()["id"])
    await env.suppress("LATE@one.test")
    async with env.db.system_tx(reason="test: the hour passes") as s:
        await s.execute(
            update(Delivery)
            .where(Delivery.message_id == uuid.UUID(email_id))
            .values(next_attempt_at=func.now())
        )
    assert await worker.run_once() == 2
    await sink.wait_for_messages(1)
    assert _delivered_to(sink) == {"fine@one.test"}
    assert await env.statuses(email_id) == {
        "late@one.test": ("suppressed", None),
        "fine@one.test": ("delivered", None),
    }
    [held] = [e for e in await env.events(email_id) if e["type"] == "email.suppressed"]
    assert (held["recipient"], held["data"]["reason"]) == ("late@one.test", "manual")
