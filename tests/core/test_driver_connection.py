"""Hot-path statements on the session's own asyncpg connection: same transaction, same tenant,
never autocommit."""

from __future__ import annotations

import pytest

from postyard.core.db import Database, DriverStatement, TenantId, driver_connection
from tests.conftest import Tenant


def test_named_parameters_become_numbered_once_each() -> None:
    statement = DriverStatement.of("SELECT :a, CAST(:b AS int), :a, '10:30'::text, x::int")
    assert statement.sql == "SELECT $1, CAST($2 AS int), $1, '10:30'::text, x::int"
    assert statement.names == ("a", "b")
    assert statement.arguments({"b": 2, "a": 1, "unused": 3}) == [1, 2]


async def test_it_runs_in_the_tenant_transaction(db: Database, tenant: Tenant) -> None:
    tenant_id = TenantId(tenant.org.id)
    async with db.tenant_tx(tenant_id) as session:
        driver = await driver_connection(session)
        assert await driver.fetchval("SELECT current_setting('app.tenant_id')") == str(tenant_id)
        assert driver.is_in_transaction()
        # The api_keys row is visible through RLS only because the tenant is set.
        assert await driver.fetchval("SELECT count(*) FROM api_keys") == 1


@pytest.mark.parametrize("begin", [False, True])
async def test_it_refuses_a_connection_without_a_transaction(db: Database, begin: bool) -> None:
    async with db.system_tx(reason="test", single_statement=True) as session:
        with pytest.raises(RuntimeError, match="transaction"):
            await driver_connection(session, begin=begin)


async def test_begin_starts_the_sessions_transaction(db: Database, tenant: Tenant) -> None:
    """Before the session's first statement the server has no transaction; ``begin`` starts
    the session's own, so what the driver does is undone with it."""
    async with db.system_tx(reason="test") as session:
        with pytest.raises(RuntimeError, match="transaction"):
            await driver_connection(session)
        driver = await driver_connection(session, begin=True)
        assert driver.is_in_transaction()
        await driver.execute("UPDATE api_keys SET name = 'undone' WHERE id = $1", tenant.key.id)
        await session.rollback()
    async with db.system_conn(reason="test") as conn:
        name = await conn.fetchval("SELECT name FROM api_keys WHERE id = $1", tenant.key.id)
    assert name != "undone"


async def test_tenant_conn_sets_the_tenant_and_rls_applies(
    db: Database, tenant: Tenant, other_tenant: Tenant
) -> None:
    tenant_id = TenantId(tenant.org.id)
    async with db.tenant_conn(tenant_id) as conn:
        assert conn.is_in_transaction()
        assert await conn.fetchval("SELECT current_setting('app.tenant_id')") == str(tenant_id)
        ids = {row["id"] for row in await conn.fetch("SELECT id FROM api_keys")}
    assert ids == {tenant.key.id}  # the other tenant's key stays invisible
    assert other_tenant.key.id not in ids


async def test_tenant_conn_commits_on_exit_and_rolls_back_when_it_raises(
    db: Database, tenant: Tenant
) -> None:
    tenant_id = TenantId(tenant.org.id)
    rename = "UPDATE api_keys SET name = $1"
    async with db.tenant_conn(tenant_id) as conn:
        await conn.execute(rename, "kept")
    with pytest.raises(LookupError):
        async with db.tenant_conn(tenant_id) as conn:
            await conn.execute(rename, "undone")
            raise LookupError
    async with db.tenant_conn(tenant_id) as conn:
        # The tenant setting is transaction-local: nothing leaks into the next use.
        assert await conn.fetchval("SELECT name FROM api_keys") == "kept"
    async with db.system_conn(reason="test") as conn:
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SELECT current_setting('app.tenant_id', true)") in {None, ""}


async def test_tenant_conn_refuses_anything_but_a_uuid(db: Database) -> None:
    with pytest.raises(TypeError):
        async with db.tenant_conn(TenantId("x' OR true --")):  # type: ignore[arg-type]
            pass
