"""Database access: the only ways code gets a session.

- ``Database.tenant_tx(tenant_id)``: a transaction as the app role (row-level security on)
  with ``app.tenant_id`` set transaction-locally through a bound parameter. Without it no
  tenant row is visible.
- ``Database.system_tx(reason=...)``: a transaction as the system role, which may see every
  tenant. Only for work that cannot know the tenant first (API-key lookup, workers,
  operator commands); the reason is logged, and the name makes every use easy to find.
- ``Database.tenant_conn(tenant_id)`` / ``Database.system_conn(reason=...)``: the same two,
  as bare asyncpg connections (``core.driver_pools``) for the hottest paths only (accepting
  mail, authenticating a key), where SQLAlchemy's per-statement cost is most of the work.

Both commit when the block exits normally and roll back when it raises. Services never
open, commit or roll back: the adapter that calls them does, before answering.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, NewType, cast

import asyncpg
from sqlalchemy import MetaData, Table, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from postyard.core.driver_pools import DriverPools, connect_arguments, session_settings
from postyard.core.secrets import derive

log = logging.getLogger(__name__)

TenantId = NewType("TenantId", uuid.UUID)

_SET_TENANT = text("SELECT set_config('app.tenant_id', :tenant_id, true)")


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


def table_of(model: type[Base]) -> Table:
    """A model's Table, for Core statements on hot paths (no ORM unit of work)."""
    return cast(Table, model.__table__)


@dataclass(frozen=True, slots=True)
class DatabaseUrls:
    """Connection URLs of the three roles (owner: migrations; app: RLS; system: system_tx)."""

    owner: str
    app: str
    system: str


def role_password(secret: bytes, role: str) -> str:
    """The password Postyard gives a role it manages, derived from the root secret."""
    return derive(secret, f"postgres-role:{role}")


def role_urls(
    owner_url: str,
    *,
    app_role: str,
    system_role: str,
    app_password: str,
    system_password: str,
) -> DatabaseUrls:
    """URLs for the app and system roles on the owner's host and database."""
    base = make_url(owner_url).set(drivername="postgresql+asyncpg")
    return DatabaseUrls(
        owner=base.render_as_string(hide_password=False),
        app=base.set(username=app_role, password=app_password).render_as_string(
            hide_password=False
        ),
        system=base.set(username=system_role, password=system_password).render_as_string(
            hide_password=False
        ),
    )


async def asyncpg_connect(url: str) -> asyncpg.Connection:
    """A plain asyncpg connection for one of our URLs (a socket directory in ``?host=``), for
    what SQLAlchemy's pool is not for: LISTEN, COPY."""
    return await asyncpg.connect(**connect_arguments(url))


# SQLSTATE classes of errors that a statement's values cause (PostgreSQL's Appendix A):
# data exceptions (22), integrity constraint violations (23) and program limits such as an
# index row too large (54).
_DATA_ERROR_CLASSES = frozenset({"22", "23", "54"})


def caused_by_data(error: BaseException) -> bool:
    """True when PostgreSQL refused a statement for the values it was given (a value it
    cannot store, a constraint, a size limit): the same statement with other values may
    pass. False for everything else: the connection, the server, a timeout."""
    sqlstate = getattr(error, "sqlstate", None)
    return (
        isinstance(error, asyncpg.PostgresError)
        and isinstance(sqlstate, str)
        and sqlstate[:2] in _DATA_ERROR_CLASSES
    )


_NAMED_PARAMETER = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


@dataclass(frozen=True, slots=True)
class DriverStatement:
    """A statement written with ``:name`` parameters, rewritten once for asyncpg (``$n``)."""

    sql: str
    names: tuple[str, ...]

    @classmethod
    def of(cls, sql: str) -> DriverStatement:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match.group(1) not in names:
                names.append(match.group(1))
            return f"${names.index(match.group(1)) + 1}"

        return cls(_NAMED_PARAMETER.sub(number, sql), tuple(names))

    def arguments(self, params: dict[str, Any]) -> list[Any]:
        return [params[name] for name in self.names]


async def driver_connection(session: AsyncSession, *, begin: bool = False) -> asyncpg.Connection:
    """The asyncpg connection under ``session``'s transaction, for a hot-path statement run
    without SQLAlchemy's per-statement work (its async adapter costs about a millisecond of
    CPU per statement). Same connection, same transaction: the tenant setting and row-level
    security apply exactly as to the session's own statements. Raises RuntimeError unless a
    transaction is open on the server (``tenant_tx`` opens it before yielding), so nothing
    can run in autocommit by mistake.

    ``begin``: for a statement that may be the transaction's first. SQLAlchemy begins on the
    server only with its first statement, so one is run (a round trip) when none has been;
    a session in autocommit still raises."""
    conn = await session.connection()
    fairy = await conn.get_raw_connection()
    driver = cast(asyncpg.Connection, fairy.driver_connection)
    if begin and not driver.is_in_transaction():
        await session.execute(_FIRST_STATEMENT)
    if not driver.is_in_transaction():
        raise RuntimeError("driver_connection needs a transaction that has started")
    return driver


_FIRST_STATEMENT = text("SELECT 1")


def create_engine(url: str, *, pool_size: int, application_name: str) -> AsyncEngine:
    """A fixed pool of ``pool_size`` connections. No overflow: SQLAlchemy closes an overflow
    connection as soon as it is returned, so under a burst every extra request would pay a
    new PostgreSQL backend (a fork and a SCRAM exchange, milliseconds of CPU on both sides)
    and a connection storm; requests wait for a pooled connection instead (and get a 503
    after the pool timeout)."""
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=False,
        connect_args={"server_settings": session_settings(application_name)},
    )


class Database:
    """Engines of the app and system roles, and the two ways to open a transaction."""

    def __init__(
        self, app_engine: AsyncEngine, system_engine: AsyncEngine, drivers: DriverPools
    ) -> None:
        self.app_engine = app_engine
        self.system_engine = system_engine
        self.drivers = drivers
        self._app_sessions = async_sessionmaker(app_engine, expire_on_commit=False)
        self._system_sessions = async_sessionmaker(system_engine, expire_on_commit=False)

    @classmethod
    def connect(cls, urls: DatabaseUrls, *, pool_size: int, name: str) -> Database:
        return cls(
            create_engine(urls.app, pool_size=pool_size, application_name=f"postyard-{name}"),
            create_engine(
                urls.system, pool_size=pool_size, application_name=f"postyard-{name}-system"
            ),
            DriverPools(app_url=urls.app, system_url=urls.system, size=pool_size, name=name),
        )

    @asynccontextmanager
    async def tenant_tx(self, tenant_id: TenantId) -> AsyncIterator[AsyncSession]:
        """A transaction that sees only ``tenant_id``'s rows; commits on normal exit."""
        async with self._app_sessions() as session, session.begin():
            await session.execute(_SET_TENANT, {"tenant_id": str(tenant_id)})
            yield session

    @asynccontextmanager
    async def system_tx(
        self, *, reason: str, single_statement: bool = False
    ) -> AsyncIterator[AsyncSession]:
        """A cross-tenant transaction as the system role. Say why in ``reason``.

        ``single_statement``: no BEGIN/COMMIT around the work (autocommit), for one statement
        on a hot path, which is atomic on its own; saves two round trips. Use it for nothing
        that needs two statements to agree.
        """
        log.debug("system transaction", extra={"reason": reason})
        if not single_statement:
            async with self._system_sessions() as session, session.begin():
                yield session
            return
        async with self.system_engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            async with AsyncSession(bind=autocommit, expire_on_commit=False) as session:
                yield session

    def tenant_conn(self, tenant_id: TenantId) -> AbstractAsyncContextManager[asyncpg.Connection]:
        """``tenant_tx`` as a bare asyncpg connection (hot paths only): a transaction as the
        app role with the tenant set; commits on normal exit, rolls back when it raises."""
        return self.drivers.tenant(tenant_id)

    def system_conn(self, *, reason: str) -> AbstractAsyncContextManager[asyncpg.Connection]:
        """``system_tx(single_statement=True)`` as a bare asyncpg connection (hot paths
        only): autocommit, one statement at a time. Say why in ``reason``."""
        log.debug("system connection", extra={"reason": reason})
        return self.drivers.system()

    async def dispose(self) -> None:
        await self.drivers.close()
        await self.app_engine.dispose()
        await self.system_engine.dispose()
