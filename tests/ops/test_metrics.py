"""GET /metrics: Prometheus text of the instance's queues, behind the operator's token.
The rendering (pure), then the figures of a real database of this module's own, changed
by sends, a webhook endpoint, a dead worker's lease and a suspended organization."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network

import httpx
import pytest_asyncio
from sqlalchemy import func, select

from postyard import __version__
from postyard.core.clock import SystemClock
from postyard.core.http import AppServices
from postyard.events.models import Event
from postyard.migrations.runner import schema_head
from postyard.ops.metrics import CONTENT_TYPE, Queue, Snapshot, render
from postyard.ops.snapshot import SNAPSHOT
from postyard.sending import ledger
from postyard.sending.models import Delivery
from postyard.tenancy import service as tenancy
from postyard.tenancy.types import OrgStatus
from postyard.webhooks import service as webhooks
from postyard.webhooks.ssrf import AddressPolicy
from tests.conftest import TEST_KEK, AppFactory, Isolated, start_server, stop_server
from tests.support.tenants import tenant_with_key

TOKEN = "metrics-token-0123456789"
NOW = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)


def test_the_text_is_prometheus_exposition_format() -> None:
    snapshot = Snapshot(
        taken_at=NOW,
        version='1.0 "rc\\1"',
        deliveries=Queue({"queued": 3, "held": 1}, 2, NOW - timedelta(seconds=90.25), 1),
        webhooks=Queue({}, 0, None, 0),
        events=123_456_789,
        organizations={"active": 2},
        connections=7,
        max_connections=100,
    )
    text = render(snapshot)
    assert text.endswith("\n")
    lines = text.splitlines()
    assert lines[:3] == [
        "# HELP postyard_build_info The running release.",
        "# TYPE postyard_build_info gauge",
        'postyard_build_info{version="1.0 \\"rc\\\\1\\""} 1',
    ]
    samples = [line for line in lines if not line.startswith("#")]
    assert samples[1:] == [
        'postyard_deliveries{status="queued"} 3',
        'postyard_deliveries{status="scheduled"} 0',
        'postyard_deliveries{status="deferred"} 0',
        'postyard_deliveries{status="sending"} 0',
        'postyard_deliveries{status="held"} 1',
        "postyard_deliveries_due 2",
        "postyard_deliveries_oldest_due_seconds 90.25",
        "postyard_deliveries_expired_leases 1",
        'postyard_webhook_deliveries{status="pending"} 0',
        'postyard_webhook_deliveries{status="sending"} 0',
        "postyard_webhook_deliveries_due 0",
        "postyard_webhook_deliveries_oldest_due_seconds 0",
        "postyard_webhook_deliveries_expired_leases 0",
        "postyard_events_total 123456789",  # in full: a rounded counter would go backwards
        'postyard_organizations{status="active"} 2',
        'postyard_organizations{status="suspended"} 0',
        'postyard_organizations{status="deleted"} 0',
        "postyard_database_connections 7",
        "postyard_database_max_connections 100",
    ]
    # Every sample's family has its HELP and TYPE lines first.
    for sample in samples:
        name = re.split(r"[{ ]", sample)[0]
        assert lines.index(f"# TYPE {name} {'counter' if 'total' in name else 'gauge'}") < (
            lines.index(sample)
        )


def parse(text: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


@pytest_asyncio.fixture
async def server(isolated: Isolated, app_factory: AppFactory) -> AsyncIterator[str]:
    services = AppServices(
        db=isolated.db, clock=SystemClock(), schema_head=schema_head(), metrics_token=TOKEN
    )
    http_server, task, base = await start_server(app_factory(services))
    yield base
    await stop_server(http_server, task)


async def _send(http: httpx.AsyncClient, auth: dict[str, str], **extra: str) -> str:
    body = {"from": "app@sender.test", "to": "r@example.test", "subject": "Hi", "text": "x"}
    response = await http.post("/v1/emails", json={**body, **extra}, headers=auth)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


async def _event_count(isolated: Isolated) -> int:
    async with isolated.db.system_tx(reason="test") as s:
        return int(await s.scalar(select(func.count()).select_from(Event)) or 0)


async def _metrics(http: httpx.AsyncClient) -> dict[str, float]:
    response = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CONTENT_TYPE
    return parse(response.text)


async def test_the_figures_follow_the_queues_of_every_tenant(
    isolated: Isolated, server: str
) -> None:
    async with httpx.AsyncClient(base_url=server) as http:
        events_before = await _event_count(isolated)
        first = await _metrics(http)
        assert first[f'postyard_build_info{{version="{__version__}"}}'] == 1
        assert first["postyard_database_max_connections"] > 0
        assert first["postyard_database_connections"] >= 1

        a, auth_a = await tenant_with_key(isolated.db, "a")
        b, auth_b = await tenant_with_key(isolated.db, "b")
        async with isolated.db.tenant_tx(a) as s:
            await webhooks.create_endpoint(
                s, a, url="https://127.0.0.1/hook", events=["email.sent"], kek=TEST_KEK,
                policy=AddressPolicy([ip_network("127.0.0.0/8")]), now=datetime.now(UTC),
            )  # fmt: skip
        await _send(http, auth_a)
        await _send(http, auth_a)
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        await _send(http, auth_a, scheduled_at=later)
        dead = await _send(http, auth_b)
        canceled = await _send(http, auth_b, scheduled_at=later)
        assert (await http.post(f"/v1/emails/{canceled}/cancel", headers=auth_b)).status_code == 200
        # A worker leased b's first recipient and died; its lease ran out 15 minutes ago.
        async with isolated.db.system_tx(reason="test") as s:
            row = await s.scalar(select(Delivery.id).where(Delivery.message_id == uuid.UUID(dead)))
            assert row is not None
            an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
            await ledger.start_sending(
                s, [row], owner="dead-worker", lease=timedelta(minutes=-15), now=an_hour_ago
            )
            await tenancy.set_organization_status(s, str(b), OrgStatus.SUSPENDED)

        now = await _metrics(http)
        written = await _event_count(isolated) - events_before
        assert written >= 6  # each send's event, and the cancel's

    assert (
        now['postyard_deliveries{status="queued"}']
        == first['postyard_deliveries{status="queued"}'] + 2
    )
    assert now['postyard_deliveries{status="scheduled"}'] == 1  # the canceled one is not
    assert now['postyard_deliveries{status="sending"}'] == 1
    assert now["postyard_deliveries_expired_leases"] == 1
    assert now["postyard_deliveries_due"] == 2  # the scheduled one is not due yet
    assert now["postyard_deliveries_oldest_due_seconds"] >= 0
    # a's endpoint gets email.sent: two sends now, the scheduled one when it goes.
    assert now['postyard_webhook_deliveries{status="pending"}'] == 2
    assert now["postyard_webhook_deliveries_due"] == 2
    assert now["postyard_events_total"] - first["postyard_events_total"] == written
    assert (
        now['postyard_organizations{status="active"}']
        == first['postyard_organizations{status="active"}'] + 1
    )
    assert (
        now['postyard_organizations{status="suspended"}']
        == first['postyard_organizations{status="suspended"}'] + 1
    )


async def test_only_the_operator_s_token_opens_it(isolated: Isolated, server: str) -> None:
    _, tenant_auth = await tenant_with_key(isolated.db, "t")
    async with httpx.AsyncClient(base_url=server) as http:
        missing = await http.get("/metrics")
        assert missing.status_code == 401
        assert missing.json()["name"] == "missing_metrics_token"
        wrong = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"})
        assert wrong.status_code == 403
        assert wrong.json()["name"] == "invalid_metrics_token"
        api_key = await http.get("/metrics", headers=tenant_auth)  # a tenant's key: never
        assert api_key.status_code == 403


async def test_without_a_token_there_is_no_metrics_path(isolated: Isolated) -> None:
    async with httpx.AsyncClient(base_url=isolated.base_url) as http:  # no token configured
        response = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 404
    assert response.json()["name"] == "not_found"


async def test_the_snapshot_never_scans_the_finished_rows(isolated: Isolated) -> None:
    # With sequential scans priced out, a plan still holds one only where no index can serve:
    # for deliveries that would be a count over every delivered row ever.
    async with isolated.db.system_conn(reason="test") as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {SNAPSHOT}", datetime.now(UTC))
    scanned = set(re.findall(r'"Node Type": "Seq Scan",[^}]*?"Relation Name": "(\w+)"', plan))
    assert scanned <= {"organizations"}, plan  # a few rows; pg_stat_activity is a function
