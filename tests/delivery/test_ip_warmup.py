"""Warm-up per source address: an address's daily allowance is shared by every tenant that
sends from it; the rest waits `deferred` with a `warmup` reason and goes the next day (an
injected clock moves the day). Candidates count against their domain and their address
together, so one refused by either counts against neither."""

from __future__ import annotations

import ssl
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from postyard.core.db import TenantId
from postyard.core.errors import ValidationFailed
from postyard.delivery import ip_warmup, warmup
from postyard.delivery.ip_warmup import IpWarmupState
from postyard.delivery.ippools import PoolConfig
from postyard.delivery.mx import make_resolver
from postyard.delivery.retry import RetryPolicy
from postyard.delivery.routing import RelayDeliverer
from postyard.delivery.session import SourceAddress
from postyard.delivery.transport import Relay, SmtpTransport, TlsPolicy
from postyard.delivery.warmup import WarmupPolicy, WarmupState
from postyard.delivery.worker import DeliveryWorker, WorkerConfig
from postyard.sending.ledger import Candidate
from postyard.sending.models import Delivery
from tests.conftest import Isolated
from tests.support.smtp_sink import SmtpSink
from tests.support.tenants import tenant_with_key

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

TX = SourceAddress("127.0.0.2", "tx.mta.test")
BULK = SourceAddress("127.0.0.3", "bulk.mta.test")
POOLS = PoolConfig(pools={"tx": (TX,), "bulk": (BULK,)}, stream_pools={"bulk": "bulk"},
                   default_pool="tx")  # fmt: skip


class Clock:
    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current


async def _send(
    isolated: Isolated, auth: dict[str, str], sender: str, to: str, stream: str
) -> None:
    body = {"from": sender, "to": to, "subject": "s", "text": "t", "stream": stream}
    async with httpx.AsyncClient(base_url=isolated.base_url) as http:
        response = await http.post("/v1/emails", json=body, headers=auth)
    assert response.status_code == 200, response.text


def _worker(isolated: Isolated, port: int, clock: Clock, policy: WarmupPolicy) -> DeliveryWorker:
    transport = SmtpTransport(
        ssl_context=ssl.create_default_context(),
        opportunistic_context=ssl.create_default_context(),
        resolver=make_resolver([]),
        helo_name="default.mta.test",
    )
    relay = Relay("127.0.0.1", port, TlsPolicy.NONE, False, None, None)
    config = WorkerConfig(owner=f"ipw-{uuid.uuid4().hex[:6]}", policy=RetryPolicy(),
                          warmups=policy)  # fmt: skip
    return DeliveryWorker(isolated.db, RelayDeliverer(transport, relay), config, clock, pools=POOLS)


async def _waiting(isolated: Isolated) -> list[Delivery]:
    async with isolated.db.system_tx(reason="test") as s:
        rows = await s.scalars(select(Delivery).where(Delivery.status == "deferred"))
        return list(rows.all())


async def test_an_address_allowance_is_shared_by_tenants_and_the_rest_goes_tomorrow(
    isolated: Isolated,
) -> None:
    _, auth_a = await tenant_with_key(isolated.db, "ipa")
    _, auth_b = await tenant_with_key(isolated.db, "ipb")
    async with isolated.db.system_tx(reason="test") as s:
        await ip_warmup.set_ip_warmup(
            s, " 127.0.0.2 ", started_on=datetime.now(UTC).date(), schedule=(3, 10)
        )
    for i in range(3):
        await _send(isolated, auth_a, "app@a.test", f"a{i}@one.test", "transactional")
    for i in range(2):
        await _send(isolated, auth_b, "app@b.test", f"b{i}@one.test", "transactional")
    await _send(isolated, auth_a, "news@a.test", "bulk@one.test", "bulk")
    clock = Clock(datetime.now(UTC) + timedelta(seconds=1))
    policy = WarmupPolicy(schedule=(), ip_schedule=(1000,))
    async with SmtpSink() as sink:
        worker = _worker(isolated, sink.port, clock, policy)
        assert await worker.run_once() == 6
        day_one = await sink.wait_for_messages(4)
        assert await worker.run_once() == 0, "nothing more is due today"
        waiting = await _waiting(isolated)
        tomorrow = datetime.combine(
            clock.now().date() + timedelta(days=1), datetime.min.time(), UTC
        )
        assert len(waiting) == 2
        assert {w.next_attempt_at for w in waiting} == {tomorrow}
        assert all(
            (w.last_reply or "")
            == "warmup: source address 127.0.0.2 reached today's allowance of 3"
            for w in waiting
        )
        assert all(w.attempts == 0 for w in waiting)
        clock.current = tomorrow + timedelta(minutes=1)
        assert await worker.run_once() == 2
        everything = await sink.wait_for_messages(6)
    peers = {r: m.peer for m in day_one for r in m.recipients}
    assert peers.pop("bulk@one.test") == "127.0.0.3", "an address without a warm-up is not limited"
    assert set(peers.values()) == {"127.0.0.2"}
    assert len(peers) == 3
    assert len({r for m in everything for r in m.recipients}) == 6
    async with isolated.db.system_tx(reason="test") as s:
        [state] = await ip_warmup.list_ip_warmups(s)
        assert (state.address, state.counted_on, state.sent) == ("127.0.0.2", tomorrow.date(), 2)
        assert await ip_warmup.stop_ip_warmup(s, "127.0.0.2")
        assert not await ip_warmup.stop_ip_warmup(s, "127.0.0.2")


async def test_automatic_ip_warmups_start_with_an_address_first_send(isolated: Isolated) -> None:
    _, auth = await tenant_with_key(isolated.db, "ipc")
    for i in range(3):
        await _send(isolated, auth, "app@c.test", f"c{i}@two.test", "bulk")
    clock = Clock(datetime.now(UTC) + timedelta(seconds=1))
    policy = WarmupPolicy(schedule=(), ip_schedule=(2,), ips_automatic=True)
    async with SmtpSink() as sink:
        worker = _worker(isolated, sink.port, clock, policy)
        assert await worker.run_once() == 3
        await sink.wait_for_messages(2)
    today = clock.now().date()
    [held] = await _waiting(isolated)
    assert held.last_reply == "warmup: source address 127.0.0.3 reached today's allowance of 2"
    async with isolated.db.system_tx(reason="test") as s:
        states = {w.address: w for w in await ip_warmup.list_ip_warmups(s)}
        assert (states["127.0.0.3"].started_on, states["127.0.0.3"].sent) == (
            clock.now().date(),
            2,
        )
        with pytest.raises(ValidationFailed):
            await ip_warmup.set_ip_warmup(s, "mail.example", started_on=today, schedule=None)


def _candidate(domain: str) -> Candidate:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    tenant = TenantId(uuid.UUID(int=1))
    return Candidate(uuid.uuid4(), tenant, uuid.uuid4(), "r@x.test", "x.test", domain, 0, now)


def test_a_candidate_counts_against_its_domain_and_its_address_or_neither() -> None:
    tenant = TenantId(uuid.UUID(int=1))
    now = datetime(2026, 1, 3, 12, tzinfo=UTC)
    today = now.date()
    domains = {
        (tenant, "a.test"): WarmupState(tenant, "a.test", today, (5,), today, 0),
        (tenant, "b.test"): WarmupState(tenant, "b.test", today, (1,), today, 0),
    }
    addresses = {"192.0.2.1": IpWarmupState("192.0.2.1", today, (2,), today, 0)}
    rows = [_candidate("b.test"), _candidate("b.test"), *(_candidate("a.test") for _ in range(3))]
    policy = WarmupPolicy(schedule=(), ip_schedule=())
    meters = [
        warmup.domain_meter(domains, policy),
        ip_warmup.ip_meter(addresses, lambda c: "192.0.2.1", policy),
    ]
    go, wait, [by_domain, by_address] = warmup.ration_all(rows, meters, now=now)
    # b.test's second candidate is refused by its domain: the address does not count it,
    # so the address's second slot goes to a.test's first candidate.
    assert [c.from_domain for c in go] == ["b.test", "a.test"]
    assert by_address == {"192.0.2.1": 2}
    assert by_domain == {(tenant, "b.test"): 1, (tenant, "a.test"): 1}
    assert [w.reason for w in wait] == [
        "warmup: b.test reached today's allowance of 1",
        "warmup: source address 192.0.2.1 reached today's allowance of 2",
        "warmup: source address 192.0.2.1 reached today's allowance of 2",
    ]
