"""Fair claims: one tenant's 20,000-message backlog does not starve another tenant, and the
claim stays an index walk however big the queue is."""

from __future__ import annotations

import ssl
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text

from postyard.core.clock import SystemClock
from postyard.core.db import Database, TenantId
from postyard.delivery.mx import make_resolver
from postyard.delivery.retry import RetryPolicy
from postyard.delivery.routing import RelayDeliverer
from postyard.delivery.transport import Relay, SmtpTransport, TlsPolicy
from postyard.delivery.worker import DeliveryWorker, WorkerConfig
from postyard.sending import ledger
from postyard.tenancy import service as tenancy
from postyard.tenancy.types import Scope
from tests.conftest import Isolated
from tests.support.smtp_sink import SmtpSink

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

BACKLOG = 20_000

_QUEUE_BULK = text(
    """
    WITH m AS (
        INSERT INTO messages (id, tenant_id, source, stream, sender, from_domain, envelope_from,
                              subject, to_addrs, cc_addrs, bcc_addrs, reply_to_addrs, text,
                              tags, message_id_header, size, smtputf8,
                              created_at, updated_at)
        SELECT gen_random_uuid(), :tenant, 'api', 'bulk', 'news@bulk.test', 'bulk.test',
               'news@bulk.test', 'News', ARRAY['r' || g || '@bulk-rcpt.test'], '{}', '{}',
               '{}', 'Hi', '[]', '<' || g || '@bulk.test>', 10, false,
               now() - interval '1 hour', now()
          FROM generate_series(1, :n) AS g
        RETURNING id, to_addrs[1] AS rcpt, created_at
    ), c AS (
        INSERT INTO message_contents (message_id, tenant_id, raw)
        SELECT id, :tenant, convert_to('Subject: News' || chr(13) || chr(10) || chr(13)
               || chr(10) || 'Hi' || chr(13) || chr(10), 'UTF8') FROM m
    )
    INSERT INTO deliveries (id, tenant_id, message_id, recipient, domain, kind, bulk, status,
                            next_attempt_at)
    SELECT gen_random_uuid(), :tenant, id, rcpt, 'bulk-rcpt.test', 'to', true, 'queued',
           created_at + (random() * interval '1 minute')
      FROM m
    """
)


async def _tenant(db: Database) -> tuple[TenantId, str]:
    async with db.system_tx(reason="test") as s:
        org = await tenancy.create_organization(s, name="f", slug=f"f-{uuid.uuid4().hex[:10]}")
    async with db.tenant_tx(org.id) as s:
        key = await tenancy.create_api_key(s, org.id, name="k", scope=Scope.FULL)
    return org.id, key.token


def _relay(sink: SmtpSink) -> Relay:
    return Relay("127.0.0.1", sink.port, TlsPolicy.NONE, False, None, None)


def _transport() -> SmtpTransport:
    return SmtpTransport(
        ssl_context=ssl.create_default_context(),
        opportunistic_context=ssl.create_default_context(),
        resolver=make_resolver([]),
        helo_name="worker.test",
        connect_timeout=5,
        command_timeout=10,
        max_connections_per_destination=20,
    )


async def test_a_big_backlog_does_not_starve_another_tenant(isolated: Isolated) -> None:
    db = isolated.db
    a, a_token = await _tenant(db)
    _, b_token = await _tenant(db)
    async with db.system_tx(reason="test: tenant A queues a big bulk send") as s:
        await s.execute(_QUEUE_BULK, {"tenant": a, "n": BACKLOG})
    async with httpx.AsyncClient(base_url=isolated.base_url) as http:
        for i in range(10):
            response = await http.post(
                "/v1/emails",
                json={"from": "app@b.test", "to": f"user{i}@b-rcpt.test", "subject": "Code",
                      "text": "123456"},
                headers={"Authorization": f"Bearer {b_token}"},
            )  # fmt: skip
            assert response.status_code == 200, response.text
        # A's own transactional mail, queued after its bulk backlog, does not wait for it.
        for i in range(3):
            response = await http.post(
                "/v1/emails",
                json={"from": "app@a.test", "to": f"reset{i}@a-rcpt.test", "subject": "Reset",
                      "text": "link", "stream": "transactional"},
                headers={"Authorization": f"Bearer {a_token}"},
            )  # fmt: skip
            assert response.status_code == 200, response.text

    transport = _transport()
    config = WorkerConfig(owner="fair", batch_size=200, policy=RetryPolicy())
    async with SmtpSink() as sink:
        worker = DeliveryWorker(
            db,
            RelayDeliverer(transport, _relay(sink)),
            config,
            SystemClock(),
        )
        for _ in range(10):  # a guard: B's mail comes in the first claim
            await worker.run_once()
            arrived = [r for m in sink.messages for r in m.recipients]
            if sum(r.endswith("@b-rcpt.test") for r in arrived) == 10:
                break
    await transport.aclose()
    order = [r for m in sink.messages for r in m.recipients]
    b_positions = [i for i, r in enumerate(order) if r.endswith("@b-rcpt.test")]
    a_before_last_b = sum(1 for r in order[: b_positions[-1]] if r.endswith("@bulk-rcpt.test"))
    assert len(b_positions) == 10
    assert a_before_last_b < 1000, f"B's last mail came after {a_before_last_b} of A's"
    a_transactional = [i for i, r in enumerate(order) if r.endswith("@a-rcpt.test")]
    assert len(a_transactional) == 3
    first_bulk = next(i for i, r in enumerate(order) if r.endswith("@bulk-rcpt.test"))
    assert max(a_transactional + b_positions) < first_bulk or all(
        # One claim sends its groups concurrently: arrival order within the first batch is
        # the sink's; what matters is that they were claimed before any bulk row.
        i < 200
        for i in a_transactional + b_positions
    )
    async with db.system_tx(reason="test") as s:
        left = await s.scalar(
            text("SELECT count(*) FROM deliveries WHERE tenant_id = :t AND status = 'queued'"),
            {"t": a},
        )
    assert left is not None
    assert left > BACKLOG - 1000, "A's backlog is still mostly waiting: B did not wait for it"


async def test_the_claim_walks_indexes_not_the_queue(isolated: Isolated) -> None:
    db = isolated.db
    tenants = [(await _tenant(db))[0] for _ in range(3)]
    async with db.system_tx(reason="test: a big queue") as s:
        for tenant in tenants:
            await s.execute(_QUEUE_BULK, {"tenant": tenant, "n": 5000})
    async with db.system_tx(reason="test: statistics") as s:
        await s.execute(text("ANALYZE deliveries"))
        await s.execute(text("ANALYZE messages"))
    async with db.system_conn(reason="test: explain the claim") as conn:
        statement, params = ledger._LOCK_DUE, {"limit": 200, "now": SystemClock().now()}
        rows = await conn.fetch("EXPLAIN " + statement.sql, *statement.arguments(params))
    plan = "\n".join(row[0] for row in rows)
    assert "ix_deliveries_tenant_due" in plan, plan
    assert "Seq Scan on deliveries" not in plan, plan
    async with db.system_tx(reason="test: the claim takes an equal share") as s:
        claimed, _ = await ledger.claim_due(
            s, owner="x", limit=90, lease=timedelta(minutes=1), now=SystemClock().now()
        )
    per_tenant = {t: sum(1 for c in claimed if c.tenant_id == t) for t in tenants}
    assert min(per_tenant.values()) > 0
    assert max(per_tenant.values()) - min(per_tenant.values()) <= 1, per_tenant
    assert len(claimed) == 90


def _candidate(tenant: str, minute: int) -> ledger.Candidate:
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minute)
    return ledger.Candidate(
        uuid.uuid4(), TenantId(uuid.UUID(int=ord(tenant))), uuid.uuid4(), "r@x.test",
        "x.test", "s.test", 0, at,
    )  # fmt: skip


def test_transactional_rows_come_before_bulk_rows_of_every_tenant() -> None:
    bulk = [
        ledger.Candidate(
            uuid.uuid4(),
            TenantId(uuid.UUID(int=ord("a"))),
            uuid.uuid4(),
            "r@x.test",
            "x.test",
            "s.test",
            0,
            datetime(2026, 1, 1, tzinfo=UTC),
            bulk=True,
        )
        for _ in range(3)
    ]
    late = _candidate("b", 60)
    assert ledger.round_robin([*bulk, late], 2) == [late, bulk[0]]


def test_a_claim_takes_tenants_in_turns_oldest_first() -> None:
    rows = [_candidate("a", m) for m in range(5)] + [_candidate("b", 10), _candidate("c", 3)]
    picked = ledger.round_robin(rows, 5)
    assert [(chr(c.tenant_id.int), c.next_attempt_at.minute) for c in picked] == [
        ("a", 0), ("c", 3), ("b", 10), ("a", 1), ("a", 2),
    ]  # fmt: skip
    assert ledger.round_robin(rows, 2) == [rows[0], rows[6]]


def test_each_tenant_gets_an_equal_share_of_a_claim() -> None:
    assert ledger.share_per_tenant(200, 1) == 200
    assert ledger.share_per_tenant(200, 2) == 100
    assert ledger.share_per_tenant(200, 3) == 67
    assert ledger.share_per_tenant(200, 500) == 1
    assert ledger.share_per_tenant(200, 0) == 200
