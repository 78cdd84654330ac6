"""A lean SMTP load client on asyncio streams: one client for every SMTP target a benchmark
compares, so the client's own cost is the same on each side.

Each session connects, reads the greeting, sends EHLO, authenticates once with AUTH PLAIN
when credentials are given, then repeats MAIL, RCPT, DATA and the message, one command per
round trip (no PIPELINING, like ``smtp-source`` without ``-L``). A session that reaches the
server's advertised ``LIMITS MAILMAX`` (RFC 9422) sends QUIT and opens a new one. A greeting
of 421 (too many connections from the address) is retried after a short pause.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

LOOPBACK = "127.0.0.1"
# Guards against a hung server only; healthy runs end far sooner.
REPLY_GUARD_SECONDS = 120.0
GREETING_RETRY_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    port: int
    sender: str
    recipient_of: Callable[[int], str]
    """The RCPT TO address of message ``i``."""
    password: str | None = None
    """AUTH PLAIN with this password (and ``user``) when set; no AUTH otherwise."""
    user: str = "bench"
    host: str = LOOPBACK


@dataclass(slots=True)
class SmtpLoad:
    accepted: int = 0
    issued: int = 0
    started: float = 0.0
    finished: float = 0.0
    """When the last 250 after the data was read."""
    latencies: list[float] = field(default_factory=list)
    """Per accepted message: from writing MAIL to reading the reply to the data."""
    sessions: int = 0
    """Sessions that got as far as sending mail (reconnections included)."""
    refused_greetings: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def elapsed(self) -> float:
        return self.finished - self.started

    @property
    def rate(self) -> float:
        return self.accepted / self.elapsed


class SmtpProtocolError(RuntimeError):
    """The server answered something this client cannot go on from."""


class TooManyErrors(RuntimeError):
    pass


class _Session:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.extensions: dict[str, str] = {}
        self.transactions = 0

    @property
    def mail_max(self) -> int | None:
        for param in self.extensions.get("LIMITS", "").split():
            name, _, value = param.partition("=")
            if name.upper() == "MAILMAX" and value.isdigit():
                return int(value)
        return None

    async def reply(self) -> tuple[int, str]:
        """One reply, multi-line ones joined; its code and its text."""
        lines: list[str] = []
        while True:
            line = (await self.reader.readuntil(b"\r\n")).decode("ascii", "replace")
            lines.append(line[4:].rstrip("\r\n"))
            if len(line) < 4 or line[3] != "-":
                if not line[:3].isdigit():
                    raise SmtpProtocolError(f"not an SMTP reply: {line!r}")
                return int(line[:3]), "\n".join(lines)

    async def command(self, line: str | bytes) -> tuple[int, str]:
        data = line if isinstance(line, bytes) else f"{line}\r\n".encode()
        self.writer.write(data)
        return await self.reply()

    async def ehlo(self) -> None:
        code, text = await self.command("EHLO client.bench.example")
        if code != 250:
            raise SmtpProtocolError(f"EHLO: {code} {text}")
        for line in text.split("\n")[1:]:
            keyword, _, params = line.partition(" ")
            self.extensions[keyword.upper()] = params

    async def auth_plain(self, user: str, password: str) -> None:
        if "PLAIN" not in self.extensions.get("AUTH", "").upper().split():
            raise SmtpProtocolError("the server does not offer AUTH PLAIN on this connection")
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        code, text = await self.command(f"AUTH PLAIN {token}")
        if code != 235:
            raise SmtpProtocolError(f"AUTH PLAIN: {code} {text}")

    async def send(self, sender: str, recipient: str, message: bytes) -> tuple[int, str]:
        """One transaction; the first reply that is not a success (then RSET), or the reply
        to the data. ``message`` is dot-stuffed and ends with CRLF."""
        self.transactions += 1
        for line, expected in ((f"MAIL FROM:<{sender}>", 250), (f"RCPT TO:<{recipient}>", 250)):
            code, text = await self.command(line)
            if code != expected:
                await self._reset(code)
                return code, text
        code, text = await self.command("DATA")
        if code != 354:
            await self._reset(code)
            return code, text
        return await self.command(message + b".\r\n")

    async def _reset(self, code: int) -> None:
        if code != 421:  # after a 421 the server closes
            await self.command("RSET")

    async def quit(self) -> None:
        """QUIT, then wait for the server to close: its count of our connections drops before
        the next one arrives."""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, SmtpProtocolError):
            async with asyncio.timeout(REPLY_GUARD_SECONDS):
                await self.command("QUIT")
                await self.reader.read()
        self.close()

    def close(self) -> None:
        self.writer.close()


async def _open(target: SmtpTarget, load: SmtpLoad) -> _Session:
    deadline = time.monotonic() + REPLY_GUARD_SECONDS
    while True:
        reader, writer = await asyncio.open_connection(target.host, target.port)
        session = _Session(reader, writer)
        try:
            code, text = await session.reply()
            if code == 220:
                await session.ehlo()
                if target.password is not None:
                    await session.auth_plain(target.user, target.password)
                load.sessions += 1
                return session
        except BaseException:
            session.close()
            raise
        session.close()
        if code != 421 or time.monotonic() > deadline:
            raise SmtpProtocolError(f"greeting: {code} {text}")
        load.refused_greetings += 1
        await asyncio.sleep(GREETING_RETRY_SECONDS)


async def _sessions(
    target: SmtpTarget,
    message_of: Callable[[int], bytes],
    load: SmtpLoad,
    *,
    messages: int,
    max_errors: int,
) -> None:
    session: _Session | None = None
    try:
        while load.issued < messages:
            if session is not None and session.transactions == session.mail_max:
                await session.quit()
                session = None
            if session is None:
                session = await _open(target, load)
            index = load.issued
            load.issued += 1
            sent = time.perf_counter()
            try:
                async with asyncio.timeout(REPLY_GUARD_SECONDS):
                    code, text = await session.send(
                        target.sender, target.recipient_of(index), message_of(index)
                    )
            except (OSError, asyncio.IncompleteReadError, TimeoutError, SmtpProtocolError) as exc:
                code, text = 0, repr(exc)
            if code == 250:
                load.accepted += 1
                load.finished = time.perf_counter()
                load.latencies.append(load.finished - sent)
                continue
            load.issued -= 1  # someone sends it again: the run ends at `messages` accepted
            load.errors[f"{code} {text[:200]}"] += 1
            if sum(load.errors.values()) > max_errors:
                common = "; ".join(f"{n} x {e}" for e, n in load.errors.most_common(3))
                msg = f"more than {max_errors} messages refused, most common: {common}"
                raise TooManyErrors(msg)
            if code in (0, 421):
                session.close()
                session = None
    finally:
        if session is not None:
            await session.quit()


async def send_until_accepted(
    target: SmtpTarget,
    message_of: Callable[[int], bytes],
    *,
    messages: int,
    sessions: int,
    max_errors: int,
) -> SmtpLoad:
    """Send ``message_of(i)`` over ``sessions`` concurrent sessions until ``messages`` were
    answered 250 after the data; refusals are counted and the message is sent again."""
    load = SmtpLoad(started=time.perf_counter())
    await asyncio.gather(
        *(
            _sessions(target, message_of, load, messages=messages, max_errors=max_errors)
            for _ in range(min(sessions, messages))
        )
    )
    return load


async def wait_listening(port: int, guard_seconds: float, host: str = LOOPBACK) -> None:
    """Until something accepts connections on ``port``."""
    deadline = time.monotonic() + guard_seconds
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
        else:
            writer.close()
            return
