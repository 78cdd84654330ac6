"""Composition root of the MX role: the inbound listener for bounces, complaints and mailto
unsubscribes at the return-path domains (the submission server's protocol, without AUTH)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from postyard.core.clock import Clock
from postyard.core.db import Database
from postyard.core.secrets import derive
from postyard.core.serving import bind_tcp
from postyard.domains import senders
from postyard.inbound.handler import MxHandler, ReturnPathDomains
from postyard.inbound.intake import Intake, IntakeConfig
from postyard.settings import MxSettings, Settings
from postyard.smtp.server import ListenerConfig, SubmissionLimits, SubmissionServer
from postyard.smtp.tls import role_context

SHUTDOWN_GRACE_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class MxRole:
    host: str
    port: int
    """The bound port (the setting may be 0)."""


def intake_config(settings: Settings, secret: bytes) -> IntakeConfig:
    """The keys reports are checked with: the worker's VERP key and the tracking key that
    signs mailto unsubscribe tokens (both derived from the root secret)."""
    return IntakeConfig(
        verp_key=derive(secret, "verp").encode(),
        unsubscribe_key=derive(secret, "tracking-tokens").encode(),
        unsubscribe_max_age=timedelta(days=settings.mx.unsubscribe_max_age_days),
    )


def _limits(mx: MxSettings) -> SubmissionLimits:
    return SubmissionLimits(
        max_message_bytes=mx.max_message_bytes,
        max_recipients=mx.max_recipients,
        max_connections_per_ip=mx.max_connections_per_ip,
        idle_timeout=mx.idle_timeout,
        command_timeout=mx.command_timeout,
        max_messages_per_connection=mx.max_messages_per_connection,
    )


@contextlib.asynccontextmanager
async def mx_role(
    settings: Settings,
    db: Database,
    clock: Clock,
    *,
    data_dir: Path,
    secret: bytes,
    reuse_port: bool = False,
) -> AsyncIterator[MxRole]:
    """Serve the inbound MX in the running loop on ``mx.host:mx.port`` (STARTTLS offered
    with the SMTP role's certificate, no AUTH). On exit the listener stops, reports being
    recorded get their reply, other connections 421. Raises ConfigurationError (port in
    use, unreadable certificate)."""
    mx = settings.mx
    aiosmtpd_log = logging.getLogger("mail.log")
    if aiosmtpd_log.level == logging.NOTSET:
        aiosmtpd_log.setLevel(logging.WARNING)
    hostname = mx.public_host or settings.smtp.hostname
    if hostname is None:
        hostname = await asyncio.to_thread(socket.getfqdn)

    async def is_return_path_domain(domain: str) -> bool:
        async with db.system_tx(reason="mx: is this a return-path domain") as session:
            return bool(await senders.return_path_owners_unscoped(session, domain))

    handler = MxHandler(
        Intake(db, clock, intake_config(settings, secret)),
        ReturnPathDomains(is_return_path_domain, clock),
    )
    server = SubmissionServer(
        handler,
        None,
        ListenerConfig(
            hostname=hostname,
            limits=_limits(mx),
            tls_context=role_context(settings.smtp, data_dir, hostname, now=clock.now()),
            allow_auth_without_tls_on_loopback=False,
        ),
    )
    try:
        port = await server.listen(
            bind_tcp(mx.host, mx.port, reuse_port=reuse_port), implicit_tls=False
        )
        yield MxRole(host=mx.host, port=port)
    finally:
        await server.aclose(grace=SHUTDOWN_GRACE_SECONDS)
