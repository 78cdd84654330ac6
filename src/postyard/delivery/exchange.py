"""Commands and their replies on an open session, several commands per write.

aiosmtplib reads one reply per command written and drops replies that arrive while none is
awaited, so it cannot pipeline (RFC 2920). For one exchange a ``_Replies`` protocol takes
the connection's incoming bytes instead of aiosmtplib's, parses every complete reply and
hands the transport back afterwards. A lost connection is passed on to aiosmtplib's
protocol too, so the session knows it is closed. Sessions are leased to one user at a time
(``pool``), so nothing else reads from the connection meanwhile.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from functools import lru_cache
from typing import cast

import aiosmtplib

from postyard.delivery.outcome import SmtpReply

_MAX_REPLY = 64 * 1024  # a reply longer than this is no SMTP server's


class SessionLost(Exception):
    """The connection closed, broke, timed out or spoke garbage during an exchange.
    ``replies`` are those that arrived before, in command order."""

    def __init__(self, reason: str, replies: Sequence[SmtpReply]) -> None:
        super().__init__(reason)
        self.replies = list(replies)


_SEPARATORS = (b"-", b" ", b"\r", b"\n")
_CACHED_TEXT = 200  # the replies to MAIL, RCPT and DATA repeat; longer texts are not kept


def _parse(buffer: bytearray) -> tuple[SmtpReply | None, int]:
    """The first complete reply in ``buffer`` (RFC 5321 section 4.2: lines ``ddd-text``
    then a last ``ddd text``) and the bytes it took, or (None, 0) when it is incomplete.
    Raises ValueError for a line that does not start with a three-digit code."""
    offset = 0
    lines: list[str] = []
    while (end := buffer.find(b"\n", offset)) >= 0:
        line = bytes(buffer[offset : end + 1])
        offset = end + 1
        code, separator = line[:3], line[3:4]
        if not code.isdigit() or len(code) != 3 or separator not in _SEPARATORS:
            raise ValueError(f"malformed reply line {line[:80]!r}")
        lines.append(line[4:].strip(b" \t\r\n").decode("utf-8", "surrogateescape"))
        if separator != b"-":
            text = lines[0] if len(lines) == 1 else "\n".join(lines)
            if len(text) > _CACHED_TEXT:
                return SmtpReply.parse(int(code), text), offset
            return _reply(int(code), text), offset
    return None, 0


@lru_cache(maxsize=256)
def _reply(code: int, text: str) -> SmtpReply:
    """``SmtpReply.parse`` of a short reply; replies are immutable values, so one can be
    shared by every session that gets the same line."""
    return SmtpReply.parse(code, text)


class _Replies(asyncio.Protocol):
    """Collects replies while installed on a transport; passes a lost connection on to
    ``previous`` (aiosmtplib's protocol), which owns the connection between exchanges."""

    def __init__(self, previous: asyncio.BaseProtocol) -> None:
        self._previous = previous
        self._buffer = bytearray()
        self.replies: deque[SmtpReply] = deque()
        self._failure: str | None = None
        self._waiter: asyncio.Future[None] | None = None

    @property
    def unread(self) -> bool:
        """Bytes or replies that arrived and were not asked for."""
        return bool(self.replies or self._buffer)

    def data_received(self, data: bytes) -> None:
        self._buffer.extend(data)
        try:
            while True:
                reply, used = _parse(self._buffer)
                if reply is None:
                    break
                del self._buffer[:used]
                self.replies.append(reply)
        except ValueError as exc:
            self._fail(str(exc))
        if len(self._buffer) > _MAX_REPLY:
            self._fail("reply too long")
        self._wake()

    def eof_received(self) -> bool:
        self._fail("the server closed the connection")
        return bool(cast(asyncio.Protocol, self._previous).eof_received())

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"connection lost: {exc}" if exc else "connection lost")
        self._previous.connection_lost(exc)

    def pause_writing(self) -> None:
        self._previous.pause_writing()

    def resume_writing(self) -> None:
        self._previous.resume_writing()

    def _fail(self, reason: str) -> None:
        if self._failure is None:
            self._failure = reason
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next_reply(self) -> SmtpReply:
        """The next reply; raises ConnectionError once none can come."""
        while not self.replies:
            if self._failure is not None:
                raise ConnectionError(self._failure)
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.replies.popleft()


async def exchange(smtp: aiosmtplib.SMTP, commands: Sequence[bytes]) -> list[SmtpReply]:
    """Write ``commands`` (each a complete line or message, CRLF included) in one go and
    return one reply per command, in order, each awaited for at most ``smtp.timeout``.

    Only pipeline where the server offers PIPELINING; one command is always safe. Raises
    ``SessionLost`` (with the replies received before) when the connection is or gets
    closed, times out or sends something that is not a reply; the caller must then give
    the session up. A server that answers more than asked leaves the session unusable too.
    """
    protocol = smtp.protocol
    transport = protocol.transport if protocol is not None else None
    if protocol is None or transport is None or transport.is_closing():
        raise SessionLost("not connected", [])
    replies = _Replies(protocol)
    transport.set_protocol(replies)
    received: list[SmtpReply] = []
    loop = asyncio.get_running_loop()
    try:
        cast(asyncio.WriteTransport, transport).write(b"".join(commands))
        # One deadline, moved on only before a wait for a reply that has not arrived:
        # pipelined replies mostly come together, and a timer per reply was measurable.
        async with asyncio.timeout_at(_deadline(loop, smtp.timeout)) as deadline:
            for index in range(len(commands)):
                if index and not replies.replies:
                    deadline.reschedule(_deadline(loop, smtp.timeout))
                received.append(await replies.next_reply())
    except TimeoutError:
        transport.close()
        raise SessionLost("timed out waiting for a reply", received) from None
    except ConnectionError as exc:
        transport.close()
        raise SessionLost(str(exc), received) from None
    finally:
        transport.set_protocol(protocol)
    if replies.unread:
        transport.close()  # out of step with the server: no later reply could be trusted
    return received


def _deadline(loop: asyncio.AbstractEventLoop, timeout: float | None) -> float | None:
    return None if timeout is None else loop.time() + timeout
