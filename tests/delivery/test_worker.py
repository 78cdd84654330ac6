"""The delivery worker end to end: API → ledger → worker → SMTP on loopback → ledger/events.

Runs on a database of its own (the worker claims across tenants), with aiosmtpd sinks as the
remote servers and a local DNS server for MX mode.
"""

from __future__ import annotations

import email
import email.policy
import ssl
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
import trustme
from sqlalchemy import select, text

from postyard.core.clock import SystemClock
from postyard.core.db import Database, TenantId
from postyard.delivery.capture import start_capture_server
from postyard.delivery.identity import SenderIdentity
from postyard.delivery.mx import make_resolver
from postyard.delivery.retry import RetryPolicy
from postyard.delivery.routing import DirectDeliverer, RelayDeliverer
from postyard.delivery.transport import Relay, SmtpTransport, TlsPolicy
from postyard.delivery.worker import Deliverer, DeliveryWorker, WorkerConfig
from postyard.domains.dkim import DkimSigningError
from postyard.sending import ledger
from postyard.sending.models import Delivery, MessageContent
from postyard.tenancy import service as tenancy
from postyard.tenancy.types import Scope
from tests.conftest import Isolated
from tests.support.dns_server import MX, NULL_MX, A, DnsServer
from tests.support.smtp_sink import SmtpSink

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


class Env:
    def __init__(self, isolated: Isolated, http: httpx.AsyncClient, auth: dict[str, str]) -> None:
        self.iso = isolated
        self.db: Database = isolated.db
        self.http = http
        self.auth = auth

    async def send(self, **fields: Any) -> str:
        body = {"from": "App <app@sender.test>", "subject": "Hello", "text": "Body", **fields}
        response = await self.http.post("/v1/emails", json=body, headers=self.auth)
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    async def statuses(self, email_id: str) -> dict[str, str]:
        async with self.db.system_tx(reason="test") as s:
            rows = await s.execute(
                select(Delivery.recipient, Delivery.status).where(
                    Delivery.message_id == uuid.UUID(email_id)
                )
            )
            return {r.recipient: r.status for r in rows}

    async def raw(self, email_id: str) -> bytes:
        async with self.db.system_tx(reason="test") as s:
            raw = await s.scalar(
                select(MessageContent.raw).where(MessageContent.message_id == uuid.UUID(email_id))
            )
        assert raw is not None
        return raw

    async def make_due(self) -> None:
        """Move every waiting recipient's next attempt to now (time passing, without waiting)."""
        async with self.db.system_tx(reason="test") as s:
            await s.execute(
                text("UPDATE deliveries SET next_attempt_at = now() WHERE status = 'deferred'")
            )

    async def timeline(self, email_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/v1/emails/{email_id}/events", headers=self.auth)
        return dict(response.json())


@pytest_asyncio.fixture
async def env(isolated: Isolated) -> AsyncIterator[Env]:
    async with isolated.db.system_tx(reason="test") as s:
        org = await tenancy.create_organization(s, name="w", slug=f"w-{uuid.uuid4().hex[:10]}")
    async with isolated.db.tenant_tx(org.id) as s:
        key = await tenancy.create_api_key(s, org.id, name="k", scope=Scope.FULL)
    async with httpx.AsyncClient(base_url=isolated.base_url) as client:
        yield Env(isolated, client, {"Authorization": f"Bearer {key.token}"})


def _transport(*, resolver_ns: list[str] | None = None, mx_port: int = 25,
               ca: trustme.CA | None = None) -> SmtpTransport:  # fmt: skip
    verified = ssl.create_default_context()
    if ca is not None:
        ca.configure_trust(verified)
    loose = ssl.create_default_context()
    loose.check_hostname = False
    loose.verify_mode = ssl.CERT_NONE
    return SmtpTransport(
        ssl_context=verified,
        opportunistic_context=loose,
        resolver=make_resolver(resolver_ns or []),
        helo_name="worker.test",
        connect_timeout=5,
        command_timeout=10,
        mx_port=mx_port,
    )


def _worker(db: Database, deliverer: Deliverer, **config: Any) -> DeliveryWorker:
    settings: dict[str, Any] = {"owner": f"test-{uuid.uuid4().hex[:6]}", "policy": RetryPolicy()}
    return DeliveryWorker(db, deliverer, WorkerConfig(**{**settings, **config}), SystemClock())


def _relay(sink: SmtpSink, **kw: Any) -> Relay:
    return Relay(
        "127.0.0.1",
        sink.port,
        kw.get("tls", TlsPolicy.NONE),
        False,
        kw.get("username"),
        kw.get("password"),
    )


async def test_relay_delivers_the_bytes_as_built_in_one_transaction(env: Env) -> None:
    transport = _transport()
    async with SmtpSink() as sink:
        worker = _worker(env.db, RelayDeliverer(transport, _relay(sink)))
        email_id = await env.send(
            to=["a@one.test", "b@one.test"], cc="c@two.test", bcc="d@three.test"
        )
        assert await worker.run_once() == 4
        [received] = await sink.wait_for_messages(1)
    await transport.aclose()
    assert received.data == await env.raw(email_id)
    assert set(received.recipients) == {"a@one.test", "b@one.test", "c@two.test", "d@three.test"}
    assert received.mail_from == "app@sender.test"
    assert set((await env.statuses(email_id)).values()) == {"delivered"}
    timeline = await env.timeline(email_id)
    delivered = [e for e in timeline["data"] if e["type"] == "email.delivered"]
    assert len(delivered) == 4
    assert all(e["data"]["reply"].startswith("250") for e in delivered)
    got = (await env.http.get(f"/v1/emails/{email_id}", headers=env.auth)).json()
    assert got["last_event"] == "delivered"


async def test_mx_mode_groups_recipients_per_destination(env: Env) -> None:
    async with (
        SmtpSink() as sink,
        DnsServer(
            {
                "one.test": [MX(10, "mx.one.test")],
                "two.test": [MX(10, "mx.two.test")],
                "mx.one.test": [A("127.0.0.1")],
                "mx.two.test": [A("127.0.0.1")],
                "void.test": [NULL_MX],
            }
        ) as dns,
    ):
        transport = _transport(resolver_ns=[dns.nameserver], mx_port=sink.port)
        worker = _worker(env.db, DirectDeliverer(transport))
        email_id = await env.send(to=["a@one.test", "b@one.test", "c@two.test", "x@void.test"])
        assert await worker.run_once() == 4
        received = await sink.wait_for_messages(2)
        await transport.aclose()
    assert sorted(sorted(m.recipients) for m in received) == [
        ["a@one.test", "b@one.test"],
        ["c@two.test"],
    ]
    statuses = await env.statuses(email_id)
    assert statuses == {
        "a@one.test": "delivered",
        "b@one.test": "delivered",
        "c@two.test": "delivered",
        "x@void.test": "bounced",
    }
    timeline = await env.timeline(email_id)
    bounced = [e for e in timeline["data"] if e["type"] == "email.bounced"]
    assert [e["recipient"] for e in bounced] == ["x@void.test"]
    assert "null MX" in bounced[0]["data"]["reply"] or "7505" in bounced[0]["data"]["reply"]


async def test_temporary_failure_is_retried_then_delivered_and_5xx_bounces(env: Env) -> None:
    transport = _transport()
    async with SmtpSink() as sink:
        sink.script_rcpt("later@one.test", "451 4.3.0 Try again later")
        sink.script_rcpt("gone@one.test", "550 5.1.1 No such user")
        worker = _worker(env.db, RelayDeliverer(transport, _relay(sink)))
        email_id = await env.send(to=["later@one.test", "gone@one.test", "ok@one.test"])
        assert await worker.run_once() == 3
        assert await env.statuses(email_id) == {
            "later@one.test": "deferred",
            "gone@one.test": "bounced",
            "ok@one.test": "delivered",
        }
        recipients = {r["email"]: r for r in (await env.timeline(email_id))["recipients"]}
        assert recipients["later@one.test"]["last_reply"] == "451 4.3.0 Try again later"
        assert recipients["later@one.test"]["next_attempt_at"] is not None
        assert recipients["gone@one.test"]["last_reply"] == "550 5.1.1 No such user"
        assert await worker.run_once() == 0, "a deferred recipient waits for its retry time"
        await env.make_due()
        assert await worker.run_once() == 1
        await sink.wait_for_messages(2)
    await transport.aclose()
    assert (await env.statuses(email_id))["later@one.test"] == "delivered"
    types = [e["type"] for e in (await env.timeline(email_id))["data"]]
    assert types.count("email.delivery_delayed") == 1
    assert types.count("email.bounced") == 1
    assert types.count("email.delivered") == 2
    recipients = {r["email"]: r for r in (await env.timeline(email_id))["recipients"]}
    assert recipients["later@one.test"]["attempts"] == 2


async def test_gives_up_after_the_maximum_age(env: Env) -> None:
    transport = _transport()
    async with SmtpSink() as sink:
        sink.script_rcpt("slow@one.test", "421 4.7.0 Too busy", "421 4.7.0 Too busy")
        policy = RetryPolicy(delays=(timedelta(minutes=1),), max_age=timedelta(hours=1))
        worker = _worker(env.db, RelayDeliverer(transport, _relay(sink)), policy=policy)
        email_id = await env.send(to="slow@one.test")
        await worker.run_once()
        assert (await env.statuses(email_id))["slow@one.test"] == "deferred"
        async with env.db.system_tx(reason="test") as s:
            await s.execute(
                text(
                    "UPDATE deliveries SET first_attempt_at = now() - interval '2 hours',"
                    " next_attempt_at = now() WHERE message_id = :m"
                ),
                {"m": uuid.UUID(email_id)},
            )
        await worker.run_once()
    await transport.aclose()
    assert (await env.statuses(email_id))["slow@one.test"] == "failed"
    types = [e["type"] for e in (await env.timeline(email_id))["data"]]
    assert types[-1] == "email.failed"


async def test_relay_with_starttls_and_auth(env: Env) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    transport = _transport(ca=ca)
    async with SmtpSink(tls_context=server_context, credentials=("relayuser", "s3cret")) as sink:
        relay = _relay(sink, tls=TlsPolicy.REQUIRED, username="relayuser", password="s3cret")
        worker = _worker(env.db, RelayDeliverer(transport, relay))
        email_id = await env.send(to="a@one.test")
        await worker.run_once()
        [received] = await sink.wait_for_messages(1)
    await transport.aclose()
    assert received.tls is True
    assert received.auth_login == "relayuser"
    assert (await env.statuses(email_id))["a@one.test"] == "delivered"


async def test_capture_mode_shows_what_arrived(env: Env) -> None:
    transport = _transport()
    capture = await start_capture_server(env.db)
    port = capture.sockets[0].getsockname()[1]
    relay = Relay("127.0.0.1", port, TlsPolicy.NONE, False, None, None)
    worker = _worker(env.db, RelayDeliverer(transport, relay))
    email_id = await env.send(to=["a@one.test", "b@two.test"], html="<p>Hi</p>")
    try:
        await worker.run_once()
    finally:
        await transport.aclose()
        capture.close()
        await capture.wait_closed()
    content = (await env.http.get(f"/v1/emails/{email_id}/content", headers=env.auth)).json()
    [captured] = content["captured"]
    assert sorted(captured["recipients"]) == ["a@one.test", "b@two.test"]
    assert captured["raw"].encode() == await env.raw(email_id)
    parsed = email.message_from_bytes(captured["raw"].encode(), policy=email.policy.default)
    assert parsed["Subject"] == "Hello"
    assert set((await env.statuses(email_id)).values()) == {"delivered"}


async def test_expired_leases_are_recovered_and_retried(env: Env) -> None:
    transport = _transport()
    async with SmtpSink() as sink:
        email_id = await env.send(to="a@one.test")
        async with env.db.system_tx(reason="test: a worker that dies") as s:
            claimed, _ = await ledger.claim_due(
                s, owner="dead", limit=1000, lease=timedelta(0), now=SystemClock().now()
            )
        assert uuid.UUID(email_id) in {c.message_id for c in claimed}
        worker = _worker(env.db, RelayDeliverer(transport, _relay(sink)))
        assert await worker.run_once() == 0, "leased rows are not claimed twice"
        async with env.db.system_tx(reason="test") as s:
            assert await ledger.recover_expired_leases(s) >= 1
        assert await worker.run_once() >= 1
        await sink.wait_for_messages(1)
    await transport.aclose()
    assert (await env.statuses(email_id))["a@one.test"] == "delivered"


async def test_scheduled_email_waits_and_canceled_email_never_goes(env: Env) -> None:
    transport = _transport()
    async with SmtpSink() as sink:
        worker = _worker(env.db, RelayDeliverer(transport, _relay(sink)))
        later = await env.send(to="a@one.test", scheduled_at="in 1 hour")
        canceled = await env.send(to="b@one.test", scheduled_at="in 1 hour")
        await env.http.post(f"/v1/emails/{canceled}/cancel", headers=env.auth)
        assert await worker.run_once() == 0
        async with env.db.system_tx(reason="test: the hour passes") as s:
            await s.execute(
                text(
                    "UPDATE deliveries SET next_attempt_at = now()"
                    " WHERE status IN ('scheduled', 'canceled')"
                )
            )
        assert await worker.run_once() == 1
        [received] = await sink.wait_for_messages(1)
    await transport.aclose()
    assert received.recipients == ("a@one.test",)
    assert (await env.statuses(later))["a@one.test"] == "delivered"
    assert (await env.statuses(canceled))["b@one.test"] == "canceled"


class _BrokenSigner:
    def sign(self, message: bytes, *, timestamp: int | None = None) -> bytes:
        raise DkimSigningError("no From header")


class _BrokenIdentities:
    async def get(self, tenant_id: TenantId, domain: str) -> SenderIdentity:
        return SenderIdentity(signer=_BrokenSigner(), return_path_domain=None)  # type: ignore[arg-type]  # a stand-in signer


async def test_a_message_that_cannot_be_signed_still_goes(env: Env) -> None:
    transport = _transport()
    async with SmtpSink() as sink:
        worker = DeliveryWorker(
            env.db,
            RelayDeliverer(transport, _relay(sink)),
            WorkerConfig(owner="unsignable"),
            SystemClock(),
            identities=_BrokenIdentities(),
        )
        email_id = await env.send(to="a@one.test")
        assert await worker.run_once() >= 1
        [received] = await sink.wait_for_messages(1)
    await transport.aclose()
    assert received.data == await env.raw(email_id)
    assert (await env.statuses(email_id))["a@one.test"] == "delivered"
