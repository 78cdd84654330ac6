"""The submission server's protocol: aiosmtpd's ``SMTP`` with our AUTH, limits, timeouts and
reply table; one instance per client connection.

aiosmtpd does the line discipline (only CRLF ends a line; only CRLF.CRLF ends DATA; input
buffered before STARTTLS is discarded, RFC 3207 section 4.2), the state machine and
STARTTLS. This subclass replaces AUTH (its authenticator callback is synchronous and we
look keys up in PostgreSQL), decides per connection whether AUTH is offered (after TLS, or
on loopback when allowed), counts connections per client address and transactions per
connection, maps every reply through ``replies``, and reads DATA in pieces (``smtp.data``)
with aiosmtpd's end-of-data rule. It relies on private parts of aiosmtpd 1.4 (it overrides
``_handle_client`` and ``_timeout_cb``; calls ``_reset_timeout``, ``_call_handler_hook``
and ``_set_post_data_state``; reads ``_reader``) and shadows the class attribute
``command_size_limits``; the tests exercise each, so an
upgrade that changes them fails loudly.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import ipaddress
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from aiosmtpd.smtp import MISSING, SMTP, syntax

from postyard.smtp import replies
from postyard.smtp.auth import password_from_plain
from postyard.smtp.data import read_data
from postyard.smtp.simple import simple_angle_addr

if TYPE_CHECKING:
    from postyard.smtp.server import SubmissionServer

MECHANISMS = ("PLAIN", "LOGIN")


def _is_loopback(address: str | None) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


class SubmissionSMTP(SMTP):
    """One client connection (aiosmtpd creates one protocol per connection)."""

    def __init__(
        self, owner: SubmissionServer, *, implicit_tls: bool, loop: asyncio.AbstractEventLoop
    ) -> None:
        # aiosmtpd keeps command_size_limits on the class and EHLO grows it, so it would grow
        # with every connection of the process; an instance dict keeps it per connection.
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        config = owner.config
        super().__init__(
            owner.handler,
            data_size_limit=config.limits.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=config.hostname,
            ident=replies.GREETING_TEXT,
            tls_context=None if implicit_tls else config.tls_context,
            timeout=config.limits.idle_timeout,
            auth_required=owner.authenticator is not None,
            auth_require_tls=True,
            loop=loop,
        )
        self.limits = config.limits
        self.transactions = 0
        """MAIL commands accepted on this connection (RFC 9422 MAILMAX)."""
        self._owner = owner
        self._implicit_tls = implicit_tls
        self._client_address: str | None = None
        self._counted = False
        self._command: str | None = None
        self._committing = False
        self._close_after_reply = False

    # -- connection accounting ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._client_address is None:  # not again after STARTTLS
            peer = transport.get_extra_info("peername")
            self._client_address = str(peer[0]) if peer else "unknown"
            self._counted = self._owner.connection_opened(self, self._client_address)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted and self._client_address is not None:
            self._counted = False
            self._owner.connection_closed(self, self._client_address)
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if not self._counted:
            # Over the per-address cap: 421 instead of the greeting (RFC 5321 section 3.1).
            await self.push(replies.TOO_MANY_CONNECTIONS)
            return
        await super()._handle_client()

    def _timeout_cb(self) -> None:
        # aiosmtpd closes silently; a 421 first tells the client why (RFC 5321 section 3.8).
        transport = self._stream_transport()
        if transport is None:
            return
        if not transport.is_closing():
            transport.write(replies.TIMEOUT.encode() + b"\r\n")
        transport.close()

    def request_close(self) -> None:
        """Shutdown: say 421 and close now, or right after the reply to a message being
        committed (so that a stored message gets its 250)."""
        transport = self._stream_transport()
        if self._committing:
            self._close_after_reply = True
        elif transport is not None and not transport.is_closing():
            transport.write(replies.SHUTTING_DOWN.encode() + b"\r\n")
            transport.close()

    def abort(self) -> None:
        transport = self._stream_transport()
        if transport is not None:
            transport.abort()

    def _stream_transport(self) -> asyncio.Transport | None:
        # aiosmtpd types it as BaseTransport; it is the TCP or TLS stream transport.
        return cast("asyncio.Transport | None", self.transport)

    @contextlib.contextmanager
    def committing(self) -> Iterator[None]:
        """Marks the time a message is being stored: shutdown waits for its reply."""
        self._committing = True
        try:
            yield
        finally:
            self._committing = False

    # -- replies -------------------------------------------------------------------------

    async def push(self, status: Any) -> None:
        if isinstance(status, str):
            status = replies.translate(status, command=self._command)
        await super().push(status)
        closing = isinstance(status, str) and status.startswith("421")
        if self._close_after_reply and not self._committing and not closing:
            await super().push(replies.SHUTTING_DOWN)
            closing = True
        if closing and self.transport is not None:
            self.transport.close()  # 421 means the server closes (RFC 5321 section 4.2.2)

    # -- TLS and AUTH --------------------------------------------------------------------

    @property
    def tls_active(self) -> bool:
        return self._implicit_tls or (self.session is not None and self.session.ssl is not None)

    @property
    def auth_offered(self) -> bool:
        """AUTH only over TLS (RFC 4954 section 4, RFC 8314), or on loopback when allowed;
        never on a listener without an authenticator (the MX)."""
        if self._owner.authenticator is None:
            return False
        return self.tls_active or (
            self._owner.config.allow_auth_without_tls_on_loopback
            and _is_loopback(self._client_address)
        )

    def ehlo_lines(self) -> list[str]:
        """The EHLO reply: the extensions this connection offers now."""
        limits = self.limits
        keywords = [
            "PIPELINING",
            f"SIZE {limits.max_message_bytes}",
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
        ]
        if self.tls_context is not None and not self.tls_active:
            keywords.append("STARTTLS")
        if self.auth_offered:
            keywords.append("AUTH " + " ".join(MECHANISMS))
        keywords.append(  # RFC 9422
            f"LIMITS MAILMAX={limits.max_messages_per_connection} RCPTMAX={limits.max_recipients}"
        )
        lines = [self.hostname, *keywords]
        return [f"250-{line}" for line in lines[:-1]] + [f"250 {lines[-1]}"]

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str | None) -> None:  # noqa: N802 - aiosmtpd's name
        if self.tls_active:  # RFC 3207 section 4: no second TLS layer
            await self.push(replies.TLS_ALREADY_ACTIVE)
            return
        await super().smtp_STARTTLS(arg)

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:  # noqa: N802 - aiosmtpd's name
        self._command = "MAIL"  # aiosmtpd's "malformed address" reply is the same for both
        await super().smtp_MAIL(arg)

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:  # noqa: N802 - aiosmtpd's name
        self._command = "RCPT"
        await super().smtp_RCPT(arg)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # The common `<addr-spec> [parameters]` without the stdlib's header parser (a fifth
        # of the relay's CPU per message); aiosmtpd's own reading for anything else.
        simple = simple_angle_addr(arg) if arg else None
        if simple is None:
            return super()._getaddr(arg)
        address, rest = simple
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, rest

    @syntax("DATA")
    async def smtp_DATA(self, arg: str | None) -> None:  # noqa: N802 - aiosmtpd's name
        # The command timeout bounds the whole transfer; the idle timeout then resumes.
        self._reset_timeout(self.limits.command_timeout)
        try:
            await self._data(arg)
        finally:
            if self.transport is not None:
                self._reset_timeout()

    async def _data(self, arg: str | None) -> None:
        """aiosmtpd's DATA command with the data read in pieces (``smtp.data``)."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            read = await read_data(
                self._reader, size_limit=self.data_size_limit, line_limit=self.line_length_limit
            )
        except asyncio.CancelledError:
            self._writer.close()  # the connection was lost during DATA
            raise
        if read.refusal is not None:
            await self.push(read.refusal)
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        self.envelope.content = self.envelope.original_content = read.content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str | None) -> None:  # noqa: N802 - aiosmtpd's name
        refusal = self._auth_refusal(arg)
        if refusal is not None:
            await self.push(refusal)
            return
        mechanism, _, initial = (arg or "").strip().partition(" ")
        authenticator = self._owner.authenticator
        assert authenticator is not None  # _auth_refusal refused AUTH otherwise
        address = self._client_address or "unknown"
        if authenticator.is_locked_out(address):
            await self.push(replies.AUTH_LOCKED_OUT)
            return
        self._reset_timeout(self.limits.command_timeout)
        try:
            password = await self._read_password(mechanism.upper(), initial.strip() or None)
        except ValueError:  # a response line longer than the stream limit
            password = None
            await self.push(replies.AUTH_LINE_TOO_LONG)
        finally:
            if self.transport is not None:
                self._reset_timeout()
        if password is None:
            return
        outcome = await authenticator.authenticate(address, password)
        if outcome.principal is not None:
            assert self.session is not None
            self.session.authenticated = True
            # aiosmtpd declares auth_data as None; it holds what AUTH established.
            self.session.auth_data = outcome.principal  # type: ignore[assignment]
        await self.push(outcome.reply)

    def _auth_refusal(self, arg: str | None) -> str | None:
        session, envelope = self.session, self.envelope
        assert session is not None
        assert envelope is not None
        if self._owner.authenticator is None:
            return replies.NOT_IMPLEMENTED
        if not session.host_name:
            return replies.SEND_EHLO_FIRST
        if not session.extended_smtp:
            return replies.AUTH_NEEDS_EHLO
        if not self.auth_offered:
            return replies.AUTH_NEEDS_TLS
        if session.authenticated:
            return replies.AUTH_ALREADY_DONE
        if envelope.mail_from:
            return replies.AUTH_IN_TRANSACTION
        parts = (arg or "").split()
        if not 1 <= len(parts) <= 2:
            return replies.AUTH_SYNTAX
        if parts[0].upper() not in MECHANISMS:
            return replies.AUTH_MECHANISM
        return None

    async def _read_password(self, mechanism: str, initial: str | None) -> str | None:
        """The password the client sent, or None when a reply was already sent."""
        if mechanism == "PLAIN":
            response = await self._auth_response(initial, "")
            password = password_from_plain(response) if response is not None else None
        else:
            if await self._auth_response(initial, "Username:") is None:
                return None
            response = await self._auth_response(None, "Password:")
            try:
                password = response.decode("utf-8") if response is not None else None
            except UnicodeDecodeError:
                password = None
        if password is None and response is not None:
            await self.push(replies.AUTH_UNDECODABLE)
        return password

    async def _auth_response(self, initial: str | None, challenge: str) -> bytes | None:
        """The initial response, else the answer to a 334 challenge (RFC 4954 section 4);
        None when a reply was already sent (cancelled with "*", not base64)."""
        if initial is None:
            answer = await self.challenge_auth(challenge)
            return None if answer is MISSING else bytes(answer)
        if initial == "=":
            return b""
        try:
            return base64.b64decode(initial, validate=True)
        except binascii.Error:
            await self.push(replies.AUTH_UNDECODABLE)
            return None
