"""postyard up | api | migrate: the long-running roles and migrations."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

import typer
import uvicorn
import uvloop

from postyard import __version__
from postyard.app import create_app
from postyard.cli.context import JsonOption, emit, load_settings
from postyard.core.clock import SystemClock
from postyard.core.http import AppServices
from postyard.core.logging import configure_logging
from postyard.core.serving import ServerWithoutSignals, bind_tcp
from postyard.migrations.runner import migrate as run_migrations
from postyard.runtime import Runtime, connect, prepare, require_current_schema
from postyard.settings import Settings

log = logging.getLogger(__name__)


def _cli_name() -> str:
    venv_bin = Path(sys.prefix) / "bin" / "postyard"
    try:
        return str(venv_bin.relative_to(Path.cwd()))
    except ValueError:
        return "postyard"


def _banner(runtime: Runtime, host: str, port: int) -> str:
    base = runtime.settings.http.public_url or f"http://{host}:{port}"
    db = (
        f"embedded PostgreSQL in {runtime.embedded.pgdata}"
        if runtime.embedded
        else "PostgreSQL at POSTYARD_DATABASE_URL"
    )
    cli = _cli_name()
    return "\n".join(
        [
            f"Postyard {__version__} is up.",
            f"  API:       {base}/v1",
            f"  API docs:  {base}/v1/docs",
            f"  Health:    {base}/readyz",
            f"  Database:  {db}",
            "Create an organization and an API key:",
            f"  {cli} orgs create acme --json",
            f"  {cli} keys create --org acme --name dev --json",
            "Stop with Ctrl-C.",
        ]
    )


async def _serve(settings: Settings, *, run_migrations_first: bool) -> None:
    sock = bind_tcp(settings.http.host, settings.http.port)
    runtime = await prepare(settings)
    if run_migrations_first:
        head = await run_migrations(runtime.urls.owner, runtime.roles)
    else:
        head = await require_current_schema(runtime)
    db = connect(runtime, name="api")
    services = AppServices(db=db, clock=SystemClock(), schema_head=head)
    app = create_app(services, max_body_bytes=settings.http.max_body_bytes)
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="off", server_header=False
    )
    server = ServerWithoutSignals(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    host, port = sock.getsockname()[:2]
    typer.echo(_banner(runtime, settings.http.host, port), err=False)
    try:
        await server.serve(sockets=[sock])
    finally:
        await db.dispose()
        log.info("stopped", extra={"host": host, "port": port})


def up() -> None:
    """Run the platform: migrate, then serve every role (embedded PostgreSQL if no URL)."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format.value)
    uvloop.run(_serve(settings, run_migrations_first=True))


def api() -> None:
    """Run the HTTP API role only (the schema must be current)."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format.value)
    uvloop.run(_serve(settings, run_migrations_first=False))


def migrate(as_json: bool = JsonOption) -> None:
    """Create the database roles and bring the schema to this release (idempotent)."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format.value)

    async def run() -> str:
        runtime = await prepare(settings)
        return await run_migrations(runtime.urls.owner, runtime.roles)

    head = asyncio.run(run())
    emit(as_json, {"revision": head}, f"Database schema is at revision {head}.")
