"""Row-level security meta-test: every table with a tenant column, two tenants, as the app role.

Each test runs in one transaction that is rolled back; ``SET LOCAL ROLE`` switches between the
system role (to plant rows) and the app role (to attack them).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from postyard.core.rls import CURRENT_TENANT_FN, rls_violations, tenant_table_sql, tenant_tables
from postyard.runtime import Runtime
from tests.conftest import APP_ROLE, SYSTEM_ROLE

RowFactory = Callable[[asyncpg.Connection, uuid.UUID], Awaitable[object]]


async def _api_key_row(conn: asyncpg.Connection, tenant: uuid.UUID) -> None:
    lookup = uuid.uuid4().hex[:12]
    await conn.execute(
        "INSERT INTO api_keys (id, tenant_id, name, lookup_id, token_prefix, token_hash, scope) "
        "VALUES ($1, $2, 'k', $3, $4, $5, 'full')",
        uuid.uuid4(),
        tenant,
        lookup,
        f"py_{lookup}",
        os.urandom(32),
    )


async def _message_row(conn: asyncpg.Connection, tenant: uuid.UUID) -> uuid.UUID:
    message_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO messages (id, tenant_id, source, sender, envelope_from, subject, to_addrs,"
        " cc_addrs, bcc_addrs, reply_to_addrs, tags, message_id_header, size, smtputf8)"
        " VALUES ($1, $2, 'api', 'a@x.test', 'a@x.test', 's', '{b@y.test}', '{}',"
        " '{}', '{}', '[]', '<m@x.test>', 10, false)",
        message_id,
        tenant,
    )
    return message_id


async def _message_content_row(conn: asyncpg.Connection, tenant: uuid.UUID) -> None:
    message_id = await _message_row(conn, tenant)
    await conn.execute(
        "INSERT INTO message_contents (message_id, tenant_id, raw) VALUES ($1, $2, 'x')",
        message_id,
        tenant,
    )


async def _delivery_row(conn: asyncpg.Connection, tenant: uuid.UUID) -> None:
    message_id = await _message_row(conn, tenant)
    await conn.execute(
        "INSERT INTO deliveries (id, tenant_id, message_id, recipient, domain, kind, status,"
        " next_attempt_at) VALUES ($1, $2, $3, 'b@y.test', 'y.test', 'to', 'queued', now())",
        uuid.uuid4(),
        tenant,
        message_id,
    )


async def _event_row(conn: asyncpg.Connection, tenant: uuid.UUID) -> None:
    await conn.execute(
        "INSERT INTO events (id, tenant_id, type, data) VALUES ($1, $2, 'email.sent', '{}')",
        uuid.uuid4(),
        tenant,
    )


async def _idempotency_row(conn: asyncpg.Connection, tenant: uuid.UUID) -> None:
    await conn.execute(
        "INSERT INTO idempotency_keys (tenant_id, key, request_hash, response, expires_at)"
        " VALUES ($1, $2, 'h', '{}', now())",
        tenant,
        uuid.uuid4().hex,
    )


async def _captured_row(conn: asyncpg.Connection, tenant: uuid.UUID) -> None:
    await conn.execute(
        "INSERT INTO captured_messages (id, tenant_id, message_id, mail_from, recipients, raw)"
        " VALUES ($1, $2, $3, 'a@x.test', '{b@y.test}', 'x')",
        uuid.uuid4(),
        tenant,
        uuid.uuid4(),
    )


async def _domain_row(conn: asyncpg.Connection, tenant: uuid.UUID) -> uuid.UUID:
    domain_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO domains (id, tenant_id, name, status, return_path, open_tracking,"
        " click_tracking, tls, record_statuses) VALUES ($1, $2, $3, 'pending', 'send', false,"
        " false, 'opportunistic', '{}')",
        domain_id,
        tenant,
        f"{domain_id.hex[:10]}.test",
    )
    return domain_id


async def _dkim_key_row(conn: asyncpg.Connection, tenant: uuid.UUID) -> None:
    domain_id = await _domain_row(conn, tenant)
    await conn.execute(
        "INSERT INTO dkim_keys (id, tenant_id, domain_id, selector, algorithm, private_key,"
        " public_record, state) VALUES ($1, $2, $3, 's1', 'rsa-sha256', 'x', 'v=DKIM1',"
        " 'published')",
        uuid.uuid4(),
        tenant,
        domain_id,
    )


async def _webhook_endpoint_row(conn: asyncpg.Connection, tenant: uuid.UUID) -> uuid.UUID:
    endpoint_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO webhook_endpoints (id, tenant_id, url, events, status, secret)"
        " VALUES ($1, $2, 'https://hooks.example/x', '{email.sent}', 'enabled', 'x')",
        endpoint_id,
        tenant,
    )
    return endpoint_id


async def _webhook_delivery_row(conn: asyncpg.Connection, tenant: uuid.UUID) -> uuid.UUID:
    endpoint_id = await _webhook_endpoint_row(conn, tenant)
    event_id, delivery_id = uuid.uuid4(), uuid.uuid4()
    await conn.execute(
        "INSERT INTO events (id, tenant_id, type, data) VALUES ($1, $2, 'domain.created', '{}')",
        event_id,
        tenant,
    )
    await conn.execute(
        "INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_id, status,"
        " next_attempt_at) VALUES ($1, $2, $3, $4, 'pending', now())",
        delivery_id,
        tenant,
        endpoint_id,
        event_id,
    )
    return delivery_id


async def _webhook_attempt_row(conn: asyncpg.Connection, tenant: uuid.UUID) -> None:
    delivery_id = await _webhook_delivery_row(conn, tenant)
    await conn.execute(
        "INSERT INTO webhook_attempts (id, tenant_id, endpoint_id, delivery_id, event_type,"
        " attempt, response, duration_ms, created_at)"
        " SELECT $1, tenant_id, endpoint_id, id, 'domain.created', 1, '', 3, now()"
        " FROM webhook_deliveries WHERE id = $2",
        uuid.uuid4(),
        delivery_id,
    )


async def _hold_row(conn: asyncpg.Connection, tenant: uuid.UUID) -> None:
    await conn.execute(
        "INSERT INTO holds (id, tenant_id, kind, value, reason, origin)"
        " VALUES ($1, $2, 'domain', 'x.test', 'r', 'tenant')",
        uuid.uuid4(),
        tenant,
    )


async def _tracked_message_row(conn: asyncpg.Connection, tenant: uuid.UUID) -> None:
    message_id = await _message_row(conn, tenant)
    await conn.execute(
        "INSERT INTO tracked_messages (message_id, tenant_id, open_tracking, click_tracking,"
        " unsubscribe, links) VALUES ($1, $2, true, true, false, '{https://x.test/}')",
        message_id,
        tenant,
    )


async def _suppression_row(conn: asyncpg.Connection, tenant: uuid.UUID) -> None:
    await conn.execute(
        "INSERT INTO suppressions (id, tenant_id, email, reason, created_at, updated_at)"
        " VALUES ($1, $2, 'b@y.test', 'manual', now(), now())",
        uuid.uuid4(),
        tenant,
    )


async def _warmup_row(conn: asyncpg.Connection, tenant: uuid.UUID) -> None:
    await conn.execute(
        "INSERT INTO warmups (tenant_id, domain, started_on, counted_on)"
        " VALUES ($1, 'w.test', current_date, current_date)",
        tenant,
    )


async def _ip_pool_assignment_row(conn: asyncpg.Connection, tenant: uuid.UUID) -> None:
    await conn.execute(
        "INSERT INTO ip_pool_assignments (tenant_id, stream, pool) VALUES ($1, 'bulk', 'p')",
        tenant,
    )


# One row factory per tenant table. A new tenant table without an entry fails the meta-test,
# so it cannot ship without being attacked here.
TENANT_ROW_FACTORIES: dict[str, RowFactory] = {
    "api_keys": _api_key_row,
    "captured_messages": _captured_row,
    "deliveries": _delivery_row,
    "dkim_keys": _dkim_key_row,
    "domains": _domain_row,
    "events": _event_row,
    "holds": _hold_row,
    "idempotency_keys": _idempotency_row,
    "ip_pool_assignments": _ip_pool_assignment_row,
    "message_contents": _message_content_row,
    "messages": _message_row,
    "warmups": _warmup_row,
    "suppressions": _suppression_row,
    "tracked_messages": _tracked_message_row,
    "webhook_attempts": _webhook_attempt_row,
    "webhook_deliveries": _webhook_delivery_row,
    "webhook_endpoints": _webhook_endpoint_row,
}


async def _as(conn: asyncpg.Connection, role: str, tenant: uuid.UUID | None) -> None:
    await conn.execute(f"SET LOCAL ROLE {role}")
    await conn.execute(
        "SELECT set_config('app.tenant_id', $1, true)", str(tenant) if tenant else ""
    )


async def _two_orgs(conn: asyncpg.Connection) -> tuple[uuid.UUID, uuid.UUID]:
    await _as(conn, SYSTEM_ROLE, None)
    ids = (uuid.uuid4(), uuid.uuid4())
    for org_id in ids:
        await conn.execute(
            "INSERT INTO organizations (id, slug, name, status) VALUES ($1, $2, 'o', 'active')",
            org_id,
            f"rls-{org_id.hex[:16]}",
        )
    return ids


async def _with_sqlalchemy(
    runtime: Runtime, check: Callable[[AsyncConnection], Awaitable[list[str]]]
) -> list[str]:
    engine = create_async_engine(runtime.urls.owner)
    try:
        async with engine.connect() as conn:
            return await check(conn)
    finally:
        await engine.dispose()


async def test_every_tenant_table_has_forced_rls_and_a_tenant_policy(runtime: Runtime) -> None:
    async def check(conn: AsyncConnection) -> list[str]:
        tables = await tenant_tables(conn)
        assert tables, "no tenant tables found: the enumeration is broken"
        problems = [p for t in tables for p in await rls_violations(conn, t, app_role=APP_ROLE)]
        problems += await rls_violations(
            conn, "organizations", app_role=APP_ROLE, tenant_column="id"
        )
        missing = sorted(set(tables) - set(TENANT_ROW_FACTORIES))
        problems += [f"{t}: no row factory in TENANT_ROW_FACTORIES" for t in missing]
        return problems

    assert await _with_sqlalchemy(runtime, check) == []


async def test_app_role_is_neither_superuser_nor_bypassrls_nor_owner(
    owner_conn: asyncpg.Connection,
) -> None:
    role = await owner_conn.fetchrow(
        "SELECT rolsuper, rolbypassrls, rolcreaterole FROM pg_roles WHERE rolname = $1", APP_ROLE
    )
    assert role is not None
    assert (role["rolsuper"], role["rolbypassrls"], role["rolcreaterole"]) == (False, False, False)
    owned = await owner_conn.fetchval(
        "SELECT count(*) FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles "
        "WHERE rolname = $1)",
        APP_ROLE,
    )
    assert owned == 0


@pytest.mark.parametrize("table", sorted(TENANT_ROW_FACTORIES))
async def test_tenant_cannot_touch_another_tenants_rows(
    owner_conn: asyncpg.Connection, table: str
) -> None:
    conn = owner_conn
    a, b = await _two_orgs(conn)
    await TENANT_ROW_FACTORIES[table](conn, a)
    await TENANT_ROW_FACTORIES[table](conn, b)
    total = await conn.fetchval(f"SELECT count(*) FROM {table}")  # system role: sees all
    assert total >= 2

    # No tenant set: nothing visible, nothing writable.
    await _as(conn, APP_ROLE, None)
    assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0
    assert await conn.execute(f"UPDATE {table} SET tenant_id = tenant_id") == "UPDATE 0"
    assert await conn.execute(f"DELETE FROM {table}") == "DELETE 0"

    # Tenant A: sees only its own row; B's rows can be neither changed nor deleted.
    await _as(conn, APP_ROLE, a)
    seen = await conn.fetch(f"SELECT DISTINCT tenant_id FROM {table}")
    assert [r["tenant_id"] for r in seen] == [a]
    assert await conn.fetchval(f"SELECT count(*) FROM {table} WHERE tenant_id = $1", b) == 0
    assert (
        await conn.execute(f"UPDATE {table} SET tenant_id = tenant_id WHERE tenant_id = $1", b)
        == "UPDATE 0"
    )
    assert await conn.execute(f"DELETE FROM {table} WHERE tenant_id = $1", b) == "DELETE 0"

    # ...nor can A write a row into B, or move its own row to B.
    own = await conn.fetchval(f"SELECT to_jsonb(t) FROM {table} t LIMIT 1")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with conn.transaction():
            await conn.execute(
                f"INSERT INTO {table} OVERRIDING SYSTEM VALUE"
                f" SELECT * FROM jsonb_populate_record(NULL::{table}, "
                "$1::jsonb || jsonb_build_object('tenant_id', $2::text, 'id', $3::text))",
                own,
                str(b),
                str(uuid.uuid4()),
            )
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with conn.transaction():
            await conn.execute(f"UPDATE {table} SET tenant_id = $1", b)

    # Back as the system role: B's row is untouched.
    await _as(conn, SYSTEM_ROLE, None)
    assert await conn.fetchval(f"SELECT count(*) FROM {table} WHERE tenant_id = $1", b) == 1


async def test_app_role_sees_only_its_own_organization(owner_conn: asyncpg.Connection) -> None:
    a, _ = await _two_orgs(owner_conn)
    await _as(owner_conn, APP_ROLE, a)
    assert [r["id"] for r in await owner_conn.fetch("SELECT id FROM organizations")] == [a]
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with owner_conn.transaction():
            await owner_conn.execute("UPDATE organizations SET name = 'x' WHERE id = $1", a)
    await _as(owner_conn, APP_ROLE, None)
    assert await owner_conn.fetchval("SELECT count(*) FROM organizations") == 0


async def test_meta_check_catches_a_table_without_force_or_policy(runtime: Runtime) -> None:
    """The meta-test must fail for a new tenant table that skips the recipe: show it on a
    throwaway table, step by step, in a transaction that is rolled back."""

    async def check(conn: AsyncConnection) -> list[str]:
        from sqlalchemy import text

        seen: list[str] = []
        await conn.execute(text("CREATE TABLE rls_probe (id uuid PRIMARY KEY, tenant_id uuid)"))
        assert "rls_probe" in await tenant_tables(conn)
        seen += await rls_violations(conn, "rls_probe", app_role=APP_ROLE)
        await conn.execute(text("ALTER TABLE rls_probe ENABLE ROW LEVEL SECURITY"))
        seen += await rls_violations(conn, "rls_probe", app_role=APP_ROLE)
        await conn.execute(text("ALTER TABLE rls_probe FORCE ROW LEVEL SECURITY"))
        seen += await rls_violations(conn, "rls_probe", app_role=APP_ROLE)
        await conn.execute(
            text(f"CREATE POLICY leaky ON rls_probe TO {APP_ROLE} USING (true) WITH CHECK (true)")
        )
        seen += await rls_violations(conn, "rls_probe", app_role=APP_ROLE)
        await conn.execute(text("DROP POLICY leaky ON rls_probe"))
        await conn.execute(text(CURRENT_TENANT_FN))
        for stmt in tenant_table_sql("rls_probe", app_role=APP_ROLE, system_role=SYSTEM_ROLE)[2:]:
            await conn.execute(text(stmt))
        sound = await rls_violations(conn, "rls_probe", app_role=APP_ROLE)
        await conn.rollback()
        assert sound == []
        return seen

    seen = await _with_sqlalchemy(runtime, check)
    assert "rls_probe: row level security is not enabled" in seen
    assert "rls_probe: row level security is not forced (FORCE)" in seen
    assert f"rls_probe: no tenant_isolation policy for {APP_ROLE} on tenant_id" in seen
    assert f"rls_probe: a policy lets {APP_ROLE} (or PUBLIC) see other tenants" in seen


@pytest.mark.parametrize("table", ["deliveries", "message_contents"])
async def test_a_row_cannot_belong_to_another_tenant_than_its_message(
    owner_conn: asyncpg.Connection, table: str
) -> None:
    # Even where row-level security does not apply (the system role plants rows across
    # tenants), the key to the message is (tenant, id): B cannot own a row of A's message.
    a, b = await _two_orgs(owner_conn)
    message_id = await _message_row(owner_conn, a)
    row = {
        "deliveries": "INSERT INTO deliveries (id, tenant_id, message_id, recipient, domain,"
        " kind, status, next_attempt_at) VALUES (gen_random_uuid(), $1, $2, 'b@y.test',"
        " 'y.test', 'to', 'queued', now())",
        "message_contents": "INSERT INTO message_contents (tenant_id, message_id, raw)"
        " VALUES ($1, $2, 'x')",
    }[table]
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        async with owner_conn.transaction():
            await owner_conn.execute(row, b, message_id)
    await owner_conn.execute(row, a, message_id)  # its own tenant's: accepted
