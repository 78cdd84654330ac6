"""The HTTP role of the serving commands: its services from the settings, the app under
uvicorn on a bound socket, and the banner `postyard up` prints."""

from __future__ import annotations

import asyncio
import socket
import sys
from datetime import timedelta
from pathlib import Path

import uvicorn

from postyard import __version__
from postyard.app import create_app
from postyard.core.clock import Clock
from postyard.core.crypto import derive_kek
from postyard.core.db import Database
from postyard.core.http import AppServices
from postyard.core.notify import Waker
from postyard.core.serving import ServerWithoutSignals
from postyard.delivery.mx import make_resolver
from postyard.domains.policy import dns_policy
from postyard.domains.routes import DomainDeps
from postyard.runtime import Runtime, tracking_config
from postyard.settings import Settings
from postyard.webhooks.routes import WebhookDeps
from postyard.webhooks.ssrf import AddressPolicy
from postyard.worker import warmup_policy


def app_services(
    settings: Settings, db: Database, clock: Clock, schema_head: str, waker: Waker
) -> AppServices:
    metrics = settings.http.metrics_token
    return AppServices(
        db=db,
        clock=clock,
        schema_head=schema_head,
        rate_limit_per_second=settings.http.rate_limit_per_second,
        require_verified_domain=settings.requires_verified_domain,
        waker=waker,
        group_commit_window=settings.http.group_commit_window,
        group_commit_max_messages=settings.http.group_commit_max_messages,
        metrics_token=metrics.get_secret_value() if metrics else None,
    )


def serve_http(
    services: AppServices, runtime: Runtime, sock: socket.socket, stop: asyncio.Event
) -> list[asyncio.Task[None]]:
    app = create_app(
        services,
        max_body_bytes=runtime.settings.http.max_body_bytes,
        domain_deps=domain_deps(runtime.settings, runtime.secret),
        webhook_deps=webhook_deps(runtime.settings, runtime.secret),
        tracking=tracking_config(runtime.settings, runtime.secret),
        warmup_policy=warmup_policy(runtime.settings),
    )
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="off", server_header=False
    )
    server = ServerWithoutSignals(config)
    return [
        asyncio.create_task(server.serve(sockets=[sock])),
        asyncio.create_task(_stop_server_on(stop, server)),
    ]


async def _stop_server_on(stop: asyncio.Event, server: uvicorn.Server) -> None:
    await stop.wait()
    server.should_exit = True


def domain_deps(settings: Settings, secret: bytes) -> DomainDeps:
    return DomainDeps(
        policy=dns_policy(settings),
        resolver=make_resolver(settings.dns.nameservers, cache=False),
        kek=derive_kek(secret),
        default_return_path=settings.sending.return_path_subdomain,
    )


def webhook_deps(settings: Settings, secret: bytes) -> WebhookDeps:
    return WebhookDeps(
        policy=AddressPolicy(settings.webhooks.allowed_networks),
        kek=derive_kek(secret),
        rotation_overlap=timedelta(hours=settings.webhooks.rotation_overlap_hours),
    )


def _cli_name() -> str:
    venv_bin = Path(sys.prefix) / "bin" / "postyard"
    try:
        return str(venv_bin.relative_to(Path.cwd()))
    except ValueError:
        return "postyard"


def banner(runtime: Runtime, host: str, port: int, extra: list[str]) -> str:
    base = runtime.settings.http.public_url or f"http://{host}:{port}"
    db = (
        f"embedded PostgreSQL in {runtime.embedded.pgdata}"
        if runtime.embedded
        else "PostgreSQL at POSTYARD_DATABASE_URL"
    )
    cli = _cli_name()
    metrics = runtime.settings.http.metrics_token is not None
    return "\n".join(
        [
            f"Postyard {__version__} is up.",
            f"  API:       {base}/v1",
            f"  API docs:  {base}/v1/docs",
            f"  Health:    {base}/readyz",
            *([f"  Metrics:   {base}/metrics (with the metrics token)"] if metrics else []),
            f"  Database:  {db}",
            *extra,
            "Create an organization and an API key:",
            f"  {cli} orgs create acme --json",
            f"  {cli} keys create --org acme --name dev --json",
            "Stop with Ctrl-C.",
        ]
    )
