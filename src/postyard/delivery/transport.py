"""SMTP client delivery: to a configured relay (smarthost) or straight to a domain's MX hosts.

Built on aiosmtplib. Sessions are pooled per destination (see ``pool``). Every failure at
the remote end becomes a ``RecipientOutcome`` per recipient; nothing here raises for one.
aiosmtplib opens the sessions (greeting, EHLO, STARTTLS, AUTH); the transactions are
``transaction``'s, pipelined where the server offers it (RFC 2920).
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass, field, replace
from urllib.parse import unquote, urlsplit

import dns.asyncresolver

from postyard.delivery.mx import ResolutionFailure, resolve_destination, resolve_host_addresses
from postyard.delivery.outcome import OutcomeKind, RecipientOutcome, SmtpReply
from postyard.delivery.pool import ConnectionPool, PooledSession
from postyard.delivery.session import HostFailure, Route, SourceAddress, TlsPolicy, open_session
from postyard.delivery.sites import site_of_domain, site_of_mx
from postyard.delivery.transaction import (
    Envelope,
    StaleSession,
    continue_ride,
    run_transaction,
)

__all__ = ["Envelope", "Relay", "SmtpTransport", "TlsPolicy", "opportunistic_tls_context"]

_ROUTES_KEPT = 1024  # relay routes remembered per transport; forgotten all at once past it


@dataclass(frozen=True, slots=True)
class Relay:
    """A smarthost: all mail goes to ``host:port``, optionally authenticated.

    ``implicit_tls`` means TLS from the first byte (RFC 8314, port 465). Raises ValueError
    for a relay that contradicts itself (implicit TLS with policy NONE, password without
    username).
    """

    host: str
    port: int
    tls: TlsPolicy
    implicit_tls: bool
    username: str | None
    password: str | None = field(repr=False)

    def __post_init__(self) -> None:
        if self.implicit_tls and self.tls is TlsPolicy.NONE:
            raise ValueError("implicit TLS contradicts TLS policy NONE")
        if self.password is not None and self.username is None:
            raise ValueError("a relay password needs a username")
        if not self.host or not 0 < self.port < 65536:
            raise ValueError("a relay needs a host and a port in 1-65535")

    @classmethod
    def from_url(cls, url: str, *, tls: TlsPolicy = TlsPolicy.REQUIRED) -> Relay:
        """Parse ``smtp://[user[:password]@]host[:port]`` (port 587, STARTTLS per ``tls``)
        or ``smtps://...`` (port 465, implicit TLS). User and password are percent-decoded.

        Raises ValueError for another scheme, a missing host, a bad port, or a path, query
        or fragment (most likely a typo).
        """
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("smtp", "smtps"):
            raise ValueError(f"relay URL scheme must be smtp or smtps, not {scheme!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("relay URL must not have a path, query or fragment")
        if not parts.hostname:
            raise ValueError("relay URL has no host")
        implicit = scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=parts.port if parts.port is not None else (465 if implicit else 587),
            tls=tls,
            implicit_tls=implicit,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
        )


def opportunistic_tls_context() -> ssl.SSLContext:
    """A client context that encrypts without checking the certificate.

    For STARTTLS to MX hosts, where the alternative is plaintext: RFC 7435 (opportunistic
    security) and RFC 3207 practice. Authentication of MX hosts needs MTA-STS or DANE.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class SmtpTransport:
    """Delivers envelopes over pooled SMTP sessions. Create once at start-up; ``aclose`` at exit.

    ``ssl_context`` verifies certificates and is used where TLS is REQUIRED;
    ``opportunistic_context`` need not verify and is used for opportunistic STARTTLS.
    MX hosts are resolved with ``resolver``; relays with the operating system.
    ``chunking``: BDAT where the server offers CHUNKING and PIPELINING (``run_transaction``).
    ``rset_timeout``: how long a reused session may take to answer the RSET that begins its
    next transaction before it is given up for a new one (Postfix waits 20 s too).
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        opportunistic_context: ssl.SSLContext,
        resolver: dns.asyncresolver.Resolver,
        helo_name: str,
        connect_timeout: float = 30.0,
        command_timeout: float = 300.0,
        max_connections_per_destination: int = 5,
        max_messages_per_connection: int = 100,
        idle_timeout: float = 30.0,
        mx_port: int = 25,
        chunking: bool = True,
        rset_timeout: float = 20.0,
    ) -> None:
        # RFC 5321 §4.5.3.2 asks for minutes per command (5 for MAIL, RCPT and the greeting,
        # 10 after the final dot); one command timeout of 5 minutes is the usual compromise.
        self._ssl_context = ssl_context
        self._opportunistic_context = opportunistic_context
        self._resolver = resolver
        self._helo_name = helo_name
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._mx_port = mx_port
        self._chunking = chunking
        self._rset_timeout = rset_timeout
        self._pool = ConnectionPool(
            max_connections=max_connections_per_destination,
            max_messages=max_messages_per_connection,
            idle_timeout=idle_timeout,
            command_timeout=command_timeout,
        )
        # A Route per relay and source address, made once: building one (a digest, a frozen
        # dataclass) per message was a measurable share of the client's CPU.
        self._relay_routes: dict[tuple[Relay, SourceAddress | None], Route] = {}

    async def aclose(self) -> None:
        """Close every pooled session. Deliveries after this raise RuntimeError."""
        await self._pool.aclose()

    async def deliver_via_relay(
        self, relay: Relay, envelope: Envelope, *, source: SourceAddress | None = None
    ) -> list[RecipientOutcome]:
        """Hand ``envelope`` to ``relay`` in one transaction; one outcome per recipient, in order.

        A relay that cannot be reached, refuses TLS that the policy requires, rejects the
        credentials (an operator's mistake, not the recipients': DEFERRED so that mail
        waits for the fix) or answers 4xx before any recipient gives DEFERRED for all.
        Raises only RuntimeError after ``aclose``.
        """
        route = self._relay_routes.get((relay, source))
        if route is None:
            if len(self._relay_routes) >= _ROUTES_KEPT:
                self._relay_routes.clear()
            route = self._relay_routes[relay, source] = _from(self._relay_route(relay), source)
        result = await self._attempt(route, envelope)
        if isinstance(result, HostFailure):
            return _all(envelope, OutcomeKind.DEFERRED, result.detail, result.reply)
        return result

    def _relay_route(self, relay: Relay) -> Route:
        verified = relay.tls is TlsPolicy.REQUIRED
        return Route(
            key=(
                "relay",
                relay.host,
                relay.port,
                relay.implicit_tls,
                relay.tls,
                relay.username,
                # Tenants may share a relay host and even a user name (SendGrid's "apikey"):
                # a session authenticated with one password must never carry another's mail.
                _digest(relay.password),
            ),
            host=relay.host,
            port=relay.port,
            tls=relay.tls,
            implicit_tls=relay.implicit_tls,
            tls_context=self._ssl_context if verified else self._opportunistic_context,
            username=relay.username,
            password=relay.password,
        )

    async def deliver_direct(
        self,
        domain: str,
        envelope: Envelope,
        *,
        tls: TlsPolicy = TlsPolicy.OPPORTUNISTIC,
        messages_per_connection: int | None = None,
        source: SourceAddress | None = None,
    ) -> list[RecipientOutcome]:
        """Deliver ``envelope`` to the MX hosts of ``domain``; one outcome per recipient, in order.

        All recipients must be at ``domain`` (ValueError otherwise): one transaction carries
        them all. Hosts are tried in MX order; a host that cannot be reached or answers 4xx
        before MAIL FROM is accepted (RFC 5321 §5.1) passes the message to the next one.
        When every host fails this way all recipients are DEFERRED; DNS failures give the
        kind ``resolve_destination`` chose. Raises only ValueError and, after ``aclose``,
        RuntimeError.
        """
        wanted = domain.lower()
        if any(rcpt.rpartition("@")[2].lower() != wanted for rcpt in envelope.recipients):
            raise ValueError(f"every recipient must be at {domain}")
        destination = await resolve_destination(domain, self._resolver)
        if isinstance(destination, ResolutionFailure):
            return _all(envelope, destination.kind, destination.detail, None)
        context = self._ssl_context if tls is TlsPolicy.REQUIRED else self._opportunistic_context
        failures: list[HostFailure] = []
        for host in destination.hosts:
            route = Route(
                key=("mx", host, self._mx_port, tls),
                host=host,
                port=self._mx_port,
                tls=tls,
                implicit_tls=False,
                tls_context=context,
                resolve_with_dns=True,
            )
            result = await self._attempt(_from(route, source), envelope, messages_per_connection)
            if not isinstance(result, HostFailure):
                return result
            failures.append(result)
        replies = [failure.reply for failure in failures if failure.reply is not None]
        detail = "; ".join(failure.detail for failure in failures)
        return _all(envelope, OutcomeKind.DEFERRED, detail, replies[-1] if replies else None)

    async def site_of(self, domain: str) -> str:
        """The destination site of ``domain`` from its MX hosts (``delivery.sites``); a domain
        whose MX cannot be resolved now is named by what its name alone says."""
        destination = await resolve_destination(domain.lower(), self._resolver)
        if isinstance(destination, ResolutionFailure):
            return site_of_domain(domain)
        return site_of_mx(domain, destination.hosts)

    async def _attempt(
        self, route: Route, envelope: Envelope, max_messages: int | None = None
    ) -> list[RecipientOutcome] | HostFailure:
        pool = self._pool
        async with pool.lease(route.key, max_messages=max_messages, envelope=envelope) as lease:
            if lease.session is not None:
                if lease.riding:  # the envelope went in a ride: only its replies to read
                    result, lease.reusable = await continue_ride(lease, envelope)
                else:
                    result, lease.reusable = await run_transaction(
                        lease.session,
                        envelope,
                        reset=True,
                        chunking=self._chunking,
                        reset_timeout=self._rset_timeout,
                        lease=lease,
                    )
                if not isinstance(result, StaleSession):
                    return result
                lease.session.close()  # the server has not taken the message: again, anew
                lease.riding = 0
            opened = await self._open(route)
            if isinstance(opened, HostFailure):
                return opened
            lease.session = opened
            fresh, lease.reusable = await run_transaction(
                opened, envelope, chunking=self._chunking, lease=lease
            )
            return fresh

    async def _open(self, route: Route) -> PooledSession | HostFailure:
        # MX hosts resolve through our resolver (RFC 5321 §5.1: try each address); a relay is
        # an operator's name, left to the operating system (hosts file, container DNS).
        addresses = [route.host]
        if route.resolve_with_dns:
            addresses = await resolve_host_addresses(route.host, self._resolver)
            if not addresses:
                return HostFailure(f"no address found for {route.host}")
        failures: list[HostFailure] = []
        for address in addresses:
            opened = await open_session(
                route,
                address,
                helo_name=self._helo_name,
                connect_timeout=self._connect_timeout,
                command_timeout=self._command_timeout,
            )
            if isinstance(opened, PooledSession):
                return opened
            failures.append(opened)
        return HostFailure("; ".join(f.detail for f in failures), failures[-1].reply)


def _from(route: Route, source: SourceAddress | None) -> Route:
    """``route`` from a given local address: its own sessions in the pool."""
    if source is None:
        return route
    return replace(route, key=(*route.key, source.address), source=source)


def _digest(secret: str | None) -> str | None:
    return None if secret is None else hashlib.sha256(secret.encode()).hexdigest()


def _all(
    envelope: Envelope,
    kind: OutcomeKind,
    detail: str,
    reply: SmtpReply | None,
) -> list[RecipientOutcome]:
    return [RecipientOutcome(rcpt, kind, reply, detail) for rcpt in envelope.recipients]
