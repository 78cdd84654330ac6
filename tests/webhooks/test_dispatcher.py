"""The dispatcher end to end: API -> event -> fan-out -> dispatcher -> signed POST to a local
receiver -> attempt log, with an injected clock for the retry ladder, auto-disable and replay.

Runs on a database of its own (the dispatcher claims across tenants) whose app allows webhook
URLs on loopback, where the receiver listens.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from typing import Any

import httpx
import pytest
import pytest_asyncio
import resend
import standardwebhooks
from sqlalchemy import text

from postyard.core.db import Database
from postyard.delivery.mx import make_resolver
from postyard.settings import Settings
from postyard.tenancy import service as tenancy
from postyard.tenancy.types import Scope
from postyard.webhooks import ledger
from postyard.webhooks.dispatcher import DispatcherConfig, WebhookDispatcher
from postyard.webhooks.retry import LADDER
from postyard.webhooks.sender import SendResult, Timeouts, WebhookSender
from postyard.webhooks.ssrf import AddressPolicy, Network
from postyard.worker import Share
from tests.conftest import TEST_KEK, AppFactory, Isolated, make_app_factory
from tests.support.dns_server import A, DnsServer
from tests.support.http_receiver import HttpReceiver, ReceivedRequest, Reply, redirect

LOOPBACK: list[Network] = [ip_network("127.0.0.0/8")]
EMAIL = {"from": "Acme <hello@acme.test>", "to": ["ada@example.com"], "subject": "Hi", "text": "x"}


@pytest.fixture(scope="module")
def app_factory(settings: Settings, dns_server: DnsServer) -> AppFactory:
    return make_app_factory(settings, dns_server, LOOPBACK)


@dataclass
class ManualClock:
    # Ahead of the database's clock, so rows written at its now() are due at once.
    current: datetime = field(default_factory=lambda: datetime.now(UTC) + timedelta(seconds=30))

    def now(self) -> datetime:
        return self.current


class CountingSender:
    """The real sender, counting attempts in flight (to observe the per-endpoint cap)."""

    def __init__(self, inner: WebhookSender) -> None:
        self.inner, self.in_flight, self.most = inner, 0, 0

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> SendResult:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            return await self.inner.post(url, body, headers)
        finally:
            self.in_flight -= 1


@dataclass
class Env:
    db: Database
    http: httpx.AsyncClient
    auth: dict[str, str]
    receiver: HttpReceiver
    clock: ManualClock
    sender: CountingSender
    strict_sender: WebhookSender

    def dispatcher(
        self, *, per_endpoint: int = 4, strict: bool = False, owner: str = "", batch_size: int = 100
    ) -> WebhookDispatcher:
        config = DispatcherConfig(
            owner=owner or f"test-{uuid.uuid4().hex[:6]}",
            batch_size=batch_size,
            per_endpoint=per_endpoint,
        )
        sender = self.strict_sender if strict else self.sender
        return WebhookDispatcher(
            self.db, sender, config, self.clock, kek=TEST_KEK, rand=lambda: 0.5
        )

    async def create(self, path: str = "/hook", events: list[str] | None = None,
                     url: str | None = None) -> dict[str, str]:  # fmt: skip
        body = {"endpoint": url or self.receiver.url(path), "events": events or ["email.sent"]}
        response = await self.http.post("/v1/webhooks", json=body, headers=self.auth)
        assert response.status_code == 200, response.text
        created: dict[str, str] = response.json()
        return created

    async def send(self) -> str:
        response = await self.http.post("/v1/emails", json=EMAIL, headers=self.auth)
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    async def webhook(self, webhook_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/v1/webhooks/{webhook_id}", headers=self.auth)
        return dict(response.json())

    async def attempts(self, webhook_id: str) -> list[dict[str, Any]]:
        url = f"/v1/webhooks/{webhook_id}/deliveries?limit=100"
        response = await self.http.get(url, headers=self.auth)
        assert response.status_code == 200, response.text
        return list(response.json()["data"])

    async def deliveries(self, webhook_id: str) -> list[dict[str, Any]]:
        async with self.db.system_tx(reason="test") as s:
            rows = await s.execute(
                text(
                    "SELECT id, status, attempts, next_attempt_at, last_status_code"
                    " FROM webhook_deliveries WHERE endpoint_id = :id ORDER BY created_at, id"
                ),
                {"id": uuid.UUID(webhook_id)},
            )
            return [dict(r._mapping) for r in rows]


@pytest_asyncio.fixture
async def env(isolated: Isolated, dns_server: DnsServer) -> AsyncIterator[Env]:
    dns_server.set("hook-loopback.test", A("127.0.0.1"))
    dns_server.set("hook-private.test", A("10.0.0.5"))
    async with isolated.db.system_tx(reason="test") as s:
        org = await tenancy.create_organization(s, name="w", slug=f"w-{uuid.uuid4().hex[:10]}")
    async with isolated.db.tenant_tx(org.id) as s:
        key = await tenancy.create_api_key(s, org.id, name="k", scope=Scope.FULL)
    resolver = make_resolver([dns_server.nameserver], timeout=2.0, lifetime=4.0, cache=False)
    timeouts = Timeouts(read=10.0, total=20.0)  # guards against a hung test, never reached
    sender = WebhookSender(resolver=resolver, policy=AddressPolicy(LOOPBACK), timeouts=timeouts)
    strict = WebhookSender(resolver=resolver, policy=AddressPolicy(), timeouts=timeouts)
    async with (
        HttpReceiver() as receiver,
        httpx.AsyncClient(base_url=isolated.base_url) as client,
    ):
        yield Env(
            isolated.db,
            client,
            {"Authorization": f"Bearer {key.token}"},
            receiver,
            ManualClock(),
            CountingSender(sender),
            strict,
        )
    await sender.aclose()
    await strict.aclose()
    async with isolated.db.system_tx(reason="test: leave nothing due for the next test") as s:
        await s.execute(text("DELETE FROM webhook_endpoints"))


def svix_headers(request: ReceivedRequest) -> dict[str, str]:
    h = request.headers
    return {"id": h["svix-id"], "timestamp": h["svix-timestamp"], "signature": h["svix-signature"]}


def resend_verifies(request: ReceivedRequest, secret: str) -> bool:
    try:
        resend.Webhooks.verify(
            {
                "payload": request.body.decode(),
                "headers": svix_headers(request),  # type: ignore[typeddict-item]
                "webhook_secret": secret,
            }
        )
    except ValueError:
        return False
    return True


def hmac_signature(secret: str, request: ReceivedRequest) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    h = request.headers
    signed = f"{h['webhook-id']}.{h['webhook-timestamp']}.".encode() + request.body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


async def test_signed_deliveries_pass_independent_verifiers_across_a_rotation(
    env: Env,
) -> None:
    created = await env.create()
    secret = created["signing_secret"]
    email_id = await env.send()
    assert await env.dispatcher().run_once() == 1
    [first] = await env.receiver.wait_for_requests(1)
    payload = standardwebhooks.Webhook(secret).verify(first.body, first.headers)
    assert resend_verifies(first, secret)
    assert payload["type"] == "email.sent"
    data = payload["data"]
    assert data["email_id"] == email_id
    assert (data["from"], data["to"], data["subject"]) == (
        "Acme <hello@acme.test>",
        ["ada@example.com"],
        "Hi",
    )
    assert payload["created_at"].endswith("Z") and data["created_at"].endswith("Z")
    assert first.headers["webhook-id"] == first.headers["svix-id"]
    assert first.headers["webhook-signature"] == first.headers["svix-signature"]

    rotated = await env.http.post(f"/v1/webhooks/{created['id']}/rotate-secret", headers=env.auth)
    new_secret = rotated.json()["signing_secret"]
    await env.send()
    assert await env.dispatcher().run_once() == 1
    second = (await env.receiver.wait_for_requests(2))[1]
    assert len(second.headers["webhook-signature"].split(" ")) == 2
    # Receivers holding either secret accept the message during the overlap.
    standardwebhooks.Webhook(new_secret).verify(second.body, second.headers)
    standardwebhooks.Webhook(secret).verify(second.body, second.headers)
    assert resend_verifies(second, new_secret) and resend_verifies(second, secret)
    assert not resend_verifies(second, standardwebhooks_secret())

    env.clock.current += timedelta(hours=25)  # past the overlap: the new secret alone
    await env.send()
    assert await env.dispatcher().run_once() == 1
    third = (await env.receiver.wait_for_requests(3))[2]
    assert third.headers["webhook-signature"] == hmac_signature(new_secret, third)


async def test_the_payload_carries_the_message_summary_read_with_the_claim(env: Env) -> None:
    await env.create()
    email = {**EMAIL, "tags": [{"name": "category", "value": "receipt"}]}
    response = await env.http.post("/v1/emails", json=email, headers=env.auth)
    assert response.status_code == 200, response.text
    assert await env.dispatcher().run_once() == 1
    [request] = await env.receiver.wait_for_requests(1)
    data = json.loads(request.body)["data"]
    assert data["email_id"] == response.json()["id"]
    assert data["tags"] == {"category": "receipt"}
    assert (data["from"], data["to"], data["subject"]) == (EMAIL["from"], EMAIL["to"], "Hi")


def standardwebhooks_secret() -> str:
    return "whsec_" + base64.b64encode(b"\x01" * 32).decode()


async def test_retry_ladder_then_replay_of_one_delivery(env: Env) -> None:
    env.receiver.respond("/hook", Reply(status=503, body=b"down for maintenance"))
    created = await env.create()
    await env.send()
    dispatcher = env.dispatcher()
    seen_at = []
    for attempt in range(1, len(LADDER) + 1):
        assert await dispatcher.run_once() == 1, attempt
        seen_at.append(env.clock.now())
        [row] = await env.deliveries(created["id"])
        assert row["attempts"] == attempt
        if attempt == len(LADDER):
            assert row["status"] == "failed"
            break
        assert row["status"] == "pending"
        # rand() = 0.5: no jitter, so exactly the next rung.
        assert row["next_attempt_at"] - env.clock.now() == LADDER[attempt]
        env.clock.current = row["next_attempt_at"] - timedelta(milliseconds=1)
        assert await dispatcher.run_once() == 0  # not due yet
        env.clock.current = row["next_attempt_at"]
    assert len(env.receiver.requests) == len(LADDER)
    assert {r.headers["webhook-id"] for r in env.receiver.requests} == {
        env.receiver.requests[0].headers["webhook-id"]
    }  # one message id across retries: receivers deduplicate on it
    log = await env.attempts(created["id"])
    assert [a["attempt"] for a in log] == list(range(len(LADDER), 0, -1))
    assert {(a["status_code"], a["response"], a["success"]) for a in log} == {
        (503, "down for maintenance", False)
    }
    assert (await env.webhook(created["id"]))["failing_since"] is not None

    env.receiver.respond("/hook", Reply(status=200))
    replay = await env.http.post(
        f"/v1/webhooks/{created['id']}/deliveries/{log[0]['delivery_id']}/replay",
        headers=env.auth,
    )
    assert replay.json()["status"] == "pending"
    assert await dispatcher.run_once() == 1
    [row] = await env.deliveries(created["id"])
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("succeeded", 1, 200)
    assert (await env.webhook(created["id"]))["failing_since"] is None


async def test_failing_for_five_days_disables_with_an_event_then_replay_since(
    env: Env,
) -> None:
    env.receiver.respond("/hook", Reply(status=500))
    env.receiver.respond("/watch", Reply(status=204, body=b""))
    failing = await env.create("/hook")
    watcher = await env.create("/watch", events=["webhook.disabled"])
    started = env.clock.now()
    await env.send()
    dispatcher = env.dispatcher()
    assert await dispatcher.run_once() == 1
    env.clock.current = started + timedelta(days=4, hours=23)
    await env.send()
    await dispatcher.run_once()
    assert (await env.webhook(failing["id"]))["status"] == "enabled"

    env.clock.current = started + timedelta(days=5)
    await env.send()
    await dispatcher.run_once()
    got = await env.webhook(failing["id"])
    assert got["status"] == "disabled"
    assert "every attempt failed since" in got["disabled_reason"]
    rows = await env.deliveries(failing["id"])
    assert {r["status"] for r in rows} == {"failed"}
    # The disabled endpoint does not get its own event; the watcher does.
    assert await dispatcher.run_once() == 1
    [notice] = [r for r in env.receiver.requests if r.path == "/watch"]
    # The clock is days ahead, beyond the verifiers' timestamp tolerance: check the HMAC.
    assert notice.headers["webhook-signature"] == hmac_signature(watcher["signing_secret"], notice)
    body = json.loads(notice.body)
    assert body["type"] == "webhook.disabled"
    assert body["data"]["id"] == failing["id"]
    assert not any(
        b'"webhook.disabled"' in r.body for r in env.receiver.requests if r.path == "/hook"
    )

    since = {"since": (started - timedelta(minutes=5)).isoformat()}
    refused = await env.http.post(
        f"/v1/webhooks/{failing['id']}/replay", json=since, headers=env.auth
    )
    assert (refused.status_code, refused.json()["name"]) == (409, "webhook_disabled")
    env.receiver.respond("/hook", Reply(status=200))
    await env.http.patch(
        f"/v1/webhooks/{failing['id']}", json={"status": "enabled"}, headers=env.auth
    )
    replayed = await env.http.post(
        f"/v1/webhooks/{failing['id']}/replay", json=since, headers=env.auth
    )
    assert replayed.json()["replayed"] == 3
    assert await dispatcher.run_once() == 3
    assert {r["status"] for r in await env.deliveries(failing["id"])} == {"succeeded"}


async def test_a_429_s_retry_after_sets_the_next_attempt(env: Env) -> None:
    env.receiver.respond("/hook", Reply(status=429, headers=(("Retry-After", "3600"),)))
    created = await env.create()
    await env.send()
    dispatcher = env.dispatcher()
    assert await dispatcher.run_once() == 1
    [row] = await env.deliveries(created["id"])
    assert (row["status"], row["last_status_code"]) == ("pending", 429)
    assert row["next_attempt_at"] - env.clock.now() == timedelta(hours=1)  # the rung: 5 s
    env.clock.current += LADDER[1]
    assert await dispatcher.run_once() == 0  # the rung alone would have retried by now
    env.clock.current = row["next_attempt_at"]
    env.receiver.respond("/hook", Reply(status=204, body=b""))
    assert await dispatcher.run_once() == 1
    [row] = await env.deliveries(created["id"])
    assert (row["status"], row["attempts"]) == ("succeeded", 2)


async def test_410_disables_the_endpoint_at_once(env: Env) -> None:
    env.receiver.respond("/hook", Reply(status=410, body=b"gone"))
    created = await env.create()
    await env.send()
    await env.send()
    assert await env.dispatcher().run_once() == 2
    got = await env.webhook(created["id"])
    assert (got["status"], got["disabled_reason"]) == ("disabled", "the endpoint answered 410 Gone")
    assert {r["status"] for r in await env.deliveries(created["id"])} == {"failed"}
    env.clock.current += timedelta(days=1)
    assert await env.dispatcher().run_once() == 0  # nothing is retried


async def test_attempts_go_with_their_endpoint_and_their_organization(env: Env) -> None:
    kept, deleted = await env.create("/kept"), await env.create("/deleted")
    await env.send()
    assert await env.dispatcher().run_once() == 2
    assert len(await env.attempts(kept["id"])) == len(await env.attempts(deleted["id"])) == 1
    response = await env.http.delete(f"/v1/webhooks/{deleted['id']}", headers=env.auth)
    assert response.status_code == 200, response.text
    assert await attempts_of(env, deleted["id"]) == 0
    assert await attempts_of(env, kept["id"]) == 1
    async with env.db.system_tx(reason="test: an organization deleted with its data") as s:
        await s.execute(
            text(
                "DELETE FROM organizations WHERE id ="
                " (SELECT tenant_id FROM webhook_endpoints WHERE id = :id)"
            ),
            {"id": uuid.UUID(kept["id"])},
        )
    assert await attempts_of(env, kept["id"]) == 0


async def attempts_of(env: Env, endpoint_id: str) -> int:
    async with env.db.system_tx(reason="test") as s:
        query = text("SELECT count(*) FROM webhook_attempts WHERE endpoint_id = :id")
        return int((await s.execute(query, {"id": uuid.UUID(endpoint_id)})).scalar_one())


async def test_a_redirect_is_a_failure_and_is_not_followed(env: Env) -> None:
    env.receiver.respond("/hook", redirect(env.receiver.url("/elsewhere"), 307))
    created = await env.create()
    await env.send()
    assert await env.dispatcher().run_once() == 1
    [attempt] = await env.attempts(created["id"])
    assert attempt["status_code"] == 307 and not attempt["success"]
    assert "redirect" in attempt["error"]
    assert [r.path for r in env.receiver.requests] == ["/hook"]
    [row] = await env.deliveries(created["id"])
    assert row["status"] == "pending"


async def test_per_endpoint_concurrency_is_capped(env: Env) -> None:
    env.receiver.respond("/slow", Reply(status=200, hold=True))
    await env.create("/slow")
    for _ in range(10):
        await env.send()
    run = asyncio.create_task(env.dispatcher(per_endpoint=3).run_once())
    await env.receiver.wait_for_requests(3)
    env.receiver.release()
    assert await run == 10
    assert len(env.receiver.requests) == 10
    assert env.sender.most == 3


async def test_the_per_endpoint_cap_holds_across_worker_processes(env: Env) -> None:
    """Two dispatchers with the shares ``postyard up`` gives two worker processes: together
    they never have more than the endpoint's cap in flight at the receiver."""
    env.receiver.respond("/slow", Reply(status=200, hold=True))
    await env.create("/slow")
    for _ in range(12):
        await env.send()
    cap = 4
    dispatchers = [
        env.dispatcher(per_endpoint=Share(i, 2).part(cap), batch_size=3) for i in range(2)
    ]
    stop = asyncio.Event()
    loops = [asyncio.create_task(d.run(stop)) for d in dispatchers]
    await env.receiver.wait_for_requests(cap)  # both are sending, their slots full
    env.receiver.respond("/slow", Reply(status=200, delay=0.05))
    env.receiver.release()
    await env.receiver.wait_for_requests(12)
    stop.set()
    await asyncio.gather(*loops)
    assert env.receiver.most_in_flight == cap
    async with env.db.system_tx(reason="test") as s:
        statuses = (
            await s.execute(text("SELECT status, count(*) FROM webhook_deliveries GROUP BY 1"))
        ).all()
    assert [tuple(r) for r in statuses] == [("succeeded", 12)]


async def test_an_expired_lease_is_retried_and_the_old_holder_cannot_record(env: Env) -> None:
    created = await env.create()
    await env.send()
    lease = timedelta(minutes=10)
    async with env.db.system_conn(reason="test: a worker that will die") as conn:
        claim = await ledger.claim_due(
            conn, owner="dead", limit=10, lease=lease, now=env.clock.now()
        )
    [claimed] = claim.deliveries
    survivor = env.dispatcher()
    assert await survivor.run_once() == 0  # leased: nobody else takes it
    assert await survivor.maintain() == 0
    env.clock.current += lease + timedelta(seconds=1)
    assert await survivor.maintain() == 1
    assert await survivor.run_once() == 1
    [row] = await env.deliveries(created["id"])
    assert (row["status"], row["attempts"]) == ("succeeded", 2)
    late = ledger.Outcome(
        claimed, "email.sent", "failed", None, 500, "", 1, "HTTP 500", env.clock.now()
    )
    async with env.db.system_conn(reason="test") as conn:
        recorded = await ledger.record_outcomes(conn, [late], owner="dead", now=env.clock.now())
    assert recorded.kept == []
    [row] = await env.deliveries(created["id"])
    assert row["status"] == "succeeded"


async def test_ssrf_corpus_every_attempt_is_refused_by_the_sender(env: Env) -> None:
    """URLs this module's app accepts (loopback is allowed here) and a name the DNS server
    answers with a private address: a sender without allowed networks refuses every one,
    before connecting."""
    port = env.receiver.port
    urls = [
        f"http://127.0.0.1:{port}/hook",
        f"http://2130706433:{port}/hook",  # decimal
        f"http://0177.0.0.1:{port}/hook",  # octal
        f"http://0x7f.0x0.0x0.0x1:{port}/hook",  # hex
        f"http://127.1:{port}/hook",
        f"http://[::ffff:127.0.0.1]:{port}/hook",  # IPv4-mapped IPv6
        f"http://localhost:{port}/hook",
        f"http://app.localhost:{port}/hook",
        f"http://hook-loopback.test:{port}/hook",  # DNS answers 127.0.0.1
        f"https://hook-loopback.test:{port}/hook",
        f"https://hook-private.test:{port}/hook",  # DNS answers 10.0.0.5
    ]
    created = [await env.create(url=url) for url in urls]
    await env.send()
    assert await env.dispatcher(strict=True).run_once() == len(urls)
    for webhook in created:
        [attempt] = await env.attempts(webhook["id"])
        assert attempt["status_code"] is None and not attempt["success"], attempt
        assert attempt["error"], attempt
    assert env.receiver.connections_opened == 0
