"""SMTP servers on loopback that the delivery client's tests script by hand (strict
pipelining, chunking, slow replies): the listening, the greeting and EHLO are here, each
server's ``session`` does the rest. aiosmtpd cannot be made to misbehave this precisely."""

from __future__ import annotations

import asyncio
from typing import Self


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
