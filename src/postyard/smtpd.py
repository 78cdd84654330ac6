"""Composition root of the SMTP role: certificate, authenticator, handler and listeners
(submission with STARTTLS, and implicit TLS when configured)."""

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
from postyard.core.notify import Waker
from postyard.core.serving import bind_tcp
from postyard.settings import Settings, SmtpSettings
from postyard.smtp.auth import ApiKeyAuthenticator, FailureThrottle
from postyard.smtp.handler import SubmissionHandler
from postyard.smtp.server import ListenerConfig, SubmissionLimits, SubmissionServer
from postyard.smtp.tls import role_context
from postyard.tracking.types import TrackingConfig

# On exit, connections get this long to finish a message being committed and leave.
SHUTDOWN_GRACE_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class SmtpRole:
    host: str
    port: int
    """The submission port (STARTTLS); the bound one when the setting is 0."""
    implicit_tls_port: int | None


def _limits(smtp: SmtpSettings) -> SubmissionLimits:
    return SubmissionLimits(
        max_message_bytes=smtp.max_message_bytes,
        max_recipients=smtp.max_recipients,
        max_connections_per_ip=smtp.max_connections_per_ip,
        idle_timeout=smtp.idle_timeout,
        command_timeout=smtp.command_timeout,
        max_messages_per_connection=smtp.max_messages_per_connection,
    )


@contextlib.asynccontextmanager
async def smtp_role(
    settings: Settings,
    db: Database,
    clock: Clock,
    *,
    data_dir: Path,
    reuse_port: bool = False,
    first: bool = False,
    waker: Waker | None = None,
    tracking: TrackingConfig | None = None,
) -> AsyncIterator[SmtpRole]:
    """Serve SMTP submission in the running loop on ``smtp.host:smtp.port``, and implicit
    TLS on ``smtp.implicit_tls_port`` when set; ``reuse_port`` lets several processes
    share the ports (SO_REUSEPORT), each with its own per-address counters; ``first``: the
    ports must be free (see ``bind_tcp``), for the process that others will join.

    Without configured certificates, a self-signed pair is generated in ``data_dir`` on
    first start. On exit the listeners stop, messages being committed get their reply,
    every other connection gets 421 4.3.2 and is closed. Raises ConfigurationError (port
    in use, unreadable certificate, unwritable data dir).
    """
    smtp = settings.smtp
    aiosmtpd_log = logging.getLogger("mail.log")
    if aiosmtpd_log.level == logging.NOTSET:
        # aiosmtpd logs every command line (addresses included) at INFO; keep its warnings.
        aiosmtpd_log.setLevel(logging.WARNING)
    hostname = smtp.hostname
    if hostname is None:
        hostname = await asyncio.to_thread(socket.getfqdn)
    throttle = FailureThrottle(
        max_failures=smtp.auth_failures_before_lockout,
        lockout=timedelta(seconds=smtp.auth_lockout_seconds),
        clock=clock,
    )
    handler = SubmissionHandler(
        db,
        clock,
        require_verified_domain=settings.requires_verified_domain,
        waker=waker,
        tracking=tracking,
        group_commit_window=smtp.group_commit_window,
        group_commit_max_messages=smtp.group_commit_max_messages,
    )
    server = SubmissionServer(
        handler,
        ApiKeyAuthenticator(db, clock, throttle),
        ListenerConfig(
            hostname=hostname,
            limits=_limits(smtp),
            tls_context=role_context(smtp, data_dir, hostname, now=clock.now()),
            allow_auth_without_tls_on_loopback=smtp.allow_auth_without_tls_on_loopback,
        ),
    )
    try:
        port = await server.listen(
            bind_tcp(smtp.host, smtp.port, reuse_port=reuse_port, first=first),
            implicit_tls=False,
        )
        implicit_port = None
        if smtp.implicit_tls_port is not None:
            implicit_port = await server.listen(
                bind_tcp(smtp.host, smtp.implicit_tls_port, reuse_port=reuse_port, first=first),
                implicit_tls=True,
            )
        yield SmtpRole(host=smtp.host, port=port, implicit_tls_port=implicit_port)
    finally:
        await server.aclose(grace=SHUTDOWN_GRACE_SECONDS)
        await handler.aclose()
