"""Limits and timeouts, advertised where SMTP allows, and the connection's life: per-address
connection cap, messages per connection, idle and command timeouts, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import func, select

from postyard.core.db import Database, TenantId
from postyard.sending.models import Delivery
from postyard.settings import Settings
from postyard.smtpd import SmtpRole
from tests.conftest import Tenant
from tests.smtp import (
    RawClient,
    TlsFiles,
    compose,
    connect,
    message_count,
    queued_id,
    running_relay,
)

Reply = tuple[int, bytes]
TOO_BIG = (552, b"5.3.4 Message size exceeds fixed maximum message size")


async def test_ehlo_advertises_extensions_and_limits(relay: SmtpRole) -> None:
    def talk() -> tuple[int, bytes]:
        with connect(relay.port) as client:
            return client.ehlo("client.example")

    code, text = await asyncio.to_thread(talk)
    assert code == 250
    assert text.decode().split("\n") == [
        "smtp.postyard.example",
        "PIPELINING",
        f"SIZE {40 * 1024 * 1024}",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "STARTTLS",
        "AUTH PLAIN LOGIN",
        "LIMITS MAILMAX=100 RCPTMAX=50",
    ]


async def test_oversize_messages_are_refused(
    settings: Settings, db: Database, tmp_path: Path, tls: TlsFiles, tenant: Tenant
) -> None:
    def talk(port: int) -> list[object]:
        with connect(port) as client:
            client.login("resend", tenant.key.token)
            seen: list[object] = [client.esmtp_features["size"]]
            seen.append(client.mail("app@example.com", ["SIZE=4096"]))
            client.mail("app@example.com")
            client.rcpt("ann@example.org")
            seen.append(client.data(compose(body=("x" * 70 + "\r\n") * 40)))
            client.mail("app@example.com")
            client.rcpt("ann@example.org")
            seen.append(client.data(compose())[0])  # the connection is kept
            return seen

    async with running_relay(
        settings, db, data_dir=tmp_path, tls=tls, max_message_bytes=2048
    ) as role:
        seen = await asyncio.to_thread(talk, role.port)
    assert seen == ["2048", TOO_BIG, TOO_BIG, 250]
    assert await message_count(db, tenant.org.id) == 1


async def test_fifty_recipients_and_no_more(relay: SmtpRole, db: Database, tenant: Tenant) -> None:
    def talk() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
        with connect(relay.port) as client:
            client.login("resend", tenant.key.token)
            client.mail("app@example.com")
            for i in range(50):
                assert client.rcpt(f"r{i}@example.org")[0] == 250
            return client.rcpt("r50@example.org"), client.data(compose())

    refused, sent = await asyncio.to_thread(talk)
    assert refused == (452, b"4.5.3 Too many recipients")
    queued_id(sent)
    async with db.tenant_tx(tenant.org.id) as session:
        deliveries = await session.scalar(select(func.count()).select_from(Delivery))
    assert deliveries == 50


async def test_connections_per_address_are_capped(
    settings: Settings, db: Database, tmp_path: Path, tls: TlsFiles
) -> None:
    def talk(port: int) -> list[bytes]:
        with RawClient(port) as first, RawClient(port) as second:
            seen = [first.reply()[:3], second.reply()[:3]]
            with RawClient(port) as third:
                seen += [third.reply(), third.reply()]
            first.send(b"QUIT\r\n")
            seen += [first.reply()[:3], first.reply()]
            with RawClient(port) as fourth:  # the first one's slot is free again
                seen.append(fourth.reply()[:3])
            return seen

    async with running_relay(
        settings, db, data_dir=tmp_path, tls=tls, max_connections_per_ip=2
    ) as role:
        seen = await asyncio.to_thread(talk, role.port)
    assert seen == [
        b"220",
        b"220",
        b"421 4.7.0 Too many connections from your address; try again later\r\n",
        b"",
        b"221",
        b"",
        b"220",
    ]


async def test_messages_per_connection_are_capped(
    settings: Settings, db: Database, tmp_path: Path, tls: TlsFiles, tenant: Tenant
) -> None:
    def talk(port: int) -> tuple[int, bytes]:
        with connect(port) as client:
            client.login("resend", tenant.key.token)
            for _ in range(2):
                client.mail("app@example.com")
                client.rcpt("ann@example.org")
                queued_id(client.data(compose()))
            refused = client.mail("app@example.com")
            with pytest.raises(smtplib.SMTPServerDisconnected):
                client.noop()
        with connect(port) as client:  # a new connection starts a new count
            client.login("resend", tenant.key.token)
            assert client.mail("app@example.com")[0] == 250
        return refused

    async with running_relay(
        settings, db, data_dir=tmp_path, tls=tls, max_messages_per_connection=2
    ) as role:
        refused = await asyncio.to_thread(talk, role.port)
    assert refused == (421, b"4.7.0 Too many messages on this connection; reconnect to send more")
    assert await message_count(db, tenant.org.id) == 2


async def test_idle_timeout_says_421(
    settings: Settings, db: Database, tmp_path: Path, tls: TlsFiles
) -> None:
    def talk(port: int) -> list[bytes]:
        with RawClient(port) as client:
            return [client.reply()[:3], client.reply(), client.reply()]

    async with running_relay(settings, db, data_dir=tmp_path, tls=tls, idle_timeout=0.2) as role:
        seen = await asyncio.to_thread(talk, role.port)
    assert seen == [
        b"220",
        b"421 4.4.2 Timeout waiting for the client; closing connection\r\n",
        b"",
    ]


async def test_command_timeout_bounds_the_data_transfer(
    settings: Settings, db: Database, tmp_path: Path, tls: TlsFiles, tenant: Tenant
) -> None:
    def talk(port: int) -> Reply:
        with connect(port) as client:
            client.login("resend", tenant.key.token)
            client.mail("app@example.com")
            client.rcpt("ann@example.org")
            client.putcmd("DATA")
            assert client.getreply()[0] == 354
            client.send(b"From: App <app@example.com>\r\n")  # ... and nothing more
            timed_out = client.getreply()
            with pytest.raises(smtplib.SMTPServerDisconnected):
                client.getreply()
            return timed_out

    async with running_relay(
        settings, db, data_dir=tmp_path, tls=tls, idle_timeout=60, command_timeout=0.2
    ) as role:
        seen = await asyncio.to_thread(talk, role.port)
    assert seen == (421, b"4.4.2 Timeout waiting for the client; closing connection")
    assert await message_count(db, tenant.org.id) == 0


async def test_shutdown_says_421_to_open_connections(
    settings: Settings, db: Database, tmp_path: Path, tls: TlsFiles
) -> None:
    async with running_relay(settings, db, data_dir=tmp_path, tls=tls) as role:
        client = await asyncio.to_thread(RawClient, role.port)
        assert (await asyncio.to_thread(client.reply))[:3] == b"220"
    with client:
        assert await asyncio.to_thread(client.reply) == (
            b"421 4.3.2 Service shutting down; try again later\r\n"
        )
        assert await asyncio.to_thread(client.reply) == b""


class _GatedDatabase(Database):
    """The test database, whose tenant transactions wait for ``release`` once open."""

    def __init__(self, db: Database) -> None:
        super().__init__(db.app_engine, db.system_engine, db.drivers)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    def tenant_conn(self, tenant_id: TenantId) -> AbstractAsyncContextManager[asyncpg.Connection]:
        return self._gated(super().tenant_conn(tenant_id))

    @contextlib.asynccontextmanager
    async def _gated(
        self, inner: AbstractAsyncContextManager[asyncpg.Connection]
    ) -> AsyncIterator[asyncpg.Connection]:
        async with inner as conn:
            self.entered.set()
            await self.release.wait()
            yield conn


async def test_shutdown_lets_a_message_being_stored_get_its_250(
    settings: Settings, db: Database, tmp_path: Path, tls: TlsFiles, tenant: Tenant
) -> None:
    gated = _GatedDatabase(db)
    stop = asyncio.Event()
    started: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def serve() -> None:
        async with running_relay(settings, gated, data_dir=tmp_path, tls=tls) as role:
            started.set_result(role.port)
            await stop.wait()

    def talk(port: int) -> tuple[Reply, Reply]:
        with connect(port) as client:
            client.login("resend", tenant.key.token)
            client.mail("app@example.com")
            client.rcpt("ann@example.org")
            return client.data(compose()), client.getreply()

    server = asyncio.create_task(serve())
    client = asyncio.create_task(asyncio.to_thread(talk, await started))
    await gated.entered.wait()  # the message is inside its transaction ...
    stop.set()  # ... when the role is told to stop
    gated.release.set()
    await server
    sent, closing = await client
    queued_id(sent)
    assert closing == (421, b"4.3.2 Service shutting down; try again later")
    assert await message_count(db, tenant.org.id) == 1


async def test_pipelined_commands_are_answered_in_order(relay: SmtpRole, tenant: Tenant) -> None:
    def talk() -> list[bytes]:
        with connect(relay.port) as client:
            client.login("resend", tenant.key.token)
            client.send(
                b"MAIL FROM:<app@example.com>\r\nRCPT TO:<ann@example.org>\r\n"
                b"RCPT TO:<not-an-address>\r\nRSET\r\nNOOP\r\n"
            )
            return [b"%d %s" % client.getreply() for _ in range(5)]

    assert await asyncio.to_thread(talk) == [
        b"250 2.1.0 Sender OK",
        b"250 2.1.5 Recipient OK",
        b"501 5.1.3 Bad recipient address syntax",
        b"250 2.0.0 OK",
        b"250 2.0.0 OK",
    ]
