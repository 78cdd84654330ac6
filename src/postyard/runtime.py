"""Start-up shared by every entry point: data dir, secret, database location and roles."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import asyncpg

from postyard.core import connections
from postyard.core.db import Database, DatabaseUrls, asyncpg_connect, role_password, role_urls
from postyard.core.embedded import (
    DATABASE_NAME,
    EmbeddedServer,
    auto_conf,
    ensure_data_dir,
    restart_embedded,
    start_embedded,
)
from postyard.core.errors import ConfigurationError
from postyard.core.secrets import derive, load_or_create_secret
from postyard.migrations.runner import RoleSpec, current_revision, schema_head
from postyard.settings import Settings
from postyard.tracking.machine import MachineRules
from postyard.tracking.types import TrackingConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    data_dir: Path
    secret: bytes
    urls: DatabaseUrls
    roles: RoleSpec
    embedded: EmbeddedServer | None


async def _ensure_embedded_database(server: EmbeddedServer) -> None:
    conn = await asyncpg.connect(user="postgres", host=str(server.socket_dir), database="postgres")
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE_NAME)
        if not exists:
            # another process may create it first
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    finally:
        await conn.close()


async def prepare(settings: Settings) -> Runtime:
    """Resolve where the database is (starting the embedded one if no URL is set)."""
    data_dir = ensure_data_dir(settings.data_dir)
    secret = load_or_create_secret(
        data_dir, settings.secret_key.get_secret_value() if settings.secret_key else None
    )
    embedded = None
    if settings.database_url is None:
        embedded = await asyncio.to_thread(start_embedded, data_dir)
        await _ensure_embedded_database(embedded)
        owner_url = embedded.url()
    else:
        owner_url = settings.database_url.get_secret_value()
    db = settings.db
    roles = RoleSpec(
        app_role=db.app_role,
        system_role=db.system_role,
        app_password=(
            db.app_password.get_secret_value()
            if db.app_password
            else role_password(secret, db.app_role)
        ),
        system_password=(
            db.system_password.get_secret_value()
            if db.system_password
            else role_password(secret, db.system_role)
        ),
        manage=db.manage_roles,
    )
    urls = role_urls(
        owner_url,
        app_role=roles.app_role,
        system_role=roles.system_role,
        app_password=roles.app_password,
        system_password=roles.system_password,
    )
    return Runtime(
        settings=settings,
        data_dir=data_dir,
        secret=secret,
        urls=urls,
        roles=roles,
        embedded=embedded,
    )


async def require_current_schema(runtime: Runtime) -> str:
    """The schema head, after checking the database is migrated to it."""
    head = schema_head()
    try:
        current = await current_revision(runtime.urls.owner)
    except (OSError, asyncpg.PostgresError) as exc:
        msg = f"cannot reach PostgreSQL: {exc}"
        raise ConfigurationError(msg) from exc
    if current != head:
        msg = (
            f"the database schema is at {current or 'nothing'}, this release needs {head}: "
            "run `postyard migrate` (or `postyard up`, which migrates)"
        )
        raise ConfigurationError(msg)
    return head


async def _read_slots(conn: asyncpg.Connection) -> connections.Slots:
    rows = await conn.fetch(
        "SELECT name, setting FROM pg_settings WHERE name IN "
        "('max_connections', 'superuser_reserved_connections', 'reserved_connections')"
    )
    settings = {row["name"]: int(row["setting"]) for row in rows}
    return connections.Slots(
        max_connections=settings["max_connections"],
        reserved=settings["superuser_reserved_connections"]
        + settings.get("reserved_connections", 0),
    )


def _warn_short(runtime: Runtime, available: int, processes: int, needed: int) -> None:
    log.warning(
        "PostgreSQL leaves %d connections to Postyard, but its %d processes may open up to "
        "%d (POSTYARD_DB__POOL_SIZE=%d): raise max_connections or lower the pool size or the "
        "process counts, or requests may fail under load",
        available,
        processes,
        needed,
        runtime.settings.db.pool_size,
    )


async def fit_connections(runtime: Runtime, *, processes: int) -> Runtime:
    """Make room for the connections ``processes`` serving processes may open (see
    ``core/connections.py``). The embedded server gets a larger max_connections (ALTER
    SYSTEM, then a restart while this process is its only user; else at its next start), up
    to a cap; an external server is only checked. A shortfall left is logged as a warning
    naming the figures. Returns the runtime (with the restarted server's pid)."""
    needed = connections.budget(processes, runtime.settings.db.pool_size)
    conn = await asyncpg_connect(runtime.urls.owner)
    try:
        slots = await _read_slots(conn)
        if slots.available >= needed:
            return runtime
        target = connections.embedded_target(slots, needed) if runtime.embedded else None
        if runtime.embedded is None or target is None:
            _warn_short(runtime, slots.available, processes, needed)
            return runtime
        undo = await asyncio.to_thread(auto_conf(runtime.embedded.pgdata).read_bytes)
        await conn.execute(f"ALTER SYSTEM SET max_connections = {int(target)}")
    finally:
        await conn.close()
    raised = connections.Slots(max_connections=target, reserved=slots.reserved)
    restarted = await asyncio.to_thread(restart_embedded, runtime.embedded, undo=undo)
    if restarted is None:
        log.warning(
            "the embedded PostgreSQL keeps max_connections %d until its next start (another "
            "process uses it), then %d",
            slots.max_connections,
            target,
        )
        _warn_short(runtime, slots.available, processes, needed)
        return runtime
    if restarted.undone is not None:
        log.warning(
            "the embedded PostgreSQL did not start with max_connections %d, so it keeps %d: %s",
            target,
            slots.max_connections,
            restarted.undone,
        )
        _warn_short(runtime, slots.available, processes, needed)
        return dataclasses.replace(runtime, embedded=restarted.server)
    log.info("embedded postgresql max_connections raised", extra={"max_connections": target})
    if raised.available < needed:  # capped
        _warn_short(runtime, raised.available, processes, needed)
    return dataclasses.replace(runtime, embedded=restarted.server)


def connect(runtime: Runtime, *, name: str) -> Database:
    return Database.connect(runtime.urls, pool_size=runtime.settings.db.pool_size, name=name)


def tracking_config(settings: Settings, secret: bytes) -> TrackingConfig:
    """The tracking host's configuration: its own token key derived from the root secret."""
    tracking = settings.tracking
    defaults = MachineRules()
    rules = MachineRules(
        apple_proxy_networks=(
            defaults.apple_proxy_networks
            if tracking.apple_proxy_networks is None
            else tuple(str(n) for n in tracking.apple_proxy_networks)
        ),
        scanner_networks=(
            defaults.scanner_networks
            if tracking.scanner_networks is None
            else tuple(str(n) for n in tracking.scanner_networks)
        ),
        scanner_agents=(
            defaults.scanner_agents
            if tracking.scanner_agents is None
            else tuple(tracking.scanner_agents)
        ),
        min_delay_after_delivery=timedelta(seconds=tracking.min_seconds_after_delivery),
    )
    return TrackingConfig(
        key=derive(secret, "tracking-tokens").encode(),
        base_url=settings.tracking_base_url,
        rules=rules,
        image_proxy_opens_are_machine=tracking.image_proxy_opens_are_machine,
        unsubscribe_max_age=timedelta(days=tracking.unsubscribe_max_age_days),
    )
