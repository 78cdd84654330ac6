"""Per-destination shaping: sites from MX hosts, a 421 slows the site down and suspends it,
other mail for it waits (`deferred`, `shaping:` reason, no attempt), it recovers step by
step; policies bound connections and messages per connection. The clock is injected."""

from __future__ import annotations

import ssl
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from postyard.core.db import TenantId
from postyard.delivery.mx import make_resolver
from postyard.delivery.outcome import OutcomeKind, RecipientOutcome, SmtpReply
from postyard.delivery.retry import RetryPolicy
from postyard.delivery.routing import DirectDeliverer
from postyard.delivery.shaping import Adaptive, SitePolicy, SiteShaper, SiteState, is_throttle
from postyard.delivery.sites import site_of_domain, site_of_mx
from postyard.delivery.transport import SmtpTransport
from postyard.delivery.worker import DeliveryWorker, WorkerConfig
from postyard.sending.models import Delivery
from postyard.tenancy import service as tenancy
from postyard.tenancy.types import Scope
from tests.conftest import Isolated
from tests.support.dns_server import MX, A, DnsServer
from tests.support.smtp_sink import SmtpSink

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

ZONE: dict[str, list[MX | A]] = {
    "gmail.com": [MX(5, "gmail-smtp-in.l.google.com")],
    "gmail-smtp-in.l.google.com": [A("127.0.0.1")],
    "corp.test": [MX(0, "corp-test.mail.protection.outlook.com")],
    "corp-test.mail.protection.outlook.com": [A("127.0.0.1")],
}


class Clock:
    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current


class Org:
    def __init__(self, isolated: Isolated, tenant: TenantId, token: str) -> None:
        self.isolated = isolated
        self.tenant = tenant
        self.auth = {"Authorization": f"Bearer {token}"}

    async def send(self, to: str) -> uuid.UUID:
        body = {"from": "app@shop.test", "to": to, "subject": "s", "text": "t"}
        async with httpx.AsyncClient(base_url=self.isolated.base_url) as http:
            response = await http.post("/v1/emails", json=body, headers=self.auth)
        assert response.status_code == 200, response.text
        return uuid.UUID(response.json()["id"])

    async def row(self, message_id: uuid.UUID) -> Delivery:
        async with self.isolated.db.system_tx(reason="test") as s:
            row = await s.scalar(select(Delivery).where(Delivery.message_id == message_id))
        assert row is not None
        return row


async def _org(isolated: Isolated) -> Org:
    async with isolated.db.system_tx(reason="test") as s:
        org = await tenancy.create_organization(s, name="s", slug=f"s-{uuid.uuid4().hex[:10]}")
    async with isolated.db.tenant_tx(org.id) as s:
        key = await tenancy.create_api_key(s, org.id, name="k", scope=Scope.FULL)
    return Org(isolated, org.id, key.token)


def _transport(dns: DnsServer, port: int) -> SmtpTransport:
    return SmtpTransport(
        ssl_context=ssl.create_default_context(),
        opportunistic_context=ssl.create_default_context(),
        resolver=make_resolver([dns.nameserver]),
        helo_name="worker.test",
        connect_timeout=5,
        command_timeout=10,
        mx_port=port,
    )


async def test_a_421_slows_the_site_down_and_it_recovers_gradually(isolated: Isolated) -> None:
    org = await _org(isolated)
    first = await org.send("a@gmail.com")
    clock = Clock(datetime.now(UTC) + timedelta(seconds=1))
    shaper = SiteShaper(tuning=Adaptive(backoff=timedelta(minutes=1)))
    async with SmtpSink() as sink, DnsServer(ZONE) as dns:
        transport = _transport(dns, sink.port)
        config = WorkerConfig(owner="shaping", policy=RetryPolicy())
        worker = DeliveryWorker(
            isolated.db, DirectDeliverer(transport), config, clock, shaper=shaper
        )
        sink.script_mail("421 4.7.28 Our system has detected an unusual rate of mail, try later")
        assert await worker.run_once() == 1
        assert (await org.row(first)).status == "deferred"
        google = shaper.state("google")
        assert google.rate == 300
        assert google.suspended_until == clock.now() + timedelta(minutes=1)

        # Mail for the site waits out the suspension without spending an attempt.
        later = [await org.send("b@gmail.com"), await org.send("c@gmail.com")]
        clock.current = datetime.now(UTC) + timedelta(seconds=1)
        assert await worker.run_once() == 2
        for message_id in later:
            row = await org.row(message_id)
            assert (row.status, row.attempts) == ("deferred", 0)
            assert (row.last_reply or "").startswith("shaping: google is slowed down")
        assert sink.messages == []
        async with httpx.AsyncClient(base_url=isolated.base_url) as http:
            listed = (await http.get("/v1/destinations", headers=org.auth)).json()["data"]
        shown = {d["site"]: d for d in listed}["google"]
        assert shown["current_rate"] == 300
        assert shown["messages_per_minute"] == 600
        assert "4.7.28" in shown["last_throttle"]

        # After the suspension the mail goes at the lower rate; recovery is a step at a time.
        clock.current += timedelta(minutes=3)
        assert await worker.run_once() == 3
        await sink.wait_for_messages(3)
        assert shaper.state("google").rate == 300
        clock.current += timedelta(minutes=5)
        await org.send("d@gmail.com")
        assert await worker.run_once() == 1
        assert shaper.state("google").rate == 360
        await transport.aclose()


async def test_site_policies_bound_connections_and_messages_per_connection(
    isolated: Isolated,
) -> None:
    org = await _org(isolated)
    ids = [await org.send(f"user{i}@corp.test") for i in range(4)]
    clock = Clock(datetime.now(UTC) + timedelta(seconds=1))
    shaper = SiteShaper({"microsoft": SitePolicy(1, 2, 100_000)})
    async with SmtpSink() as sink, DnsServer(ZONE) as dns:
        transport = _transport(dns, sink.port)
        config = WorkerConfig(owner="policy", policy=RetryPolicy())
        worker = DeliveryWorker(
            isolated.db, DirectDeliverer(transport), config, clock, shaper=shaper
        )
        assert await worker.run_once() == 4
        await sink.wait_for_messages(4)
        await transport.aclose()
    assert sink.max_open_connections == 1
    assert sink.connections_opened == 2, "two messages per connection, then a new one"
    assert {(await org.row(i)).status for i in ids} == {"delivered"}


def test_a_block_bounce_slows_the_site_down_too() -> None:
    shaper = SiteShaper()
    now = datetime(2026, 1, 1, tzinfo=UTC)
    delivered = RecipientOutcome("a@x.test", OutcomeKind.DELIVERED, SmtpReply.parse(250, "ok"), "")
    shaper.observe("yahoo", [delivered], now)
    assert shaper.state("yahoo").rate == 200
    shaper.observe("yahoo", [], now, blocked="554 5.7.9 Message not accepted for policy reasons")
    assert shaper.state("yahoo").rate == 100
    assert shaper.admit("yahoo", 1, now).until == now + timedelta(minutes=1)
    assert [s.site for s in shaper.changed()] == ["yahoo"]
    assert shaper.changed() == []


def _deferred(code: int, text: str) -> RecipientOutcome:
    reply = SmtpReply.parse(code, text)
    return RecipientOutcome("a@x.test", OutcomeKind.DEFERRED, reply, str(reply))


def test_throttle_replies_are_told_from_mailbox_trouble() -> None:
    assert is_throttle(_deferred(421, "4.7.0 [TSS04] Messages temporarily deferred"))
    assert is_throttle(_deferred(451, "4.7.650 The mail server has been temporarily rate limited"))
    assert is_throttle(_deferred(452, "Too many connections, try again later"))
    assert not is_throttle(_deferred(452, "4.2.2 Mailbox full"))
    assert not is_throttle(_deferred(450, "4.2.0 Greylisted, please come back"))
    bounced = RecipientOutcome("a@x.test", OutcomeKind.BOUNCED, SmtpReply.parse(550, "rate"), "")
    assert not is_throttle(bounced)
    assert not is_throttle(RecipientOutcome("a@x.test", OutcomeKind.DEFERRED, None, "timeout"))


def test_throttles_in_a_row_halve_the_rate_and_double_the_backoff() -> None:
    policy = SitePolicy(5, 50, 100)
    tuning = Adaptive(backoff=timedelta(minutes=1), max_backoff=timedelta(minutes=3))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    state = SiteState("yahoo", 100.0)
    for rate, backoff in ((50, 1), (25, 2), (12.5, 3), (6.25, 3)):
        state = state.throttled(policy, tuning, "421", now)
        assert (state.rate, state.suspended_until) == (rate, now + timedelta(minutes=backoff))
    recovered = state.recovered(policy, tuning, now + timedelta(minutes=4))
    assert recovered is state, "not before the recovery interval"
    recovered = state.recovered(policy, tuning, now + timedelta(minutes=5))
    assert (recovered.rate, recovered.throttles_in_a_row) == (16.25, 0)
    full = SiteState("yahoo", 100.0)
    assert full.recovered(policy, tuning, now + timedelta(days=1)) is full


def test_sites_roll_up_by_mx_host_and_known_consumer_domains() -> None:
    assert site_of_mx("example.com", ["ASPMX.L.GOOGLE.COM."]) == "google"
    assert site_of_mx("corp.test", ["corp-test.mail.protection.outlook.com"]) == "microsoft"
    assert site_of_mx("aol.com", ["mx-aol.mail.gm0.yahoodns.net"]) == "yahoo"
    assert site_of_mx("me.com", ["mx01.mail.icloud.com"]) == "apple"
    assert site_of_mx("small.test", ["mx.small.test"]) == "small.test"
    assert site_of_domain("GMail.com") == "google"
    assert site_of_domain("hotmail.com") == "microsoft"
    assert site_of_domain("other.test") == "other.test"
