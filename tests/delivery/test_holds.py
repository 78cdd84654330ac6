"""Holds: a tenant's own through the API, an operator's through the service the CLI calls;
held recipients wait (status `held`, reason shown) and go at once on release."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from postyard.core.clock import SystemClock
from postyard.core.db import Database, TenantId
from postyard.delivery import holds
from postyard.delivery.holds import HoldKind, HoldOrigin
from postyard.delivery.mx import make_resolver
from postyard.delivery.retry import RetryPolicy
from postyard.delivery.routing import DirectDeliverer, RelayDeliverer
from postyard.delivery.transport import Relay, SmtpTransport, TlsPolicy
from postyard.delivery.worker import Deliverer, DeliveryWorker, WorkerConfig
from postyard.sending.models import Delivery
from postyard.tenancy import service as tenancy
from postyard.tenancy.types import Scope
from tests.conftest import Isolated
from tests.support.dns_server import MX, A, DnsServer
from tests.support.smtp_sink import SmtpSink

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


class Org:
    def __init__(self, db: Database, http: httpx.AsyncClient, tenant: TenantId, token: str) -> None:
        self.db = db
        self.http = http
        self.tenant = tenant
        self.auth = {"Authorization": f"Bearer {token}"}

    async def send(self, to: str, sender: str = "app@sender.test") -> str:
        body = {"from": sender, "to": to, "subject": "Hi", "text": "Body"}
        response = await self.http.post("/v1/emails", json=body, headers=self.auth)
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    async def row(self, email_id: str) -> Delivery:
        async with self.db.system_tx(reason="test") as s:
            row = await s.scalar(select(Delivery).where(Delivery.message_id == uuid.UUID(email_id)))
        assert row is not None
        return row

    async def hold(self, **body: Any) -> httpx.Response:
        return await self.http.post("/v1/holds", json=body, headers=self.auth)


async def _org(isolated: Isolated, http: httpx.AsyncClient) -> Org:
    async with isolated.db.system_tx(reason="test") as s:
        org = await tenancy.create_organization(s, name="h", slug=f"h-{uuid.uuid4().hex[:10]}")
    async with isolated.db.tenant_tx(org.id) as s:
        key = await tenancy.create_api_key(s, org.id, name="k", scope=Scope.FULL)
    return Org(isolated.db, http, org.id, key.token)


@pytest_asyncio.fixture
async def http(isolated: Isolated) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=isolated.base_url) as client:
        yield client


def _transport(resolver_ns: list[str] | None = None, mx_port: int = 25) -> SmtpTransport:
    loose = ssl.create_default_context()
    loose.check_hostname = False
    loose.verify_mode = ssl.CERT_NONE
    return SmtpTransport(
        ssl_context=ssl.create_default_context(),
        opportunistic_context=loose,
        resolver=make_resolver(resolver_ns or []),
        helo_name="worker.test",
        connect_timeout=5,
        command_timeout=10,
        mx_port=mx_port,
    )


def _worker(db: Database, deliverer: Deliverer) -> DeliveryWorker:
    config = WorkerConfig(owner=f"test-{uuid.uuid4().hex[:6]}", policy=RetryPolicy())
    return DeliveryWorker(db, deliverer, config, SystemClock())


def _relay(sink: SmtpSink) -> Relay:
    return Relay("127.0.0.1", sink.port, TlsPolicy.NONE, False, None, None)


async def test_a_domain_hold_keeps_mail_queued_with_a_reason_until_released(
    isolated: Isolated, http: httpx.AsyncClient
) -> None:
    org = await _org(isolated, http)
    other = await _org(isolated, http)
    response = await org.hold(kind="domain", value="Sender.TEST", reason="checking a complaint")
    assert response.status_code == 200, response.text
    hold = response.json()
    assert (hold["kind"], hold["value"], hold["origin"]) == ("domain", "sender.test", "tenant")
    held_id = await org.send("a@one.test")
    free_id = await org.send("b@one.test", sender="app@other.test")
    others_id = await other.send("c@one.test")

    transport = _transport()
    async with SmtpSink() as sink:
        worker = _worker(isolated.db, RelayDeliverer(transport, _relay(sink)))
        await worker.run_once()
        received = await sink.wait_for_messages(2)
        assert sorted(r for m in received for r in m.recipients) == ["b@one.test", "c@one.test"]
        row = await org.row(held_id)
        assert (row.status, row.held_by) == ("held", uuid.UUID(hold["id"]))
        assert row.last_reply is not None
        assert "checking a complaint" in row.last_reply
        assert row.attempts == 0
        assert (await org.row(free_id)).status == (await other.row(others_id)).status == "delivered"

        listed = (await http.get("/v1/holds", headers=org.auth)).json()["data"]
        assert [(h["id"], h["held"]) for h in listed] == [(hold["id"], 1)]
        assert (await http.get("/v1/holds", headers=other.auth)).json()["data"] == []

        # Another tenant cannot see or release it; the owner can, and the mail goes at once.
        stranger = await http.delete(f"/v1/holds/{hold['id']}", headers=other.auth)
        assert stranger.status_code == 404
        released = await http.delete(f"/v1/holds/{hold['id']}", headers=org.auth)
        assert released.status_code == 200, released.text
        assert released.json()["held"] == 1
        assert released.json()["released_at"] is not None
        assert (await org.row(held_id)).status == "queued"
        assert await worker.run_once() == 1
        [late] = (await sink.wait_for_messages(3))[2:]
    await transport.aclose()
    assert late.recipients == ("a@one.test",)
    assert (await org.row(held_id)).status == "delivered"
    again = await http.delete(f"/v1/holds/{hold['id']}", headers=org.auth)
    assert again.status_code == 200
    assert again.json()["held"] == 0


async def test_placing_a_hold_holds_what_is_already_due(
    isolated: Isolated, http: httpx.AsyncClient
) -> None:
    org = await _org(isolated, http)
    first = await org.send("a@one.test")
    second = await org.send("b@two.test")
    response = await org.hold(kind="tenant", reason="pause everything")
    assert response.json()["held"] == 2
    assert {(await org.row(first)).status, (await org.row(second)).status} == {"held"}
    transport = _transport()
    async with SmtpSink() as sink:
        assert await _worker(isolated.db, RelayDeliverer(transport, _relay(sink))).run_once() == 0
        assert sink.messages == []
    await transport.aclose()
    await http.delete(f"/v1/holds/{response.json()['id']}", headers=org.auth)


async def test_held_mail_can_be_canceled_and_stays_canceled_after_the_release(
    isolated: Isolated, http: httpx.AsyncClient
) -> None:
    org = await _org(isolated, http)
    canceled_to, kept_to = (f"{name}-{uuid.uuid4().hex[:8]}@one.test" for name in "ab")
    email_id = await org.send(canceled_to)
    kept_id = await org.send(kept_to)
    hold = (await org.hold(kind="tenant", reason="pause everything")).json()
    assert (await org.row(email_id)).status == "held"

    canceled = await http.post(f"/v1/emails/{email_id}/cancel", headers=org.auth)
    assert canceled.status_code == 200, canceled.text
    row = await org.row(email_id)
    assert (row.status, row.held_by) == ("canceled", None)
    shown = (await http.get(f"/v1/emails/{email_id}", headers=org.auth)).json()
    assert shown["last_event"] == "canceled"
    again = await http.post(f"/v1/emails/{email_id}/cancel", headers=org.auth)
    assert again.status_code == 422

    released = await http.delete(f"/v1/holds/{hold['id']}", headers=org.auth)
    assert released.json()["held"] == 1  # only the one still held
    assert (await org.row(email_id)).status == "canceled"
    assert (await org.row(kept_id)).status == "queued"
    transport = _transport()
    async with SmtpSink() as sink:
        # The worker claims what other tests of this module left due too: count recipients.
        sent = await _worker(isolated.db, RelayDeliverer(transport, _relay(sink))).run_once()
        received = {r for m in await sink.wait_for_messages(sent) for r in m.recipients}
    await transport.aclose()
    assert kept_to in received
    assert canceled_to not in received
    assert (await org.row(kept_id)).status == "delivered"


async def test_an_operator_hold_on_a_site_catches_every_tenant_and_only_the_operator_releases_it(
    isolated: Isolated, http: httpx.AsyncClient
) -> None:
    a = await _org(isolated, http)
    b = await _org(isolated, http)
    async with isolated.db.system_tx(reason="test: operator") as s:
        site_hold = await holds.place_hold(
            s, None, kind=HoldKind.DESTINATION, value="google", reason="421s from Gmail",
            origin=HoldOrigin.OPERATOR, now=SystemClock().now(),
        )  # fmt: skip
        tenant_hold = await holds.place_hold(
            s, a.tenant, kind=HoldKind.DESTINATION, value="slow.test", reason="ops",
            origin=HoldOrigin.OPERATOR, now=SystemClock().now(),
        )  # fmt: skip
    # gmail.com is Google's by name; hosted.test only by its MX hosts (seen at send time).
    ids = [await a.send("x@gmail.com"), await b.send("y@hosted.test"), await b.send("z@plain.test")]
    async with (
        SmtpSink() as sink,
        DnsServer(
            {
                "gmail.com": [MX(5, "gmail-smtp-in.l.google.com")],
                "gmail-smtp-in.l.google.com": [A("127.0.0.1")],
                "hosted.test": [MX(1, "aspmx.l.google.com")],
                "aspmx.l.google.com": [A("127.0.0.1")],
                "plain.test": [MX(10, "mx.plain.test")],
                "mx.plain.test": [A("127.0.0.1")],
            }
        ) as dns,
    ):
        transport = _transport([dns.nameserver], mx_port=sink.port)
        worker = _worker(isolated.db, DirectDeliverer(transport))
        await worker.run_once()
        [only] = await sink.wait_for_messages(1)
        await transport.aclose()
    assert only.recipients == ("z@plain.test",)
    assert [(await a.row(ids[0])).held_by, (await b.row(ids[1])).held_by] == [site_hold.hold.id] * 2
    # The tenant sees the operator's hold on it but cannot lift it.
    listed = (await http.get("/v1/holds", headers=a.auth)).json()["data"]
    assert [(h["id"], h["origin"]) for h in listed] == [(str(tenant_hold.hold.id), "operator")]
    refused = await http.delete(f"/v1/holds/{tenant_hold.hold.id}", headers=a.auth)
    assert (refused.status_code, refused.json()["name"]) == (403, "hold_owned_by_operator")
    hidden = await http.delete(f"/v1/holds/{site_hold.hold.id}", headers=a.auth)
    assert hidden.status_code == 404
    async with isolated.db.system_tx(reason="test: operator") as s:
        released = await holds.release_hold(
            s, None, str(site_hold.hold.id), now=SystemClock().now()
        )
    assert released.held == 2
    assert {(await a.row(ids[0])).status, (await b.row(ids[1])).status} == {"queued"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "planet"}, "kind"),
        ({"kind": "tenant", "value": "x.test"}, "value"),
        ({"kind": "domain"}, "value"),
        ({"kind": "domain", "value": "localhost"}, "value"),
        ({"kind": "destination", "value": "nosuchsite"}, "value"),
        ({"kind": "destination", "value": "bad domain.test"}, "value"),
        ({"kind": "tenant", "extra": 1}, "extra"),
    ],
)
async def test_bad_holds_are_typed_errors_and_write_nothing(
    isolated: Isolated, http: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    org = await _org(isolated, http)
    response = await org.hold(**body)
    assert response.status_code == 422, response.text
    assert response.json()["name"] == "validation_error"
    assert field in response.json()["message"] or field == "value"
    assert (await http.get("/v1/holds", headers=org.auth)).json()["data"] == []
    assert (await http.delete("/v1/holds/not-a-uuid", headers=org.auth)).status_code == 404
