"""Composition root of the worker role: transport, deliverer, capture server, delivery
worker, webhook sender and dispatcher.

Several worker processes may run side by side (``postyard up`` starts
POSTYARD_DELIVERY__WORKERS of them). Claims and leases keep them apart; warm-up allowances,
rate windows and shaping throttles are counted in the database and so hold across them. What
is counted per process is divided by ``Share``: the webhook per-endpoint cap, the connections
per relay or MX host and the shaping policies (connections and messages per minute per site).
Each process has its own capture server (capture mode), which stores what it receives in the
database, where ``GET /v1/emails/{id}/content`` finds it; and one process at a time re-checks
due domains (an advisory lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta

from sqlalchemy import text

from postyard.core.clock import Clock
from postyard.core.crypto import derive_kek
from postyard.core.db import Database
from postyard.core.notify import listening
from postyard.core.secrets import derive
from postyard.delivery.capture import start_capture_server
from postyard.delivery.identity import IdentityCache
from postyard.delivery.ippools import PoolConfig
from postyard.delivery.mx import make_resolver
from postyard.delivery.retry import RetryPolicy
from postyard.delivery.routing import DirectDeliverer, RelayDeliverer
from postyard.delivery.session import SourceAddress, TlsPolicy
from postyard.delivery.shaping import DEFAULT_POLICIES, Adaptive, SitePolicy, SiteShaper
from postyard.delivery.transport import Relay, SmtpTransport
from postyard.delivery.warmup import WarmupPolicy
from postyard.delivery.worker import Deliverer, DeliveryWorker, WorkerConfig
from postyard.domains.policy import dns_policy
from postyard.domains.verification import verify_due_domains
from postyard.sending.retention import content_pruner
from postyard.sending.service import WAKE_CHANNEL
from postyard.settings import DeliveryMode, Settings
from postyard.webhooks.dispatcher import DispatcherConfig, WebhookDispatcher
from postyard.webhooks.sender import WebhookSender
from postyard.webhooks.ssrf import AddressPolicy

# One worker process at a time re-checks due domains: the same domain checked twice at once
# would be recorded (and announced) twice.
DOMAIN_CHECKS_LOCK = text("SELECT pg_try_advisory_xact_lock(7050316512003181001)")


@dataclass(frozen=True, slots=True)
class Share:
    """This process's part of the per-process limits: process ``index`` of ``count``."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, value: str) -> Share:
        """``"INDEX/COUNT"``, as ``postyard up`` passes it; raises ValueError."""
        index, _, count = value.partition("/")
        share = cls(int(index), int(count))
        if not 0 <= share.index < share.count:
            msg = f"not a share: {value!r}"
            raise ValueError(msg)
        return share

    def part(self, limit: int) -> int:
        """This process's part of ``limit``: the parts add up to ``limit`` (each at least 1,
        so a limit smaller than the process count is exceeded: each process needs one)."""
        base, rest = divmod(limit, self.count)
        return max(1, base + (1 if self.index < rest else 0))


ONE_PROCESS = Share()
"""The share of a worker that runs alone (``postyard worker``)."""


@dataclass(frozen=True, slots=True)
class WorkerRole:
    worker: DeliveryWorker
    webhooks: WebhookDispatcher
    capture_port: int | None

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver mail and webhooks until ``stop`` is set."""
        await asyncio.gather(self.worker.run(stop), self.webhooks.run(stop))


def warmup_policy(settings: Settings) -> WarmupPolicy:
    """The warm-up ramps and switches of the settings."""
    w = settings.warmup
    return WarmupPolicy(
        schedule=tuple(w.schedule),
        automatic=w.automatic,
        ip_schedule=tuple(w.ip_schedule),
        ips_automatic=w.ips_automatic,
    )


def _transport(settings: Settings, share: Share) -> SmtpTransport:
    delivery = settings.delivery
    connections = delivery.max_connections_per_destination
    if delivery.mode is not DeliveryMode.CAPTURE:  # every process has a capture server of its own
        connections = share.part(connections)
    return SmtpTransport(
        ssl_context=ssl.create_default_context(),
        opportunistic_context=_opportunistic_context(),
        resolver=make_resolver(settings.dns.nameservers),
        helo_name=delivery.helo_name or socket.getfqdn(),
        max_connections_per_destination=connections,
        max_messages_per_connection=delivery.max_messages_per_connection,
        mx_port=delivery.mx_port,
        chunking=delivery.chunking,
    )


def _pools(settings: Settings) -> PoolConfig | None:
    config = settings.ip_pools
    if not config.pools:
        return None
    return PoolConfig(
        pools={
            name: tuple(SourceAddress(a, config.addresses[a]) for a in members)
            for name, members in config.pools.items()
        },
        stream_pools=dict(config.stream_pools),
        default_pool=config.default_pool,
    )


def _shaper(settings: Settings, share: Share) -> SiteShaper | None:
    shaping = settings.shaping
    if not shaping.enabled:
        return None
    configured = {name: SitePolicy(**p.model_dump()) for name, p in shaping.policies.items()}
    policies = {
        name: replace(
            policy,
            max_connections=share.part(policy.max_connections),
            messages_per_minute=share.part(policy.messages_per_minute),
        )
        for name, policy in {**DEFAULT_POLICIES, **configured}.items()
    }
    return SiteShaper(
        policies,
        Adaptive(
            backoff=timedelta(seconds=shaping.backoff_seconds),
            max_backoff=timedelta(seconds=shaping.max_backoff_seconds),
            recovery_interval=timedelta(seconds=shaping.recovery_seconds),
        ),
    )


def _retention_jobs(
    db: Database, clock: Clock, settings: Settings
) -> list[Callable[[], Awaitable[int]]]:
    days = settings.retention.content_days
    return [content_pruner(db, clock, days)] if days > 0 else []


def _opportunistic_context() -> ssl.SSLContext:
    # RFC 7435 opportunistic security: encrypt when offered, without authenticating the
    # peer (MX certificates rarely match; MTA-STS/DANE are how to require more).
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@contextlib.asynccontextmanager
async def worker_role(
    settings: Settings,
    db: Database,
    clock: Clock,
    *,
    system_url: str,
    secret: bytes,
    name: str,
    share: Share = ONE_PROCESS,
) -> AsyncIterator[WorkerRole]:
    """Build the worker for the configured delivery mode, with its capture server (capture
    mode) and its LISTEN connection; everything is closed on exit. ``share``: which of the
    worker processes this is (the per-process limits are divided among them)."""
    delivery = settings.delivery
    transport = _transport(settings, share)
    sender = WebhookSender(
        resolver=make_resolver(settings.dns.nameservers),
        policy=AddressPolicy(settings.webhooks.allowed_networks),
        max_connections_per_host=share.part(settings.webhooks.concurrency_per_endpoint),
    )
    verp_key = derive(secret, "verp").encode()
    capture: asyncio.Server | None = None
    try:
        deliverer: Deliverer
        if delivery.mode is DeliveryMode.CAPTURE:
            capture = await start_capture_server(db, verp_key=verp_key)
            port = capture.sockets[0].getsockname()[1]
            relay = Relay("127.0.0.1", port, TlsPolicy.NONE, False, None, None)
            deliverer = RelayDeliverer(transport, relay)
        elif delivery.mode is DeliveryMode.RELAY:
            assert delivery.relay_url is not None
            relay = Relay.from_url(
                delivery.relay_url.get_secret_value(), tls=TlsPolicy(delivery.relay_tls.value)
            )
            deliverer = RelayDeliverer(transport, relay)
        else:
            deliverer = DirectDeliverer(transport)
        config = WorkerConfig(
            owner=f"{name}:{socket.gethostname()}:{os.getpid()}",
            batch_size=delivery.batch_size,
            lanes=delivery.lanes,
            concurrency=delivery.concurrency,
            lease=timedelta(seconds=delivery.lease_seconds),
            # The processes of `up` share the interval: together they claim about once per
            # interval while mail trickles in, as one process would (each claim as big).
            claim_interval=delivery.claim_interval * share.count,
            # Look for expired leases often enough that a dead worker's rows wait at most
            # about a lease and a quarter.
            maintenance_interval=min(15.0, delivery.lease_seconds / 4),
            warmups=warmup_policy(settings),
            policy=RetryPolicy(
                delays=tuple(timedelta(seconds=s) for s in delivery.retry_delays),
                max_age=timedelta(hours=delivery.max_age_hours),
            ),
        )
        resolver = make_resolver(settings.dns.nameservers, cache=False)
        policy = dns_policy(settings)

        async def check_domains() -> int:
            async with db.system_tx(reason="domain verification: one worker at a time") as lock:
                if not await lock.scalar(DOMAIN_CHECKS_LOCK):
                    return 0
                return await verify_due_domains(db, resolver, policy=policy, now=clock.now())

        shaper = _shaper(settings, share) if delivery.mode is DeliveryMode.MX else None
        worker = DeliveryWorker(
            db,
            deliverer,
            config,
            clock,
            identities=IdentityCache(db, derive_kek(secret), clock),
            verp_key=verp_key,
            jobs=[check_domains, *_retention_jobs(db, clock, settings)],
            shaper=shaper,
            pools=_pools(settings),
        )
        webhooks = WebhookDispatcher(
            db,
            sender,
            DispatcherConfig(
                owner=config.owner,
                batch_size=settings.webhooks.batch_size,
                lanes=settings.webhooks.lanes,
                per_endpoint=share.part(settings.webhooks.concurrency_per_endpoint),
                lease=timedelta(seconds=settings.webhooks.lease_seconds),
                claim_interval=settings.webhooks.claim_interval * share.count,
                maintenance_interval=min(15.0, settings.webhooks.lease_seconds / 4),
            ),
            clock,
            kek=derive_kek(secret),
        )
        async with (
            listening(system_url, WAKE_CHANNEL, worker.wake),
            listening(system_url, WAKE_CHANNEL, webhooks.wake),
        ):
            yield WorkerRole(
                worker=worker,
                webhooks=webhooks,
                capture_port=capture.sockets[0].getsockname()[1] if capture else None,
            )
    finally:
        await sender.aclose()
        await transport.aclose()
        if capture is not None:
            capture.close()
            await capture.wait_closed()
