"""A message submitted over SMTP lands in the ledger, readable through the live API; 250
only after the commit; Resend-Idempotency-Key as in the API."""

from __future__ import annotations

import asyncio
import email
import email.policy
import smtplib
import uuid
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy import select

from postyard.core.db import Database, TenantId
from postyard.sending import idempotency
from postyard.sending.models import Delivery, Message
from postyard.settings import Settings
from postyard.smtpd import SmtpRole
from tests.conftest import Tenant
from tests.smtp import (
    SENDER,
    TlsFiles,
    compose,
    connect,
    message_count,
    queued_id,
    running_relay,
    stored_raw,
    unreachable_database,
)


def _send(port: int, token: str, data: bytes, rcpt: list[str]) -> tuple[int, bytes]:
    with connect(port) as client:
        client.ehlo("client.example")
        client.login("anything", token)
        assert client.mail("app@example.com") == (250, b"2.1.0 Sender OK")
        for address in rcpt:
            assert client.rcpt(address) == (250, b"2.1.5 Recipient OK")
        return client.data(data)


async def test_submitted_message_is_in_the_ledger_and_the_api(
    relay: SmtpRole, db: Database, http: httpx.AsyncClient, tenant: Tenant
) -> None:
    data = compose(to=["ann@example.org"], cc=["carl@example.net"], bcc=["dee@example.org"])
    rcpt = ["ann@example.org", "carl@example.net", "dee@example.org", "eve@example.net"]
    reply = await asyncio.to_thread(_send, relay.port, tenant.key.token, data, rcpt)
    email_id = queued_id(reply)

    got = (await http.get(f"/v1/emails/{email_id}", headers=tenant.auth)).json()
    assert got["id"] == email_id
    assert got["from"] == SENDER
    assert got["to"] == ["ann@example.org"]
    assert got["cc"] == ["carl@example.net"]
    assert got["bcc"] == ["dee@example.org", "eve@example.net"]
    assert got["subject"] == "Hello"
    assert got["text"] == "Hello there\n"
    assert got["html"] is None
    assert got["last_event"] == "sent"
    assert got["message_id"] == f"<{email_id}@example.com>"

    raw = await stored_raw(db, tenant.org.id, email_id)
    assert b"Bcc" not in raw
    assert b"dee@example.org" not in raw
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Message-ID"] == f"<{email_id}@example.com>"
    assert parsed["Date"] is not None
    # Everything else is the client's bytes, in order, untouched.
    assert raw.endswith(data.replace(b"Bcc: dee@example.org\r\n", b""))

    async with db.tenant_tx(tenant.org.id) as session:
        message = await session.scalar(select(Message).where(Message.id == uuid.UUID(email_id)))
        deliveries = (await session.scalars(select(Delivery).order_by(Delivery.recipient))).all()
    assert message is not None
    assert message.source == "smtp"
    assert [(d.recipient, d.kind, d.status) for d in deliveries] == [
        ("ann@example.org", "to", "queued"),
        ("carl@example.net", "cc", "queued"),
        ("dee@example.org", "bcc", "queued"),
        ("eve@example.net", "bcc", "queued"),
    ]
    events = (await http.get(f"/v1/emails/{email_id}/events", headers=tenant.auth)).json()
    assert [e["type"] for e in events["data"]] == ["email.sent"]


async def test_client_message_id_date_and_html_are_kept(
    relay: SmtpRole, db: Database, http: httpx.AsyncClient, tenant: Tenant
) -> None:
    boundary = "b0undary"
    data = compose(
        sender="=?utf-8?q?J=C3=B6rg?= <jorg@example.com>",
        subject="=?utf-8?q?Gr=C3=BC=C3=9Fe?=",
        headers=[
            "Message-ID: <own-id@example.com>",
            "Date: Mon, 02 Feb 2026 10:00:00 +0000",
            "Reply-To: help@example.com",
            "MIME-Version: 1.0",
            f'Content-Type: multipart/alternative; boundary="{boundary}"',
        ],
        body=(
            f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain\r\n"
            f"--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>rich</p>\r\n"
            f"--{boundary}--\r\n"
        ),
    )
    reply = await asyncio.to_thread(_send, relay.port, tenant.key.token, data, ["ann@example.org"])
    email_id = queued_id(reply)
    got = (await http.get(f"/v1/emails/{email_id}", headers=tenant.auth)).json()
    assert got["message_id"] == "<own-id@example.com>"
    assert got["subject"] == "Grüße"
    assert (
        str(email.policy.default.header_factory("from", got["from"])) == "Jörg <jorg@example.com>"
    )
    assert got["reply_to"] == ["help@example.com"]
    assert got["text"].strip() == "plain"
    assert got["html"].strip() == "<p>rich</p>"
    assert await stored_raw(db, tenant.org.id, email_id) == data


async def test_a_connection_carries_several_messages(
    relay: SmtpRole, db: Database, tenant: Tenant
) -> None:
    def talk() -> list[str]:
        with connect(relay.port) as client:
            client.login("resend", tenant.key.token)
            return [_sendmail(client, i) for i in range(3)]

    ids = await asyncio.to_thread(talk)
    assert len(set(ids)) == 3
    assert await message_count(db, tenant.org.id) == 3


def _sendmail(client: smtplib.SMTP, index: int) -> str:
    client.mail("app@example.com")
    client.rcpt(f"r{index}@example.org")
    return queued_id(client.data(compose(subject=f"n{index}")))


def _idempotent(port: int, token: str, key: str, subject: str) -> tuple[int, bytes]:
    data = compose(subject=subject, headers=[f"Resend-Idempotency-Key: {key}"])
    return _send(port, token, data, ["ann@example.org"])


async def test_idempotency_key_replays_the_original_id(
    relay: SmtpRole, db: Database, tenant: Tenant
) -> None:
    token = tenant.key.token
    first = await asyncio.to_thread(_idempotent, relay.port, token, "order-1", "Receipt")
    again = await asyncio.to_thread(_idempotent, relay.port, token, "order-1", "Receipt")
    assert queued_id(first) == queued_id(again)
    assert await message_count(db, tenant.org.id) == 1
    raw = await stored_raw(db, tenant.org.id, queued_id(first))
    assert b"Resend-Idempotency-Key" not in raw

    other = await asyncio.to_thread(_idempotent, relay.port, token, "order-1", "Different")
    assert other == (550, b"5.7.0 Resend-Idempotency-Key already used for a different message")
    assert await message_count(db, tenant.org.id) == 1

    bad = await asyncio.to_thread(_idempotent, relay.port, token, "x" * 300, "Receipt")
    assert bad[0] == 554
    assert bad[1].startswith(b"5.6.0 The Resend-Idempotency-Key header must be")


async def test_idempotency_key_in_use_is_a_temporary_failure(
    relay: SmtpRole, db: Database, tenant: Tenant
) -> None:
    async with db.tenant_conn(TenantId(tenant.org.id)) as conn:
        # Another submission holds the key: its transaction has begun and not finished.
        assert await idempotency.begin(conn, TenantId(tenant.org.id), "busy", b"x") is None
        reply = await asyncio.to_thread(
            _idempotent, relay.port, tenant.key.token, "busy", "Receipt"
        )
    assert reply[0] == 451
    assert reply[1].startswith(b"4.7.0 Resend-Idempotency-Key in use")
    assert await message_count(db, tenant.org.id) == 0


class _HalfBroken(Database):
    """Keys are looked up in the real database; tenant transactions go to ``broken``."""

    def __init__(self, broken: Database, real: Database) -> None:
        super().__init__(broken.app_engine, real.system_engine, real.drivers)
        self._broken = broken

    def tenant_conn(self, tenant_id: TenantId) -> AbstractAsyncContextManager[asyncpg.Connection]:
        return self._broken.tenant_conn(tenant_id)


async def test_database_trouble_is_451_and_nothing_is_stored(
    settings: Settings, db: Database, tmp_path: Path, tls: TlsFiles, tenant: Tenant
) -> None:
    # Keys are looked up through the real system role; the tenant transaction that would
    # store the message goes to a port where nothing listens.
    async with unreachable_database() as broken:
        half_broken = _HalfBroken(broken, db)
        async with running_relay(settings, half_broken, data_dir=tmp_path, tls=tls) as role:
            reply = await asyncio.to_thread(
                _send, role.port, tenant.key.token, compose(), ["ann@example.org"]
            )
    assert reply == (451, b"4.3.0 Message not stored; try again later")
    assert await message_count(db, tenant.org.id) == 0
