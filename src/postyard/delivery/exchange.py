"""Commands and their replies on an open session, several commands per write.

aiosmtplib reads one reply per command written and drops replies that arrive while none is
awaited, so it cannot pipeline (RFC 2920). For one exchange the session's ``ReplyReader``
takes the connection's incoming bytes instead of aiosmtplib's protocol, parses every
complete reply and hands the transport back afterwards. A lost connection is passed on to
aiosmtplib's protocol too, so the session knows it is closed. Sessions are leased to one
user at a time (``pool``), so nothing else reads from the connection meanwhile.

The reader lives as long as its session, and so does its deadline timer: a reply is awaited
for at most the command timeout from the moment the wait for it begins, and rather than a
new timer per wait (a measurable share of the client's CPU per message) one timer is kept
and, when it fires before the current deadline, set again for that deadline.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from functools import lru_cache
from typing import cast

from postyard.delivery.outcome import SmtpReply
from postyard.delivery.pool import PooledSession

_MAX_REPLY = 64 * 1024  # a reply longer than this is no SMTP server's


class SessionLost(Exception):
    """The connection closed, broke, timed out or spoke garbage during an exchange.
    ``replies`` are those that arrived before, in command order."""

    def __init__(self, reason: str, replies: Sequence[SmtpReply]) -> None:
        super().__init__(reason)
        self.replies = list(replies)


_SEPARATORS = (b"-", b" ", b"\r", b"\n")
_CACHED_TEXT = 200  # the replies to MAIL, RCPT and DATA repeat; longer texts are not kept


def _parse(buffer: bytearray, start: int = 0) -> tuple[SmtpReply | None, int]:
    """The first complete reply in ``buffer`` from ``start`` (RFC 5321 section 4.2: lines
    ``ddd-text`` then a last ``ddd text``) and the offset after it, or (None, ``start``)
    when it is incomplete. Raises ValueError for a line that does not start with a
    three-digit code."""
    offset = start
    lines: list[str] = []
    while (end := buffer.find(b"\n", offset)) >= 0:
        line = bytes(buffer[offset : end + 1])
        offset = end + 1
        if not lines and line[3:4] != b"-" and len(line) <= _CACHED_TEXT:
            return _single_line(line), offset  # most replies: one line, seen before
        code, separator = line[:3], line[3:4]
        if not code.isdigit() or len(code) != 3 or separator not in _SEPARATORS:
            raise ValueError(f"malformed reply line {line[:80]!r}")
        lines.append(line[4:].strip(b" \t\r\n").decode("utf-8", "surrogateescape"))
        if separator != b"-":
            text = lines[0] if len(lines) == 1 else "\n".join(lines)
            if len(text) > _CACHED_TEXT:
                return SmtpReply.parse(int(code), text), offset
            return _reply(int(code), text), offset
    return None, start


@lru_cache(maxsize=256)
def _single_line(line: bytes) -> SmtpReply:
    """A one-line reply (CRLF included) as ``_parse`` reads it; a line is parsed once however
    many sessions get it (replies are immutable values). Raises ValueError like ``_parse``
    (exceptions are not cached)."""
    code, separator = line[:3], line[3:4]
    if not code.isdigit() or len(code) != 3 or separator not in _SEPARATORS:
        raise ValueError(f"malformed reply line {line[:80]!r}")
    return _reply(int(code), line[4:].strip(b" \t\r\n").decode("utf-8", "surrogateescape"))


@lru_cache(maxsize=256)
def _reply(code: int, text: str) -> SmtpReply:
    """``SmtpReply.parse`` of a short reply; replies are immutable values, so one can be
    shared by every session that gets the same line."""
    return SmtpReply.parse(code, text)


class ReplyReader(asyncio.Protocol):
    """One session's replies: collects them while installed on its transport (during an
    exchange) and passes a lost connection on to ``previous`` (aiosmtplib's protocol, which
    owns the connection between exchanges)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.previous: asyncio.BaseProtocol | None = None
        self._buffer = bytearray()
        self.replies: deque[SmtpReply] = deque()
        self._failure: str | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._deadline: float | None = None  # of the reply being waited for, if any
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    @property
    def unread(self) -> bool:
        """Bytes or replies that arrived and were not asked for."""
        return bool(self.replies or self._buffer)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer.extend(data)
        offset, parsed = 0, False
        try:
            while True:
                reply, offset = _parse(buffer, offset)
                if reply is None:
                    break
                self.replies.append(reply)
                parsed = True
        except ValueError as exc:
            self._fail(str(exc))
        if offset:
            del buffer[:offset]
        if len(buffer) > _MAX_REPLY:
            self._fail("reply too long")
        if parsed:
            self._wake()

    def eof_received(self) -> bool:
        self._fail("the server closed the connection")
        return bool(cast(asyncio.Protocol, self.previous).eof_received())

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"connection lost: {exc}" if exc else "connection lost")
        self.stop_timer()
        if self.previous is not None:
            self.previous.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.previous is not None:
            self.previous.pause_writing()

    def resume_writing(self) -> None:
        if self.previous is not None:
            self.previous.resume_writing()

    @property
    def timer_pending(self) -> bool:
        """A deadline timer is set (it lapses once no wait is in progress)."""
        return self._timer is not None

    def stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fail(self, reason: str) -> None:
        if self._failure is None:
            self._failure = reason
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None or self.replies:
            return  # no wait in progress (the session is parked, or a reply just came)
        if self._loop.time() >= deadline:
            self._fail("timed out waiting for a reply")
        else:  # the wait it was set for is over; a later one is in progress
            self._arm(deadline)

    def _arm(self, deadline: float) -> None:
        if self._timer is not None and self._timer_at <= deadline:
            return  # fires first and moves itself on to ``deadline``
        self.stop_timer()
        self._timer = self._loop.call_at(deadline, self._on_timer)
        self._timer_at = deadline

    async def wait(self, seconds: float | None) -> None:
        """Returns once ``replies`` holds one, after at most ``seconds`` from now (None: for
        ever); raises ConnectionError once none can come, a timeout included."""
        if self.replies:
            return
        if seconds is not None:
            self._deadline = self._loop.time() + seconds
            self._arm(self._deadline)
        try:
            while not self.replies:
                if self._failure is not None:
                    raise ConnectionError(self._failure)
                self._waiter = self._loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
        finally:
            self._deadline = None


async def exchange(
    session: PooledSession,
    commands: Sequence[bytes],
    *,
    first_timeout: float | None = None,
    expect: int | None = None,
    leave_reader: bool = False,
) -> list[SmtpReply]:
    """Write ``commands`` (each a complete line or message, CRLF included) in one go and
    return one reply per command, in order, each awaited for at most ``smtp.timeout`` from
    when the wait for it begins; the first for at most ``first_timeout`` when that is given
    and shorter (the RSET that begins a transaction on a reused session).

    ``expect``: read that many replies instead (the first ones; no commands: only read).
    ``leave_reader``: the session's reader stays on the connection afterwards and later
    replies stay queued for the next exchange (a ride: the rest answer another lease's
    commands, which that lease reads with ``commands=[]``).

    Only pipeline where the server offers PIPELINING; one command is always safe. Raises
    ``SessionLost`` (with the replies received before) when the connection is or gets
    closed, times out or sends something that is not a reply; the caller must then give
    the session up. A server that answers more than asked leaves the session unusable too.
    """
    smtp = session.smtp
    protocol = smtp.protocol
    transport = protocol.transport if protocol is not None else None
    if protocol is None or transport is None or transport.is_closing():
        raise SessionLost("not connected", [])
    reader = session.reader
    if reader is None:
        reader = session.reader = ReplyReader(asyncio.get_running_loop())
    reader.previous = protocol
    transport.set_protocol(reader)
    received: list[SmtpReply] = []  # kept for SessionLost
    replies, timeout = reader.replies, smtp.timeout
    needed = len(commands) if expect is None else expect
    first = timeout if first_timeout is None else _shorter(first_timeout, timeout)
    try:
        if commands:
            cast(asyncio.WriteTransport, transport).write(b"".join(commands))
        while len(received) < needed:
            if not replies:  # pipelined replies mostly come together: one wait for them
                await reader.wait(timeout if received else first)
            received.append(replies.popleft())
    except ConnectionError as exc:
        reader.stop_timer()
        transport.close()
        raise SessionLost(str(exc), received) from None
    finally:
        if not leave_reader:
            transport.set_protocol(protocol)
            reader.previous = None  # a timer left to lapse keeps the reader, not the connection
    if leave_reader:
        return received
    if reader.unread:
        reader.stop_timer()
        transport.close()  # out of step with the server: no later reply could be trusted
    return received


def _shorter(a: float, b: float | None) -> float:
    return a if b is None else min(a, b)
