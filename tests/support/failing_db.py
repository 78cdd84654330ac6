"""Databases that fail on purpose for the group-commit tests: the real PostgreSQL behind
them, only the tenant transactions changed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import asyncpg

from postyard.core.db import Database, TenantId


class UnreachableTenants(Database):
    """Keys are looked up in the real database; tenant transactions go to ``broken``."""

    def __init__(self, broken: Database, real: Database) -> None:
        super().__init__(broken.app_engine, real.system_engine, real.drivers)
        self._broken = broken

    def tenant_conn(self, tenant_id: TenantId) -> AbstractAsyncContextManager[asyncpg.Connection]:
        return self._broken.tenant_conn(tenant_id)


class CommitFails(Database):
    """The real database, but each tenant transaction, its statements done, stops before
    COMMIT until the test lets it go on, and then loses its connection: the commit fails."""

    def __init__(self, real: Database) -> None:
        super().__init__(real.app_engine, real.system_engine, real.drivers)
        self.before_commit = asyncio.Event()
        self.go_on = asyncio.Event()

    def tenant_conn(self, tenant_id: TenantId) -> AbstractAsyncContextManager[asyncpg.Connection]:
        return self._failing(tenant_id)

    @asynccontextmanager
    async def _failing(self, tenant_id: TenantId) -> AsyncIterator[asyncpg.Connection]:
        async with self.drivers.tenant(tenant_id) as conn:
            yield conn
            self.before_commit.set()
            await self.go_on.wait()
            await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
