"""Opening one SMTP session: connect, greeting, EHLO, STARTTLS per policy, AUTH.

Every failure is a ``HostFailure`` value naming the peer, e.g. "connection refused by
mx1.example[192.0.2.1]:25"; the caller decides whether to try another address or host.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from enum import StrEnum

import aiosmtplib

from postyard.delivery.outcome import SmtpReply
from postyard.delivery.pool import PooledSession


class TlsPolicy(StrEnum):
    """How a destination must be protected."""

    REQUIRED = "required"
    """Verified TLS (STARTTLS or implicit) or no delivery: deferred, nothing sent."""
    OPPORTUNISTIC = "opportunistic"
    """STARTTLS when offered, without certificate checks (RFC 3207 practice for MX)."""
    NONE = "none"
    """Never start TLS."""


@dataclass(frozen=True, slots=True)
class Route:
    """How to reach one destination host; ``key`` identifies its sessions in the pool.

    ``host`` is the name TLS is checked against and details show. With ``resolve_with_dns``
    its addresses come from the transport's resolver (MX hosts); otherwise the operating
    system resolves it when connecting (relays).
    """

    key: tuple[str | int | bool | None, ...]
    host: str
    port: int
    tls: TlsPolicy
    implicit_tls: bool
    tls_context: ssl.SSLContext
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    resolve_with_dns: bool = False
    source: SourceAddress | None = None
    """The local address to connect from and the EHLO name that goes with it (IP pools)."""


@dataclass(frozen=True, slots=True)
class SourceAddress:
    """One outgoing IP address of an IP pool and the name it greets with (its PTR name)."""

    address: str
    ehlo_name: str


@dataclass(frozen=True, slots=True)
class HostFailure:
    """A host could not take the message now; ``reply`` is its SMTP reply, if it sent one."""

    detail: str
    reply: SmtpReply | None = None


async def open_session(
    route: Route,
    address: str,
    *,
    helo_name: str,
    connect_timeout: float,
    command_timeout: float,
) -> PooledSession | HostFailure:
    """Connect to ``address`` (an IP, or for relays a name the OS resolves) for ``route``.

    Returns a session ready for MAIL FROM: greeted, with TLS where the policy asks for it
    and the server offers it (or always, for REQUIRED), and authenticated when the route has
    credentials. Never raises for network or protocol failures; on failure the connection
    is closed.
    """
    shown = f"{route.host}[{address}]" if address != route.host else route.host
    label = f"{shown}:{route.port}"
    source = route.source
    smtp = aiosmtplib.SMTP(
        hostname=address,
        port=route.port,
        local_hostname=source.ehlo_name if source else helo_name,
        source_address=(source.address, 0) if source else None,
        timeout=command_timeout,
        use_tls=route.implicit_tls,
        start_tls=False,  # STARTTLS is decided below, by policy
        tls_context=route.tls_context,
    )
    try:
        await smtp.connect(timeout=connect_timeout)
    except aiosmtplib.SMTPConnectResponseError as exc:
        # RFC 5321 §3.1: a 554 (or any non-220) greeting means "no service here".
        reply = SmtpReply.parse(exc.code, exc.message)
        smtp.close()
        return HostFailure(f"{label} greeted with {reply}", reply)
    except aiosmtplib.SMTPConnectTimeoutError:
        smtp.close()
        return HostFailure(f"timed out connecting to {label}")
    except (aiosmtplib.SMTPException, OSError) as exc:
        smtp.close()
        return HostFailure(_connect_error(label, exc))
    try:
        failure = await _negotiate(smtp, route, label)
    except BaseException:
        smtp.close()
        raise
    if failure is not None:
        await _quit_quietly(smtp, command_timeout)
        return failure
    return PooledSession(smtp=smtp, label=label)


async def _negotiate(smtp: aiosmtplib.SMTP, route: Route, label: str) -> HostFailure | None:
    failure = await _hello(smtp, label)
    if failure is not None:
        return failure
    if not route.implicit_tls and route.tls is not TlsPolicy.NONE:
        if smtp.supports_extension("starttls"):
            try:
                await smtp.starttls(server_hostname=route.host, tls_context=route.tls_context)
            except aiosmtplib.SMTPResponseException as exc:
                reply = SmtpReply.parse(exc.code, exc.message)
                return HostFailure(f"{label} refused STARTTLS: {reply}", reply)
            except (aiosmtplib.SMTPException, OSError) as exc:
                return HostFailure(f"TLS with {label} failed: {exc}")
            # RFC 3207 §4.2: forget what the server said before TLS and ask again.
            failure = await _hello(smtp, label)
            if failure is not None:
                return failure
        elif route.tls is TlsPolicy.REQUIRED:
            return HostFailure(
                f"{label} does not offer STARTTLS and the TLS policy requires it; nothing sent"
            )
    if route.username is None:
        return None
    if not smtp.supports_extension("auth"):
        return HostFailure(f"{label} does not offer AUTH; credentials were not used")
    try:
        await smtp.login(route.username, route.password or "")
    except aiosmtplib.SMTPResponseException as exc:
        reply = SmtpReply.parse(exc.code, exc.message)
        return HostFailure(f"{label} refused authentication as {route.username}: {reply}", reply)
    except (aiosmtplib.SMTPException, OSError) as exc:
        return HostFailure(f"authentication with {label} failed: {exc}")
    return None


async def _hello(smtp: aiosmtplib.SMTP, label: str) -> HostFailure | None:
    try:
        await smtp.ehlo()
    except aiosmtplib.SMTPHeloError as exc:
        if exc.code < 500 or not smtp.is_connected:
            reply = SmtpReply.parse(exc.code, exc.message)
            return HostFailure(f"{label} refused EHLO: {reply}", reply)
    except (aiosmtplib.SMTPException, OSError) as exc:
        return HostFailure(f"connection to {label} lost at EHLO: {exc}")
    else:
        return None
    try:
        # RFC 5321 §3.2: a server without ESMTP answers EHLO with 5yz; fall back to HELO.
        await smtp.helo()
    except aiosmtplib.SMTPResponseException as exc:
        reply = SmtpReply.parse(exc.code, exc.message)
        return HostFailure(f"{label} refused HELO: {reply}", reply)
    except (aiosmtplib.SMTPException, OSError) as exc:
        return HostFailure(f"connection to {label} lost at HELO: {exc}")
    return None


def _connect_error(label: str, exc: Exception) -> str:
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    if isinstance(cause, ConnectionRefusedError):
        return f"connection refused by {label}"
    if isinstance(cause, ssl.SSLError):
        return f"TLS with {label} failed: {cause}"
    if isinstance(cause, OSError) and cause.strerror:
        return f"cannot connect to {label}: {cause.strerror}"
    return f"cannot connect to {label}: {exc}"


async def _quit_quietly(smtp: aiosmtplib.SMTP, command_timeout: float) -> None:
    try:
        if smtp.is_connected:
            await smtp.quit(timeout=command_timeout)
    except (aiosmtplib.SMTPException, OSError):
        pass  # the connection is being dropped either way
    finally:
        smtp.close()
