"""Tests of the SMTP submission server, and the helpers they share.

The server runs in the test's event loop (with the session's database); clients are stdlib
``smtplib`` or plain sockets in a worker thread (``asyncio.to_thread``), since they block.
Timeouts given to clients are guards against a hung test, never synchronisation.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import trustme
from sqlalchemy import func, select

from postyard.core.clock import Clock, SystemClock
from postyard.core.db import Database, DatabaseUrls, TenantId
from postyard.sending.models import Message, MessageContent
from postyard.settings import Settings, SmtpSettings
from postyard.smtpd import SmtpRole, smtp_role
from postyard.tracking.types import TrackingConfig

GUARD_SECONDS = 20.0
HOSTNAME = "smtp.postyard.example"
SENDER = "App <app@example.com>"


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self._now = datetime.now(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta


@dataclass(frozen=True)
class TlsFiles:
    """A server certificate for 127.0.0.1 signed by a test CA, and that CA."""

    ca: trustme.CA
    cert_file: Path
    key_file: Path

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


def make_tls_files(directory: Path) -> TlsFiles:
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = directory / "server.crt", directory / "server.key"
    issued.private_key_pem.write_to_path(key_file)
    cert_file.write_bytes(b"".join(pem.bytes() for pem in issued.cert_chain_pems))
    return TlsFiles(ca=ca, cert_file=cert_file, key_file=key_file)


def relay_settings(settings: Settings, tls: TlsFiles | None, **smtp: Any) -> Settings:
    """``settings`` with a submission server on a free loopback port, changed by ``smtp``."""
    values: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "hostname": HOSTNAME}
    if tls is not None:
        values |= {"tls_cert_file": tls.cert_file, "tls_key_file": tls.key_file}
    return settings.model_copy(update={"smtp": SmtpSettings(**(values | smtp))})


@contextlib.asynccontextmanager
async def running_relay(
    settings: Settings,
    db: Database,
    *,
    data_dir: Path,
    tls: TlsFiles | None,
    clock: Clock | None = None,
    tracking: TrackingConfig | None = None,
    **smtp: Any,
) -> AsyncIterator[SmtpRole]:
    async with smtp_role(
        relay_settings(settings, tls, **smtp),
        db,
        clock or SystemClock(),
        data_dir=data_dir,
        tracking=tracking,
    ) as role:
        yield role


@contextlib.asynccontextmanager
async def unreachable_database() -> AsyncIterator[Database]:
    """A Database whose engines point at a loopback port where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql+asyncpg://nobody:nothing@127.0.0.1:{port}/none"
    database = Database.connect(DatabaseUrls(url, url, url), pool_size=1, name="unreachable")
    try:
        yield database
    finally:
        await database.dispose()


def connect(port: int) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", port, timeout=GUARD_SECONDS)


def submit(
    port: int, token: str, data: bytes, sender: str = "app@example.com"
) -> tuple[int, bytes]:
    """One message to ann@example.org in a session of its own (AUTH with ``token``): the
    reply to MAIL if it was refused, else the reply to the data."""
    with connect(port) as client:
        client.ehlo("client.example")
        client.login("anything", token)
        code, text = client.mail(sender)
        if code != 250:
            return code, text
        assert client.rcpt("ann@example.org") == (250, b"2.1.5 Recipient OK")
        try:
            return client.data(data)
        except smtplib.SMTPDataError as exc:
            error = exc.smtp_error
            return exc.smtp_code, error if isinstance(error, bytes) else error.encode()


class RawClient:
    """A plain socket to the server that reads one reply at a time (replies that arrive in
    one segment are split)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=GUARD_SECONDS)
        self._buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> bytes:
        """The next complete reply, all its lines, or b"" once the server has closed."""
        while True:
            end = 0
            for line in self._buffer.split(b"\r\n")[:-1]:
                end += len(line) + 2
                if line[3:4] != b"-":
                    reply, self._buffer = self._buffer[:end], self._buffer[end:]
                    return reply
            chunk = self.sock.recv(4096)
            if not chunk:
                reply, self._buffer = self._buffer, b""
                return reply
            self._buffer += chunk

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def compose(
    *,
    sender: str = SENDER,
    to: Iterable[str] = ("ann@example.org",),
    cc: Iterable[str] = (),
    bcc: Iterable[str] = (),
    subject: str = "Hello",
    headers: Iterable[str] = (),
    body: str = "Hello there\r\n",
) -> bytes:
    lines = [f"From: {sender}", f"Subject: {subject}"]
    lines += [f"To: {', '.join(to)}"] if to else []
    lines += [f"Cc: {', '.join(cc)}"] if cc else []
    lines += [f"Bcc: {', '.join(bcc)}"] if bcc else []
    lines += list(headers)
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def queued_id(reply: tuple[int, bytes]) -> str:
    """The email id in a ``250 2.0.0 Ok: queued as <id>`` reply."""
    code, text = reply
    assert code == 250, reply
    prefix = b"2.0.0 Ok: queued as "
    assert text.startswith(prefix), reply
    return str(uuid.UUID(text[len(prefix) :].decode()))


async def message_count(db: Database, tenant_id: TenantId) -> int:
    async with db.tenant_tx(tenant_id) as session:
        return int(await session.scalar(select(func.count()).select_from(Message)) or 0)


async def stored_raw(db: Database, tenant_id: TenantId, email_id: str) -> bytes:
    async with db.tenant_tx(tenant_id) as session:
        raw = await session.scalar(
            select(MessageContent.raw).where(MessageContent.message_id == uuid.UUID(email_id))
        )
    assert raw is not None
    return raw
