"""IP pools: a tenant's streams leave from the addresses of their pools, with each address's
EHLO name; the sink on loopback sees the peer address (127.0.0.2, 127.0.0.3 …)."""

from __future__ import annotations

import ssl
import uuid

import httpx
import pytest

from postyard.core.clock import SystemClock
from postyard.core.db import TenantId
from postyard.core.errors import ValidationFailed
from postyard.delivery import ippools
from postyard.delivery.ippools import PoolConfig
from postyard.delivery.mx import make_resolver
from postyard.delivery.retry import RetryPolicy
from postyard.delivery.routing import RelayDeliverer
from postyard.delivery.session import SourceAddress
from postyard.delivery.transport import Relay, SmtpTransport, TlsPolicy
from postyard.delivery.worker import DeliveryWorker, WorkerConfig
from postyard.tenancy import service as tenancy
from postyard.tenancy.types import Scope
from tests.conftest import Isolated
from tests.support.smtp_sink import SmtpSink

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

TX = SourceAddress("127.0.0.2", "tx.mta.test")
BULK_A = SourceAddress("127.0.0.3", "bulk-a.mta.test")
BULK_B = SourceAddress("127.0.0.4", "bulk-b.mta.test")
CONFIG = PoolConfig(
    pools={"tx": (TX,), "bulk": (BULK_A, BULK_B)}, stream_pools={"bulk": "bulk"}, default_pool="tx"
)


async def test_streams_leave_from_their_pools_addresses(isolated: Isolated) -> None:
    db = isolated.db
    async with db.system_tx(reason="test") as s:
        org = await tenancy.create_organization(s, name="p", slug=f"p-{uuid.uuid4().hex[:10]}")
        vip = await tenancy.create_organization(s, name="v", slug=f"v-{uuid.uuid4().hex[:10]}")
    tokens = {}
    for tenant in (org.id, vip.id):
        async with db.tenant_tx(tenant) as s:
            tokens[tenant] = (
                await tenancy.create_api_key(s, tenant, name="k", scope=Scope.FULL)
            ).token
    async with db.tenant_tx(vip.id) as s:
        await ippools.assign(s, vip.id, stream="bulk", pool="tx", known=list(CONFIG.pools))

    async def send(tenant: TenantId, to: str, stream: str) -> None:
        body = {"from": "a@p.test", "to": to, "subject": "s", "text": "t", "stream": stream}
        auth = {"Authorization": f"Bearer {tokens[tenant]}"}
        async with httpx.AsyncClient(base_url=isolated.base_url) as http:
            response = await http.post("/v1/emails", json=body, headers=auth)
        assert response.status_code == 200, response.text

    await send(org.id, "t@r.test", "transactional")
    for i in range(6):
        await send(org.id, f"b{i}@r.test", "bulk")
    await send(vip.id, "v@r.test", "bulk")

    transport = SmtpTransport(
        ssl_context=ssl.create_default_context(),
        opportunistic_context=ssl.create_default_context(),
        resolver=make_resolver([]),
        helo_name="default.mta.test",
    )
    async with SmtpSink() as sink:
        relay = Relay("127.0.0.1", sink.port, TlsPolicy.NONE, False, None, None)
        config = WorkerConfig(owner="pools", policy=RetryPolicy())
        worker = DeliveryWorker(
            db, RelayDeliverer(transport, relay), config, SystemClock(), pools=CONFIG
        )
        assert await worker.run_once() == 8
        received = await sink.wait_for_messages(8)
    await transport.aclose()
    seen = {r: (m.peer, m.helo) for m in received for r in m.recipients}
    assert seen["t@r.test"] == ("127.0.0.2", "tx.mta.test")
    assert seen["v@r.test"] == ("127.0.0.2", "tx.mta.test"), "the tenant's own bulk pool"
    bulk = {seen[f"b{i}@r.test"] for i in range(6)}
    assert bulk <= {("127.0.0.3", "bulk-a.mta.test"), ("127.0.0.4", "bulk-b.mta.test")}


def test_a_message_keeps_its_address_and_no_pool_means_no_binding() -> None:
    tenant = TenantId(uuid.uuid4())
    message = uuid.uuid4()
    picks = {
        ippools.choose(CONFIG, {}, tenant_id=tenant, bulk=True, message_id=message)
        for _ in range(5)
    }
    assert len(picks) == 1
    assert picks <= {BULK_A, BULK_B}
    spread = {
        ippools.choose(CONFIG, {}, tenant_id=tenant, bulk=True, message_id=uuid.uuid4())
        for _ in range(64)
    }
    assert spread == {BULK_A, BULK_B}
    assert (
        ippools.choose(PoolConfig(), {}, tenant_id=tenant, bulk=False, message_id=message) is None
    )


async def test_assignments_name_a_configured_pool_and_stream(isolated: Isolated) -> None:
    async with isolated.db.system_tx(reason="test") as s:
        org = await tenancy.create_organization(s, name="q", slug=f"q-{uuid.uuid4().hex[:10]}")
    async with isolated.db.tenant_tx(org.id) as s:
        with pytest.raises(ValidationFailed):
            await ippools.assign(s, org.id, stream="bulk", pool="nope", known=["tx"])
        with pytest.raises(ValidationFailed):
            await ippools.assign(s, org.id, stream="promo", pool="tx", known=["tx"])
        await ippools.assign(s, org.id, stream="bulk", pool="tx", known=["tx"])
        await ippools.assign(s, org.id, stream="bulk", pool="tx2", known=["tx", "tx2"])
        assert [(a.stream, a.pool) for a in await ippools.list_assignments(s, org.id)] == [
            ("bulk", "tx2")
        ]
        assert await ippools.unassign(s, org.id, stream="bulk")
        assert not await ippools.unassign(s, org.id, stream="bulk")
