"""Group commit on the SMTP relay, over real sockets and the real database: concurrent
sessions' messages stored in one transaction, each answered with its own id; a refused or
unstorable message fails alone; a failed transaction is a 451 for every message in it, and
nothing is answered 250 before the commit.

The relay runs with a window far longer than any test and groups of three, so a group
starts exactly when the third message arrives: nothing depends on timing.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from postyard.core.db import Database, TenantId, caused_by_data
from postyard.settings import SendingSettings, Settings
from tests.conftest import TEST_KEK, TEST_POLICY, Tenant
from tests.smtp import (
    GUARD_SECONDS,
    TlsFiles,
    compose,
    message_count,
    queued_id,
    running_relay,
    submit,
    unreachable_database,
)
from tests.support.dns_server import DnsServer
from tests.support.domains import verified_domain
from tests.support.failing_db import CommitFails, UnreachableTenants

GROUP: dict[str, Any] = {"group_commit_window": 60.0, "group_commit_max_messages": 3}
"""Never waited out: each test sends exactly three messages at once."""


async def _send_together(
    port: int, token: str, messages: list[tuple[bytes, str]]
) -> list[tuple[int, bytes]]:
    return list(
        await asyncio.gather(
            *(asyncio.to_thread(submit, port, token, data, sender) for data, sender in messages)
        )
    )


async def _transactions(db: Database, tenant_id: TenantId, ids: list[str]) -> set[str]:
    """The transaction ids (xmin) that wrote these messages' rows."""
    async with db.tenant_conn(tenant_id) as conn:
        rows = await conn.fetch(
            "SELECT CAST(xmin AS text) AS tx FROM messages WHERE id = ANY($1::uuid[])",
            [uuid.UUID(i) for i in ids],
        )
    assert len(rows) == len(ids)
    return {row["tx"] for row in rows}


async def test_concurrent_sessions_share_one_transaction_and_each_gets_its_own_id(
    settings: Settings, db: Database, tmp_path: Path, tls: TlsFiles, tenant: Tenant
) -> None:
    tenant_id = TenantId(tenant.org.id)
    messages = [(compose(subject=f"n{i}"), "app@example.com") for i in range(3)]
    async with running_relay(settings, db, data_dir=tmp_path, tls=tls, **GROUP) as relay:
        replies = await _send_together(relay.port, tenant.key.token, messages)
    ids = [queued_id(reply) for reply in replies]
    assert len(set(ids)) == 3
    assert len(await _transactions(db, tenant_id, ids)) == 1
    async with db.tenant_conn(tenant_id) as conn:
        rows = await conn.fetch(
            """
            SELECT m.id, m.subject, m.source,
                   (SELECT count(*) FROM deliveries d WHERE d.message_id = m.id) AS deliveries,
                   (SELECT array_agg(e.type) FROM events e WHERE e.message_id = m.id) AS events
              FROM messages m
            """
        )
    # Each message has its own rows, as when it was committed alone.
    assert sorted((str(r["id"]), r["subject"]) for r in rows) == sorted(
        (ids[i], f"n{i}") for i in range(3)
    )
    assert {(r["source"], r["deliveries"], tuple(r["events"])) for r in rows} == {
        ("smtp", 1, ("email.sent",))
    }


async def test_a_refused_message_does_not_fail_the_others_of_its_group(
    settings: Settings,
    db: Database,
    tmp_path: Path,
    tls: TlsFiles,
    tenant: Tenant,
    dns_server: DnsServer,
) -> None:
    tenant_id = TenantId(tenant.org.id)
    name = f"d{uuid.uuid4().hex[:8]}.example.com"
    await verified_domain(db, dns_server, tenant_id, name, kek=TEST_KEK, policy=TEST_POLICY)
    strict = settings.model_copy(update={"sending": SendingSettings(require_verified_domain=True)})
    messages = [
        (compose(sender=f"App <app@{name}>", subject="ok 1"), f"app@{name}"),
        (compose(sender="App <app@unverified.example>", subject="refused"), "app@example.com"),
        (compose(sender=f"App <app@{name}>", subject="ok 2"), f"app@{name}"),
    ]
    async with running_relay(strict, db, data_dir=tmp_path, tls=tls, **GROUP) as relay:
        first, refused, second = await _send_together(relay.port, tenant.key.token, messages)
    assert refused == (
        553,
        b"5.7.1 Sender domain is not a verified domain of this organization",
    )
    ids = [queued_id(first), queued_id(second)]
    assert len(await _transactions(db, tenant_id, ids)) == 1
    assert await message_count(db, tenant_id) == 2


async def test_a_nul_character_is_refused_for_good_before_it_could_join_a_group(
    settings: Settings, db: Database, tmp_path: Path, tls: TlsFiles, tenant: Tenant
) -> None:
    # PostgreSQL's text cannot hold NUL: a 451 would be retried forever, so it is a 554 at
    # parse time, and the message never joins a group (a group of three never forms here).
    nul = compose(subject="nul", body="Hello \x00 there\r\n")
    async with running_relay(settings, db, data_dir=tmp_path, tls=tls, **GROUP) as relay:
        reply = await asyncio.to_thread(submit, relay.port, tenant.key.token, nul)
    assert reply == (554, b"5.6.0 The message text contains a NUL character (U+0000).")
    assert await message_count(db, TenantId(tenant.org.id)) == 0


async def test_database_errors_caused_by_values_are_told_apart_from_trouble(db: Database) -> None:
    """``caused_by_data`` (the group commit's split rule) on real PostgreSQL errors: a value
    PostgreSQL cannot store or a constraint is the data's fault; a lost connection is not."""
    async with db.system_conn(reason="test") as conn:
        try:
            await conn.execute("SELECT CAST($1 AS integer)", "not a number")
        except asyncpg.PostgresError as exc:
            assert caused_by_data(exc)  # 22P02: invalid text representation
        else:
            raise AssertionError("PostgreSQL accepted a bad integer")
        try:
            await conn.execute(
                "CREATE TEMP TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (1)"
            )
        except asyncpg.PostgresError as exc:
            assert caused_by_data(exc)  # 23505: unique violation
        else:
            raise AssertionError("PostgreSQL accepted a duplicate key")
    assert not caused_by_data(asyncpg.exceptions.AdminShutdownError("terminating"))
    assert not caused_by_data(ConnectionResetError())
    assert not caused_by_data(TimeoutError())


async def test_database_trouble_is_451_for_every_message_of_the_group(
    settings: Settings, db: Database, tmp_path: Path, tls: TlsFiles, tenant: Tenant
) -> None:
    messages = [(compose(subject=f"n{i}"), "app@example.com") for i in range(3)]
    async with unreachable_database() as broken:
        relay_db = UnreachableTenants(broken, db)
        async with running_relay(settings, relay_db, data_dir=tmp_path, tls=tls, **GROUP) as relay:
            replies = await _send_together(relay.port, tenant.key.token, messages)
    assert replies == [(451, b"4.3.0 Message not stored; try again later")] * 3
    assert await message_count(db, TenantId(tenant.org.id)) == 0


async def test_nothing_is_answered_250_before_the_commit(
    settings: Settings, db: Database, tmp_path: Path, tls: TlsFiles, tenant: Tenant
) -> None:
    failing = CommitFails(db)
    messages = [(compose(subject=f"n{i}"), "app@example.com") for i in range(3)]
    async with running_relay(settings, failing, data_dir=tmp_path, tls=tls, **GROUP) as relay:
        sending = asyncio.ensure_future(_send_together(relay.port, tenant.key.token, messages))
        async with asyncio.timeout(GUARD_SECONDS):
            await failing.before_commit.wait()
        # The group's statements ran; its commit has not: no session has its reply.
        assert not sending.done()
        failing.go_on.set()
        replies = await sending
    assert replies == [(451, b"4.3.0 Message not stored; try again later")] * 3
    assert await message_count(db, TenantId(tenant.org.id)) == 0
