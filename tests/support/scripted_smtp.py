"""SMTP servers on loopback that the delivery client's tests script by hand (strict
pipelining, chunking, slow replies): the listening, the greeting and EHLO are here, each
server's ``session`` does the rest. aiosmtpd cannot be made to misbehave this precisely."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Self

from postyard.delivery.mx import make_resolver
from postyard.delivery.transport import Relay, SmtpTransport, TlsPolicy, opportunistic_tls_context


class ScriptedSmtpServer:
    NAME = b"scripted.test"
    EXTENSIONS: tuple[bytes, ...] = (b"PIPELINING",)

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(b"220 %s ESMTP\r\n" % self.NAME)
        await reader.readline()  # EHLO
        lines = [self.NAME, *self.EXTENSIONS]
        writer.write(b"".join(b"250-%s\r\n" % line for line in lines[:-1]))
        writer.write(b"250 %s\r\n" % lines[-1])
        try:
            await self.session(reader, writer)
        finally:
            writer.close()

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


@contextlib.asynccontextmanager
async def loopback_transport(
    *,
    command_timeout: float = 10.0,
    chunking: bool = True,
    idle_timeout: float = 30.0,
    rset_timeout: float = 20.0,
    max_connections: int = 5,
    max_messages: int = 100,
) -> AsyncIterator[SmtpTransport]:
    """The worker's SMTP client as the tests against these servers use it."""
    smtp = SmtpTransport(
        ssl_context=opportunistic_tls_context(),
        opportunistic_context=opportunistic_tls_context(),
        resolver=make_resolver(["127.0.0.1"], timeout=1.0, lifetime=1.0),
        helo_name="postyard.test",
        connect_timeout=10.0,
        command_timeout=command_timeout,
        chunking=chunking,
        idle_timeout=idle_timeout,
        rset_timeout=rset_timeout,
        max_connections_per_destination=max_connections,
        max_messages_per_connection=max_messages,
    )
    try:
        yield smtp
    finally:
        await smtp.aclose()


def relay(port: int) -> Relay:
    """A loopback relay without TLS."""
    return Relay.from_url(f"smtp://127.0.0.1:{port}", tls=TlsPolicy.NONE)
