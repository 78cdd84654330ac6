"""What the connections of one SMTP listener share: limits, TLS, the handler, the
authenticator (none for the inbound MX), the per-address connection counts and the
listening servers. The submission role and the MX role both serve through it."""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from postyard.smtp.auth import ApiKeyAuthenticator
from postyard.smtp.protocol import SubmissionSMTP


@dataclass(frozen=True, slots=True)
class SubmissionLimits:
    max_message_bytes: int
    max_recipients: int
    max_connections_per_ip: int
    idle_timeout: float
    command_timeout: float
    max_messages_per_connection: int


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    hostname: str
    limits: SubmissionLimits
    tls_context: ssl.SSLContext
    """Offered by STARTTLS on the submission port, and spoken from the first byte on the
    implicit-TLS port."""
    allow_auth_without_tls_on_loopback: bool


class SubmissionServer:
    """What every connection of one role shares: the handler, the authenticator, the open
    connections per client address, and the listening servers."""

    def __init__(
        self, handler: Any, authenticator: ApiKeyAuthenticator | None, config: ListenerConfig
    ) -> None:
        """``authenticator`` None: a listener without AUTH (the inbound MX), where any
        client may send MAIL and the handler decides which recipients exist."""
        self.handler = handler
        self.authenticator = authenticator
        self.config = config
        self._per_address: collections.Counter[str] = collections.Counter()
        self._open: set[SubmissionSMTP] = set()
        self._all_closed = asyncio.Event()
        self._all_closed.set()
        self._servers: list[asyncio.Server] = []

    def protocol_factory(self, *, implicit_tls: bool) -> Callable[[], SubmissionSMTP]:
        def create() -> SubmissionSMTP:
            return SubmissionSMTP(self, implicit_tls=implicit_tls, loop=asyncio.get_running_loop())

        return create

    async def listen(self, sock: socket.socket, *, implicit_tls: bool) -> int:
        """Serve on a bound socket (taking ownership of it); returns its port."""
        try:
            server = await asyncio.get_running_loop().create_server(
                self.protocol_factory(implicit_tls=implicit_tls),
                sock=sock,
                ssl=self.config.tls_context if implicit_tls else None,
            )
        except BaseException:
            sock.close()
            raise
        self._servers.append(server)
        return int(sock.getsockname()[1])

    def connection_opened(self, protocol: SubmissionSMTP, address: str) -> bool:
        """Count a new connection; False (and not counted) when ``address`` is at its cap."""
        if self._per_address[address] >= self.config.limits.max_connections_per_ip:
            return False
        self._per_address[address] += 1
        self._open.add(protocol)
        self._all_closed.clear()
        return True

    def connection_closed(self, protocol: SubmissionSMTP, address: str) -> None:
        self._open.discard(protocol)
        self._per_address[address] -= 1
        if self._per_address[address] <= 0:
            del self._per_address[address]
        if not self._open:
            self._all_closed.set()

    async def aclose(self, *, grace: float) -> None:
        """Stop listening, then close every connection: messages being committed get their
        reply first, the others a 421 4.3.2. After ``grace`` seconds, abort what is left."""
        for server in self._servers:
            server.close()
        for protocol in list(self._open):
            protocol.request_close()
        try:
            async with asyncio.timeout(grace):
                await self._all_closed.wait()
        except TimeoutError:
            for protocol in list(self._open):
                protocol.abort()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
