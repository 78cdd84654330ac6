"""Plain asyncpg pools for the hottest paths (accepting mail, authenticating a key).

SQLAlchemy's session costs about a millisecond of CPU per statement on top of the driver
(the async adapter, the greenlet hop, result wrapping), and a send is several statements.
These pools hand out bare asyncpg connections, one pool per role, opened lazily: the app
role's sized like the engines' pools, the system role's a quarter of that (at least 2).
``Database.tenant_conn`` and ``Database.system_conn`` are the only ways to get one: the
tenant is set before the caller sees the connection, exactly as ``tenant_tx`` does, so
row-level security applies the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from sqlalchemy.engine import make_url

ACQUIRE_TIMEOUT_SECONDS = 30.0
"""Like the engines' pool timeout: past it the request fails as "database unavailable"."""


def session_settings(application_name: str) -> dict[str, str]:
    """Server settings of every connection Postyard opens to its database.

    ``random_page_cost`` is the planner's price of reading a page out of order: the default
    (4, four sequential reads) models spinning disks. Postyard's hot rows are in memory or
    on SSD, where the two cost about the same; at the default, a claim's 200 look-ups by
    key were priced above scanning a 20,000-row ``deliveries`` table, so every claim read
    the whole table until it grew several times larger. 1.1 is the usual value for SSDs.
    JIT compilation only pays for long analytic queries, which Postyard does not run.
    """
    return {"application_name": application_name, "jit": "off", "random_page_cost": "1.1"}


def connect_arguments(url: str) -> dict[str, Any]:
    """asyncpg's keyword arguments for one of our SQLAlchemy URLs (a socket directory may be
    given as ``?host=``)."""
    parsed = make_url(url)
    host = parsed.query.get("host", parsed.host)
    return {
        "user": parsed.username,
        "password": parsed.password,
        "host": host if isinstance(host, str) else None,
        "port": parsed.port,
        "database": parsed.database,
    }


async def _no_reset(_: asyncpg.Connection) -> None:
    """Connections come back with no transaction open and no session state (the tenant is a
    transaction-local setting), so asyncpg's reset query (a round trip per release) is not
    needed; a connection that may be dirty is terminated instead of released."""


def system_pool_size(size: int) -> int:
    """The system role's bare pool serves one short autocommit statement per request (the
    key look-up, a wake-up): a quarter of the app pool keeps up and spares connections."""
    return max(2, size // 4)


def _driver(proxy: PoolConnectionProxy) -> asyncpg.Connection:
    # The pool's proxy forwards every method to the connection it wraps; callers type
    # against the connection (``driver_connection`` gives them the same).
    return cast(asyncpg.Connection, proxy)


def set_tenant_sql(tenant_id: uuid.UUID) -> str:
    """BEGIN and the transaction-local tenant setting in one simple-protocol round trip. The
    value is a UUID's canonical text (hex digits and dashes), never client text."""
    if not isinstance(tenant_id, uuid.UUID):
        raise TypeError("the tenant must be a UUID")
    return f"BEGIN; SELECT set_config('app.tenant_id', '{tenant_id}', true)"


class DriverPools:
    """One lazily created asyncpg pool per role URL."""

    def __init__(self, *, app_url: str, system_url: str, size: int, name: str) -> None:
        self._urls = {"app": app_url, "system": system_url}
        self._size = size
        self._name = name
        self._pools: dict[str, asyncpg.Pool] = {}
        self._lock = asyncio.Lock()

    async def _pool(self, role: str) -> asyncpg.Pool:
        pool = self._pools.get(role)
        if pool is not None:
            return pool
        async with self._lock:
            pool = self._pools.get(role)
            if pool is None:
                pool = await asyncpg.create_pool(
                    **connect_arguments(self._urls[role]),
                    min_size=0,
                    max_size=self._size if role == "app" else system_pool_size(self._size),
                    reset=_no_reset,
                    server_settings=session_settings(f"postyard-{self._name}-{role}-driver"),
                )
                self._pools[role] = pool
        return pool

    @contextlib.asynccontextmanager
    async def tenant(self, tenant_id: uuid.UUID) -> AsyncIterator[asyncpg.Connection]:
        """A transaction as the app role with the tenant set; commits on normal exit."""
        pool = await self._pool("app")
        proxy = await pool.acquire(timeout=ACQUIRE_TIMEOUT_SECONDS)
        conn = _driver(proxy)
        clean = False
        try:
            await conn.execute(set_tenant_sql(tenant_id))
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(Exception):
                    await conn.execute("ROLLBACK")
                    clean = True
                raise
            await conn.execute("COMMIT")
            clean = True
        finally:
            await self._give_back(pool, proxy, clean=clean)

    @contextlib.asynccontextmanager
    async def system(self) -> AsyncIterator[asyncpg.Connection]:
        """An autocommit connection as the system role, for one statement at a time."""
        pool = await self._pool("system")
        proxy = await pool.acquire(timeout=ACQUIRE_TIMEOUT_SECONDS)
        clean = False
        try:
            yield _driver(proxy)
            clean = not proxy.is_in_transaction()
        finally:
            await self._give_back(pool, proxy, clean=clean)

    @staticmethod
    async def _give_back(pool: asyncpg.Pool, conn: PoolConnectionProxy, *, clean: bool) -> None:
        # A connection whose transaction state is unknown (a failed COMMIT/ROLLBACK, a
        # cancellation in between) is closed rather than handed to the next request.
        if not clean or conn.is_in_transaction():
            conn.terminate()
        await pool.release(conn)

    async def close(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.close()
