"""An aiosmtpd server on loopback, in the running event loop, that plays a remote MTA.

It records every accepted message (envelope, raw bytes, whether TLS was active, the AUTH
login), counts connections (opened, open now, most open at once) and answers MAIL, RCPT and
DATA from per-command scripts: ``sink.script_rcpt("x@example.test", "451 4.3.0 later")``
makes the next RCPT to that address get a 451 and the following ones the default 250.

    async with SmtpSink() as sink:
        ...  # deliver to 127.0.0.1:sink.port
        [message] = await sink.wait_for_messages(1)
"""

from __future__ import annotations

import asyncio
import ssl
import warnings
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

WAIT_TIMEOUT = 10.0  # only a guard against a hung test; waits end as soon as mail arrives


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One message the sink accepted (DATA answered 2yz)."""

    mail_from: str
    recipients: tuple[str, ...]
    data: bytes
    mail_options: tuple[str, ...]
    helo: str | None
    tls: bool
    auth_login: str | None
    connection: int
    """Which connection carried it: 1 for the first the sink accepted, and so on."""
    peer: str = ""
    """The client's IP address as the sink saw it."""


class SmtpSink:
    """A scriptable SMTP server on ``host:port`` (by default 127.0.0.1 and a free port); use
    ``async with`` or start/stop.

    ``tls_context`` (a server context) enables STARTTLS, or TLS from the first byte with
    ``implicit_tls``. ``credentials`` enables AUTH PLAIN/LOGIN, offered without TLS too
    (loopback), and makes AUTH required before MAIL.
    """

    def __init__(
        self,
        *,
        hostname: str = "sink.test",
        host: str = "127.0.0.1",
        port: int = 0,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        credentials: tuple[str, str] | None = None,
        smtputf8: bool = False,
        pipelining: bool = True,
    ) -> None:
        self.hostname = hostname
        self.pipelining = pipelining
        self.host = host
        self.port = port
        self.messages: list[ReceivedMessage] = []
        self.connections_opened = 0
        self.max_open_connections = 0
        self.rsets = 0
        self.mail_commands = 0
        self._tls_context = tls_context
        self._implicit_tls = implicit_tls
        self._credentials = credentials
        self._smtputf8 = smtputf8
        self._open: set[_SinkSMTP] = set()
        self._mail_script: deque[str] = deque()
        self._data_script: deque[str] = deque()
        self._rset_script: deque[str] = deque()
        self._dark_rsets = 0
        self._rcpt_script: dict[str, deque[str]] = {}
        self._arrived = asyncio.Condition()
        self._hold_after: int | None = None
        self._release = asyncio.Event()
        self._no_connections = asyncio.Event()
        self._no_connections.set()
        self._server: asyncio.Server | None = None

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def script_mail(self, *replies: str) -> None:
        """Answer the next MAIL FROM commands (in any connection) with ``replies``, in order."""
        self._mail_script.extend(replies)

    def script_rcpt(self, address: str, *replies: str) -> None:
        """Answer the next RCPT TO commands for ``address`` with ``replies``, in order."""
        self._rcpt_script.setdefault(address.lower(), deque()).extend(replies)

    def hold_after(self, count: int) -> asyncio.Event:
        """From the ``count``-th message on, record each message but hold its DATA reply until
        the returned event is set: the client is stuck mid-transaction (crash tests)."""
        self._hold_after = count
        return self._release

    def script_rset(self, *replies: str) -> None:
        """Answer the next RSET commands (in any connection) with ``replies``, in order; a
        ``421`` reply then closes that connection, as a server timing out a session does."""
        self._rset_script.extend(replies)

    def go_dark_at_next_rset(self) -> None:
        """The next RSET (in any connection) gets no reply, and nothing after it on that
        connection does, though the connection stays open: a session whose flow a firewall or
        NAT forgot while it was parked."""
        self._dark_rsets += 1

    def script_data(self, *replies: str) -> None:
        """Answer the next DATA commands (after the final dot) with ``replies``, in order."""
        self._data_script.extend(replies)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._make_protocol,
            self.host,
            self.port,
            ssl=self._tls_context if self._implicit_tls else None,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        self.drop_connections()
        await self._server.wait_closed()
        self._server = None

    def drop_connections(self) -> None:
        """Close every open connection from the server side, as an idle timeout would."""
        for protocol in list(self._open):
            if protocol.transport is not None:
                protocol.transport.close()

    async def __aenter__(self) -> SmtpSink:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def wait_for_messages(
        self, count: int, timeout: float = WAIT_TIMEOUT
    ) -> list[ReceivedMessage]:
        """Wait until at least ``count`` messages arrived; return them all.

        Raises TimeoutError after ``timeout`` seconds, which only a broken test reaches.
        """
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.messages) >= count)
        return list(self.messages)

    async def wait_for_no_connections(self, timeout: float = WAIT_TIMEOUT) -> None:
        """Wait until no client is connected. Raises TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            await self._no_connections.wait()

    def _make_protocol(self) -> _SinkSMTP:
        self.connections_opened += 1
        with warnings.catch_warnings():
            # aiosmtpd warns (UserWarning) when AUTH is required without TLS; on loopback
            # in tests that is what we want.
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS", UserWarning)
            return _SinkSMTP(
                self,
                self.connections_opened,
                _Handler(self),
                hostname=self.hostname,
                tls_context=None if self._implicit_tls else self._tls_context,
                enable_SMTPUTF8=self._smtputf8,
                authenticator=self._authenticate if self._credentials else None,
                auth_required=self._credentials is not None,
                auth_require_tls=False,
                loop=asyncio.get_running_loop(),
            )

    def _authenticate(
        self, server: SMTP, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and self._credentials is not None:
            login, password = auth_data.login.decode(), auth_data.password.decode()
            if (login, password) == self._credentials:
                return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)

    def _connected(self, protocol: _SinkSMTP) -> None:
        self._open.add(protocol)
        self._no_connections.clear()
        self.max_open_connections = max(self.max_open_connections, len(self._open))

    def _disconnected(self, protocol: _SinkSMTP) -> None:
        self._open.discard(protocol)
        if not self._open:
            self._no_connections.set()

    async def _record(self, message: ReceivedMessage) -> None:
        async with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()


class _SinkSMTP(SMTP):
    def __init__(self, sink: SmtpSink, connection: int, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.sink = sink
        self.connection = connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Called again after STARTTLS (RFC 3207 resets the session); the set keeps one entry.
        self.sink._connected(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.sink._disconnected(self)
        super().connection_lost(error)


class _Handler:
    """aiosmtpd hooks: each returns the reply line, as aiosmtpd expects."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_EHLO(  # noqa: N802 - aiosmtpd finds hooks by name
        self, server: _SinkSMTP, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self._sink.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(  # noqa: N802 - aiosmtpd finds hooks by name
        self, server: _SinkSMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self._sink.mail_commands += 1
        reply = _next(self._sink._mail_script)
        if reply is not None and not reply.startswith("2"):
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return reply or "250 2.1.0 OK"

    async def handle_RCPT(  # noqa: N802 - aiosmtpd finds hooks by name
        self, server: _SinkSMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        reply = _next(self._sink._rcpt_script.get(address.lower()))
        if reply is not None and not reply.startswith("2"):
            return reply
        envelope.rcpt_tos.append(address)
        return reply or "250 2.1.5 OK"

    async def handle_RSET(self, server: _SinkSMTP, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd finds hooks by name
        self._sink.rsets += 1
        if self._sink._dark_rsets:
            self._sink._dark_rsets -= 1
            await asyncio.Event().wait()  # until the client closes (aiosmtpd cancels this)
        reply = _next(self._sink._rset_script)
        if reply is not None and reply.startswith("421") and server.transport is not None:
            # Closed once the reply is written: the client's next commands go unanswered.
            asyncio.get_running_loop().call_soon(server.transport.close)
        return reply or "250 2.0.0 OK"

    async def handle_DATA(self, server: _SinkSMTP, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd finds hooks by name
        reply = _next(self._sink._data_script)
        if reply is not None and not reply.startswith("2"):
            return reply
        transport = server.transport
        message = ReceivedMessage(
            mail_from=envelope.mail_from,
            recipients=tuple(envelope.rcpt_tos),
            data=envelope.original_content,
            mail_options=tuple(envelope.mail_options),
            helo=session.host_name,
            tls=transport is not None and transport.get_extra_info("ssl_object") is not None,
            auth_login=session.auth_data if session.authenticated else None,
            connection=server.connection,
            peer=str(transport.get_extra_info("peername")[0]) if transport is not None else "",
        )
        await self._sink._record(message)
        hold = self._sink._hold_after
        if hold is not None and len(self._sink.messages) >= hold:
            await self._sink._release.wait()
        return reply or f"250 2.0.0 queued as {len(self._sink.messages)}"


def _next(script: deque[str] | None) -> str | None:
    return script.popleft() if script else None
