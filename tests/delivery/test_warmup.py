"""Warm-up: a domain's daily allowance is honoured, the rest waits `deferred` with a
`warmup` reason and goes out the next day (an injected clock moves the day)."""

from __future__ import annotations

import ssl
import uuid
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from postyard.core.db import TenantId
from postyard.delivery import warmup
from postyard.delivery.mx import make_resolver
from postyard.delivery.retry import RetryPolicy
from postyard.delivery.routing import RelayDeliverer
from postyard.delivery.transport import Relay, SmtpTransport, TlsPolicy
from postyard.delivery.warmup import WarmupPolicy, WarmupState
from postyard.delivery.worker import DeliveryWorker, WorkerConfig
from postyard.sending.ledger import Candidate
from postyard.sending.models import Delivery
from postyard.settings import WarmupSettings
from postyard.tenancy import service as tenancy
from postyard.tenancy.types import Scope
from tests.conftest import Isolated
from tests.support.smtp_sink import SmtpSink

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current


async def test_day_one_allowance_is_honoured_and_the_rest_goes_the_next_day(
    isolated: Isolated,
) -> None:
    db = isolated.db
    async with db.system_tx(reason="test") as s:
        org = await tenancy.create_organization(s, name="w", slug=f"w-{uuid.uuid4().hex[:10]}")
    async with db.tenant_tx(org.id) as s:
        key = await tenancy.create_api_key(s, org.id, name="k", scope=Scope.FULL)
    async with db.tenant_tx(org.id) as s:
        await warmup.set_warmup(
            s, org.id, "Warm.Test", started_on=datetime.now(UTC).date(), schedule=(3, 10)
        )
    auth = {"Authorization": f"Bearer {key.token}"}
    async with httpx.AsyncClient(base_url=isolated.base_url) as http:
        for i in range(5):
            body = {"from": "news@warm.test", "to": f"r{i}@one.test", "subject": "s", "text": "t"}
            assert (await http.post("/v1/emails", json=body, headers=auth)).status_code == 200
        cold = {"from": "app@cold.test", "to": "x@one.test", "subject": "s", "text": "t"}
        assert (await http.post("/v1/emails", json=cold, headers=auth)).status_code == 200
    clock = Clock(datetime.now(UTC) + timedelta(seconds=1))

    transport = SmtpTransport(
        ssl_context=ssl.create_default_context(),
        opportunistic_context=ssl.create_default_context(),
        resolver=make_resolver([]),
        helo_name="worker.test",
    )
    async with SmtpSink() as sink:
        relay = Relay("127.0.0.1", sink.port, TlsPolicy.NONE, False, None, None)
        config = WorkerConfig(owner="warm", policy=RetryPolicy())
        worker = DeliveryWorker(db, RelayDeliverer(transport, relay), config, clock)
        assert await worker.run_once() == 6
        await sink.wait_for_messages(4)
        assert await worker.run_once() == 0, "nothing more is due today"
        day_one = sorted(r for m in sink.messages for r in m.recipients)

        async with db.system_tx(reason="test") as s:
            waiting = (
                await s.scalars(
                    select(Delivery).where(
                        Delivery.tenant_id == org.id, Delivery.status == "deferred"
                    )
                )
            ).all()
        tomorrow = datetime.combine(
            clock.now().date() + timedelta(days=1), datetime.min.time(), UTC
        )
        assert len(waiting) == 2
        assert {w.next_attempt_at for w in waiting} == {tomorrow}
        assert all((w.last_reply or "").startswith("warmup: warm.test") for w in waiting)
        assert all(w.attempts == 0 for w in waiting)

        clock.current = tomorrow + timedelta(minutes=1)
        assert await worker.run_once() == 2
        await sink.wait_for_messages(6)
    await transport.aclose()
    assert "x@one.test" in day_one, "a domain without a warm-up is not limited"
    assert len([r for r in day_one if r != "x@one.test"]) == 3
    async with db.tenant_tx(org.id) as s:
        [state] = await warmup.list_warmups(s, org.id)
    assert (state.counted_on, state.sent) == (tomorrow.date(), 2)


async def test_an_organization_sees_where_its_domains_are_on_their_ramps(
    isolated: Isolated,
) -> None:
    db = isolated.db
    tokens = {}
    async with db.system_tx(reason="test") as s:
        org = await tenancy.create_organization(s, name="w", slug=f"w-{uuid.uuid4().hex[:10]}")
        other = await tenancy.create_organization(s, name="o", slug=f"o-{uuid.uuid4().hex[:10]}")
    for name, tenant, scope in (
        ("full", org.id, Scope.FULL),
        ("sending", org.id, Scope.SENDING),
        ("other", other.id, Scope.FULL),
    ):
        async with db.tenant_tx(tenant) as s:
            tokens[name] = (await tenancy.create_api_key(s, tenant, name=name, scope=scope)).token
    now = datetime.now(UTC)
    today = now.date()
    async with db.tenant_tx(org.id) as s:
        await warmup.set_warmup(
            s, org.id, "warm.test", started_on=today - timedelta(days=1), schedule=(5, 10, 20)
        )
        await warmup.set_warmup(
            s, org.id, "done.test", started_on=today - timedelta(days=30), schedule=(1, 2)
        )
        await warmup.set_warmup(s, org.id, "ramp.test", started_on=today, schedule=None)
        await warmup.record_sent(s, {(org.id, "warm.test"): 3}, now=now)

    async def listed(token: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=isolated.base_url) as http:
            return await http.get("/v1/warmups", headers={"Authorization": f"Bearer {token}"})

    response = await listed(tokens["full"])
    assert response.status_code == 200, response.text
    done, ramp, warm = response.json()["data"]
    assert warm == {
        "object": "warmup",
        "domain": "warm.test",
        "started_on": (today - timedelta(days=1)).isoformat(),
        "schedule": [5, 10, 20],
        "day": 2,
        "finished": False,
        "allowance_today": 10,
        "sent_today": 3,
        "ends_on": (today + timedelta(days=2)).isoformat(),
    }
    assert (done["domain"], done["day"], done["finished"]) == ("done.test", 31, True)
    assert (done["allowance_today"], done["sent_today"]) == (None, 0)
    default_ramp = list(WarmupSettings().schedule)  # the test app's: the settings' default
    assert (ramp["domain"], ramp["schedule"], ramp["day"]) == ("ramp.test", default_ramp, 1)
    assert ramp["allowance_today"] == default_ramp[0]
    assert (await listed(tokens["other"])).json()["data"] == []
    refused = await listed(tokens["sending"])
    assert (refused.status_code, refused.json()["name"]) == (401, "restricted_api_key")


def _candidate(domain: str) -> Candidate:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    tenant = TenantId(uuid.UUID(int=1))
    return Candidate(uuid.uuid4(), tenant, uuid.uuid4(), "r@x.test", "x.test", domain, 0, now)


def test_ration_counts_per_domain_and_day() -> None:
    tenant = TenantId(uuid.UUID(int=1))
    now = datetime(2026, 1, 3, 12, tzinfo=UTC)
    state = WarmupState(tenant, "a.test", date(2026, 1, 1), None, date(2026, 1, 3), 1)
    stale = WarmupState(tenant, "b.test", date(2026, 1, 1), (1, 1, 2), date(2026, 1, 2), 9)
    rows = [_candidate("a.test") for _ in range(5)] + [_candidate("b.test") for _ in range(3)]
    policy = WarmupPolicy(schedule=(1, 2, 3))
    go, wait, used = warmup.ration(rows, {(tenant, "a.test"): state, (tenant, "b.test"): stale},
                                   policy, now=now)  # fmt: skip
    assert [c.from_domain for c in go] == ["a.test", "a.test", "b.test", "b.test"]
    assert used == {(tenant, "a.test"): 3, (tenant, "b.test"): 2}
    assert len(wait) == 4
    assert {w.until for w in wait} == {datetime(2026, 1, 4, tzinfo=UTC)}


def test_allowance_follows_the_ramp_then_stops_limiting() -> None:
    ramp = (50, 100)
    start = date(2026, 1, 1)
    assert warmup.allowance(ramp, start, date(2026, 1, 1)) == 50
    assert warmup.allowance(ramp, start, date(2026, 1, 2)) == 100
    assert warmup.allowance(ramp, start, date(2026, 1, 3)) is None
    assert warmup.allowance(ramp, start, date(2025, 12, 31)) == 50, "a future start: day 1"
    assert warmup.parse_schedule("5, 10,20") == (5, 10, 20)
