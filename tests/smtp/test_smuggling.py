"""SMTP smuggling (SEC Consult, December 2023; CVE-2023-51764/51765/51766): only CRLF.CRLF
ends DATA, bare CR and LF are refused, and no end-of-data variant yields a second message.

Each test authenticates, opens DATA and writes raw bytes: a first message, a fake end of
data, then a complete second transaction a vulnerable server would accept as a message of
its own, then the real CRLF.CRLF.
"""

from __future__ import annotations

import asyncio
import smtplib

import pytest
from sqlalchemy import select

from postyard.core.db import Database
from postyard.sending.models import Message
from postyard.smtpd import SmtpRole
from tests.conftest import Tenant
from tests.smtp import (
    compose,
    connect,
    message_count,
    queued_id,
    stored_raw,
)

REFUSED = (
    554,
    b"5.5.2 Bare CR or LF in message data; lines must end with CRLF (RFC 5321 section 2.3.8)",
)
FIRST = b"From: App <app@example.com>\r\nTo: ann@example.org\r\nSubject: first\r\n\r\nbody"
SECOND = (
    b"MAIL FROM:<ceo@example.com>\r\n"
    b"RCPT TO:<victim@example.org>\r\n"
    b"DATA\r\n"
    b"From: CEO <ceo@example.com>\r\n"
    b"To: victim@example.org\r\n"
    b"Subject: smuggled\r\n"
    b"\r\n"
    b"pay the invoice\r\n"
)
# The published fake end-of-data sequences, and bare line endings alone.
VARIANTS = [
    b"\n.\n",
    b"\n.\r\n",
    b"\r.\n",
    b"\r\n.\n",
    b"\r\n.\r",
    b"\r.\r\n",
    b"\r.\r",
    b"\n",
    b"\r",
]


def _raw_data(client: smtplib.SMTP, payload: bytes) -> tuple[int, bytes]:
    client.mail("app@example.com")
    client.rcpt("ann@example.org")
    client.putcmd("DATA")
    assert client.getreply()[0] == 354
    client.send(payload)
    return client.getreply()


@pytest.mark.parametrize("fake_end", VARIANTS, ids=repr)
async def test_fake_end_of_data_smuggles_nothing(
    relay: SmtpRole, db: Database, tenant: Tenant, fake_end: bytes
) -> None:
    def talk() -> tuple[tuple[int, bytes], str]:
        with connect(relay.port) as client:
            client.login("resend", tenant.key.token)
            refused = _raw_data(client, FIRST + fake_end + SECOND + b"\r\n.\r\n")
            # The connection is still in step: the next message is the client's own.
            client.mail("app@example.com")
            client.rcpt("ann@example.org")
            return refused, queued_id(client.data(compose(subject="after")))

    refused, after = await asyncio.to_thread(talk)
    assert refused == REFUSED
    async with db.tenant_tx(tenant.org.id) as session:
        subjects = (await session.scalars(select(Message.subject))).all()
    assert subjects == ["after"]
    assert b"smuggled" not in await stored_raw(db, tenant.org.id, after)


@pytest.mark.parametrize(
    "data",
    [
        b"From: App <app@example.com>\r\nSubject: a\nBcc: x@example.org\r\n\r\nbody\r\n",
        b"From: App <app@example.com>\r\nSubject: a\rb\r\n\r\nbody\r\n",
        b"From: App <app@example.com>\r\n\r\nline one\nline two\r\n",
        b"From: App <app@example.com>\r\n\r\nline one\r\n\nline two\r\n",
    ],
    ids=["lf-in-header", "cr-in-header", "lf-in-body", "lf-after-crlf"],
)
async def test_bare_line_endings_anywhere_are_refused(
    relay: SmtpRole, db: Database, tenant: Tenant, data: bytes
) -> None:
    def talk() -> tuple[int, bytes]:
        with connect(relay.port) as client:
            client.login("resend", tenant.key.token)
            return _raw_data(client, data + b".\r\n")

    assert await asyncio.to_thread(talk) == REFUSED
    assert await message_count(db, tenant.org.id) == 0


async def test_dot_transparency(relay: SmtpRole, db: Database, tenant: Tenant) -> None:
    # RFC 5321 section 4.5.2: a leading dot is doubled on the wire and undone on receipt;
    # ".." alone is a line with one dot, not the end of data.
    wire = FIRST + b"\r\n..\r\n..hidden\r\nlast\r\n.\r\n"

    def talk() -> tuple[int, bytes]:
        with connect(relay.port) as client:
            client.login("resend", tenant.key.token)
            return _raw_data(client, wire)

    email_id = queued_id(await asyncio.to_thread(talk))
    raw = await stored_raw(db, tenant.org.id, email_id)
    assert raw.endswith(b"\r\n\r\nbody\r\n.\r\n.hidden\r\nlast\r\n")
    assert await message_count(db, tenant.org.id) == 1
