"""postyard up | api | worker | smtp | mx | migrate: the long-running roles and migrations."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal

import typer
import uvloop

from postyard import __version__
from postyard.cli.children import (
    SHARE_OPTION,
    SUPERVISOR_OPTION,
    Children,
    Processes,
    start_servers,
    start_workers,
    stop_with_supervisor,
)
from postyard.cli.context import JsonOption, emit, load_settings
from postyard.cli.http_role import app_services, banner, serve_http
from postyard.core.clock import SystemClock
from postyard.core.db import Database
from postyard.core.logging import configure_logging
from postyard.core.notify import Waker
from postyard.core.serving import bind_tcp
from postyard.migrations.runner import migrate as run_migrations
from postyard.mxd import mx_role
from postyard.runtime import (
    Runtime,
    connect,
    fit_connections,
    prepare,
    require_current_schema,
    tracking_config,
)
from postyard.sending.service import WAKE_CHANNEL
from postyard.settings import Settings, auto_workers
from postyard.smtpd import SmtpRole, smtp_role
from postyard.worker import ONE_PROCESS, Share, worker_role

log = logging.getLogger(__name__)


async def _run_roles(
    settings: Settings,
    *,
    api: bool,
    worker: bool,
    smtp: bool,
    run_migrations_first: bool,
    mx: bool = False,
    reuse_port: bool = False,
    supervise: Processes | None = None,
    supervisor_pid: int | None = None,
    share: Share = ONE_PROCESS,
) -> None:
    """Run the chosen roles in this process until SIGINT/SIGTERM, then stop them cleanly;
    with ``supervise``, also start and stop the child processes (``cli/children.py``)."""
    sock = None
    if api:
        sock = bind_tcp(
            settings.http.host,
            settings.http.port,
            reuse_port=reuse_port or (supervise is not None and supervise.http > 1),
            first=supervise is not None,
        )
    runtime, head = await _runtime(settings, migrate=run_migrations_first)
    if supervise is not None:
        runtime = await fit_connections(runtime, processes=supervise.total)
    flags = (("api", api), ("worker", worker), ("smtp", smtp), ("mx", mx))
    roles = [name for name, on in flags if on]
    db = connect(runtime, name="+".join(roles))
    clock = SystemClock()
    stop = _stop_on_signals(supervisor_pid)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(db.dispose)
        # Workers claim at most once per claim interval while work keeps coming, so waking
        # them more often than that after commits only costs CPU on both sides.
        waker = Waker(
            db,
            WAKE_CHANNEL,
            min_interval=min(settings.delivery.claim_interval, settings.webhooks.claim_interval),
        )
        stack.push_async_callback(waker.aclose)
        children = Children(stop)
        stack.push_async_callback(children.aclose)
        tasks: list[asyncio.Task[None]] = []
        lines: list[str] = []
        if supervise is not None:
            # The workers get processes (and cores) of their own: in one event loop with the
            # API they are starved while requests keep coming.
            await start_workers(children, supervise)
        if worker:
            role = await stack.enter_async_context(
                worker_role(
                    settings,
                    db,
                    clock,
                    system_url=runtime.urls.system,
                    secret=runtime.secret,
                    name="worker",
                    share=share,
                )
            )
            tasks.append(asyncio.create_task(role.run(stop)))
            lines.append(_worker_line(settings, role.capture_port))
        if smtp:
            share_smtp = reuse_port or (supervise is not None and supervise.smtp > 1)
            smtp_running = await stack.enter_async_context(
                smtp_role(
                    settings,
                    db,
                    clock,
                    data_dir=runtime.data_dir,
                    reuse_port=share_smtp,
                    first=supervise is not None,
                    waker=waker,
                    tracking=tracking_config(settings, runtime.secret),
                )
            )
            lines.append(_smtp_line(smtp_running))
        if mx:
            lines.append(await _mx_line(stack, settings, db, clock, runtime, reuse_port=reuse_port))
        if supervise is not None and sock is not None and smtp:
            lines += await start_servers(children, supervise, sock, smtp_running)
        tasks += children.watchers
        if sock is not None:
            services = app_services(settings, db, clock, head, waker)
            tasks += serve_http(services, runtime, sock, stop)
            if supervisor_pid is None:
                typer.echo(banner(runtime, settings.http.host, sock.getsockname()[1], lines))
        else:
            # The first worker's line completes the banner of `up`.
            if supervisor_pid is None or (worker and share.index == 0):
                header = f"Postyard {__version__} ({', '.join(roles)}) is up."
                typer.echo("\n".join([header, *lines]))
            tasks.append(asyncio.create_task(_until(stop)))
        # What start-up built (modules, settings, engines, pools) lives as long as the
        # process: moved out of the collector's generations, a full collection no longer
        # walks it each time (it was several per cent of an SMTP process's CPU under load).
        gc.freeze()
        await _until_all_done(tasks, stop)
    log.info("stopped")


async def _mx_line(
    stack: contextlib.AsyncExitStack,
    settings: Settings,
    db: Database,
    clock: SystemClock,
    runtime: Runtime,
    *,
    reuse_port: bool,
) -> str:
    """Start the inbound MX listener in this process; its banner line."""
    mx_running = await stack.enter_async_context(
        mx_role(
            settings,
            db,
            clock,
            data_dir=runtime.data_dir,
            secret=runtime.secret,
            tracking=tracking_config(settings, runtime.secret),
            reuse_port=reuse_port,
        )
    )
    return (
        f"  MX:        {mx_running.host}:{mx_running.port} "
        "(bounces, complaints, mailto unsubscribes)"
    )


async def _runtime(settings: Settings, *, migrate: bool) -> tuple[Runtime, str]:
    """The runtime and the schema head (migrated first, or checked to be current)."""
    runtime = await prepare(settings)
    if migrate:
        return runtime, await run_migrations(runtime.urls.owner, runtime.roles)
    return runtime, await require_current_schema(runtime)


def _stop_on_signals(supervisor_pid: int | None) -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if supervisor_pid is not None:
        stop_with_supervisor(supervisor_pid, stop)
    return stop


async def _until_all_done(tasks: list[asyncio.Task[None]], stop: asyncio.Event) -> None:
    """Wait for the tasks; the first failure stops the others and is raised."""
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


async def _until(stop: asyncio.Event) -> None:
    await stop.wait()


def _smtp_line(role: SmtpRole) -> str:
    line = f"  SMTP:      {role.host}:{role.port} (STARTTLS; AUTH with any user and an API key)"
    if role.implicit_tls_port is not None:
        line += f", implicit TLS on {role.implicit_tls_port}"
    return line


def _worker_line(settings: Settings, capture_port: int | None) -> str:
    mode = settings.delivery.mode
    if capture_port is not None:
        return f"  Delivery:  capture (built-in SMTP server on 127.0.0.1:{capture_port})"
    return f"  Delivery:  {mode.value}"


SupervisorPid = typer.Option(None, SUPERVISOR_OPTION, hidden=True)
"""Set by ``postyard up`` on its children: stop when that process dies, print no banner."""
ShareOption = typer.Option("0/1", SHARE_OPTION, hidden=True)
"""Set by ``postyard up`` on its worker processes: INDEX/COUNT (``postyard.worker.Share``)."""


def up() -> None:
    """Run the platform: migrate, then serve every role (embedded PostgreSQL if no URL)."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format.value)
    processes = Processes(
        http=auto_workers(settings.http.workers),
        smtp=auto_workers(settings.smtp.workers),
        workers=auto_workers(settings.delivery.workers),
    )
    uvloop.run(
        _run_roles(
            settings,
            api=True,
            worker=False,
            smtp=True,
            mx=True,
            run_migrations_first=True,
            supervise=processes,
        )
    )


def api(supervisor_pid: int | None = SupervisorPid) -> None:
    """Run the HTTP API role only (the schema must be current). Several processes may run it
    on the same port (SO_REUSEPORT) to use every core."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format.value)
    uvloop.run(
        _run_roles(
            settings,
            api=True,
            worker=False,
            smtp=False,
            run_migrations_first=False,
            reuse_port=True,
            supervisor_pid=supervisor_pid,
        )
    )


def worker(supervisor_pid: int | None = SupervisorPid, share: str = ShareOption) -> None:
    """Run the worker role only, in this one process: mail delivery and webhooks (the schema
    must be current)."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format.value)
    try:
        parsed = Share.parse(share)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=SHARE_OPTION) from exc
    if settings.delivery.nice:
        os.nice(settings.delivery.nice)  # lowering one's own priority needs no privilege
    uvloop.run(
        _run_roles(
            settings,
            api=False,
            worker=True,
            smtp=False,
            run_migrations_first=False,
            supervisor_pid=supervisor_pid,
            share=parsed,
        )
    )


def smtp(supervisor_pid: int | None = SupervisorPid) -> None:
    """Run the SMTP submission role only (the schema must be current). Several processes may
    run it on the same port (SO_REUSEPORT) to use every core."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format.value)
    uvloop.run(
        _run_roles(
            settings,
            api=False,
            worker=False,
            smtp=True,
            run_migrations_first=False,
            reuse_port=True,
            supervisor_pid=supervisor_pid,
        )
    )


def mx() -> None:
    """Run the inbound MX role only (the schema must be current): bounces, complaints and
    mailto unsubscribes at the return-path domains. Several processes may share the port."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format.value)
    uvloop.run(
        _run_roles(
            settings,
            api=False,
            worker=False,
            smtp=False,
            mx=True,
            run_migrations_first=False,
            reuse_port=True,
        )
    )


def migrate(as_json: bool = JsonOption) -> None:
    """Create the database roles and bring the schema to this release (idempotent)."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format.value)

    async def run() -> str:
        runtime = await prepare(settings)
        return await run_migrations(runtime.urls.owner, runtime.roles)

    head = asyncio.run(run())
    emit(as_json, {"revision": head}, f"Database schema is at revision {head}.")
