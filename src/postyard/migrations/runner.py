"""Runs migrations as the owner role: provisions the app and system roles, then Alembic.

Concurrent runs (two processes starting at once) serialise on an advisory lock; running it
again on a current schema changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from postyard.core.errors import ConfigurationError

_MIGRATION_LOCK = 0x706F7374  # "post": one advisory lock id for every migration run
_HERE = Path(__file__).parent


@dataclass(frozen=True, slots=True)
class RoleSpec:
    app_role: str
    system_role: str
    app_password: str
    system_password: str
    manage: bool


def _config(connection: Connection | None = None, roles: RoleSpec | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    if connection is not None:
        config.attributes["connection"] = connection
    if roles is not None:
        config.attributes["app_role"] = roles.app_role
        config.attributes["system_role"] = roles.system_role
    return config


def schema_head() -> str:
    """The revision this release's code expects."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


async def _role_exists(conn: AsyncConnection, role: str) -> bool:
    found = await conn.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})
    return found is not None


async def _ensure_role(conn: AsyncConnection, role: str, password: str) -> None:
    # Utility statements take no bind parameters: let the server quote via format().
    verb = "ALTER" if await _role_exists(conn, role) else "CREATE"
    stmt = await conn.scalar(
        text(
            "SELECT format('%s ROLE %I WITH LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB "
            "NOCREATEROLE PASSWORD %L', CAST(:verb AS text), CAST(:role AS text), "
            "CAST(:password AS text))"
        ),
        {"verb": verb, "role": role, "password": password},
    )
    await conn.execute(text(str(stmt)))


async def _grant_database_access(conn: AsyncConnection, role: str) -> None:
    for template in (
        "SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), "
        "CAST(:role AS text))",
        "SELECT format('GRANT USAGE ON SCHEMA public TO %I', CAST(:role AS text))",
    ):
        stmt = await conn.scalar(text(template), {"role": role})
        await conn.execute(text(str(stmt)))


async def migrate(owner_url: str, roles: RoleSpec) -> str:
    """Bring the schema to head; returns the revision. Raises ConfigurationError."""
    engine = create_async_engine(owner_url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
            await conn.commit()
            try:
                for role, password in (
                    (roles.app_role, roles.app_password),
                    (roles.system_role, roles.system_password),
                ):
                    if roles.manage:
                        await _ensure_role(conn, role, password)
                    elif not await _role_exists(conn, role):
                        msg = (
                            f"database role {role!r} does not exist "
                            "(POSTYARD_DB__MANAGE_ROLES=false: create it first)"
                        )
                        raise ConfigurationError(msg)
                    await _grant_database_access(conn, role)
                await conn.commit()
                await conn.run_sync(lambda sync: command.upgrade(_config(sync, roles), "head"))
                await conn.commit()
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
                await conn.commit()
    except DBAPIError as exc:
        msg = f"migration failed: {str(exc.orig).strip().splitlines()[0]}"
        raise ConfigurationError(msg) from exc
    finally:
        await engine.dispose()
    return schema_head()


async def current_revision(owner_url: str) -> str | None:
    """The schema revision of the database, or None when it was never migrated."""
    engine = create_async_engine(owner_url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            exists = await conn.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
            if not exists:
                return None
            revision: str | None = await conn.scalar(
                text("SELECT version_num FROM alembic_version")
            )
            return revision
    finally:
        await engine.dispose()
