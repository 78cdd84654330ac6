"""The inbound MX listener over real sockets: DSNs, complaints and mailto unsubscribes for
messages sent through the API, forged tokens, unknown addresses and malformed reports."""

from __future__ import annotations

import asyncio
import smtplib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio
from sqlalchemy import update

from postyard.core.clock import SystemClock
from postyard.core.db import Database, TenantId
from postyard.delivery import verp
from postyard.domains import service as domains
from postyard.mxd import MxRole, intake_config
from postyard.runtime import Runtime
from postyard.sending.models import Delivery
from postyard.settings import Settings
from postyard.tracking import tokens
from postyard.tracking.unsubscribe import mailto_address
from tests.conftest import APP_ROLE, TEST_KEK, TEST_POLICY, Tenant
from tests.inbound import (
    GUARD_SECONDS,
    deliver,
    delivery_row,
    drop_counts,
    event_types,
    running_mx,
    suppression_reason,
)


@pytest_asyncio.fixture
async def mx(
    settings: Settings, db: Database, runtime: Runtime, tmp_path: Path
) -> AsyncIterator[MxRole]:
    async with running_mx(settings, db, data_dir=tmp_path, secret=runtime.secret) as role:
        yield role


@dataclass(frozen=True)
class Sent:
    tenant_id: TenantId
    email_id: uuid.UUID
    delivery_id: uuid.UUID
    recipient: str
    return_path: str
    """The delivery's VERP address."""
    domain: str
    """The return-path domain."""


async def send(
    db: Database,
    http: httpx.AsyncClient,
    tenant: Tenant,
    runtime: Runtime,
    *,
    to: tuple[str, ...] = ("nobody@example.net",),
    status: str = "delivered",
) -> list[Sent]:
    """A message from a domain of the tenant, accepted through the API, its deliveries put
    in ``status`` after one attempt as the worker would (the e2e test runs the worker)."""
    name = f"shop-{uuid.uuid4().hex[:8]}.example"
    async with db.tenant_tx(tenant.org.id) as session:
        await domains.create_domain(
            session,
            tenant.org.id,
            name=name,
            return_path="send",
            options=domains.DomainSettings(),
            kek=TEST_KEK,
            policy=TEST_POLICY,
            now=SystemClock().now(),
        )
    body = {"from": f"Shop <orders@{name}>", "to": list(to), "subject": "Order", "text": "Hi"}
    response = await http.post("/v1/emails", json=body, headers=tenant.auth)
    assert response.status_code == 200, response.text
    email_id = uuid.UUID(response.json()["id"])
    attempts = 0 if status == "queued" else 1
    async with db.system_tx(reason="test: the worker's part") as session:
        rows = (
            await session.execute(
                update(Delivery)
                .where(Delivery.message_id == email_id)
                .values(status=status, attempts=attempts)
                .returning(Delivery.id, Delivery.recipient)
            )
        ).all()
    key = intake_config(runtime.settings, runtime.secret).verp_key
    domain = f"send.{name}"
    return [
        Sent(
            tenant.org.id, email_id, r.id, r.recipient, verp.return_path(r.id, domain, key), domain
        )
        for r in rows
    ]


def dsn(
    to: str,
    recipient: str,
    *,
    action: str = "failed",
    status: str = "5.1.1",
    diagnostic: str = "550 5.1.1 <x>: Recipient address rejected: User unknown",
) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.remote.example\r\n"
        f"To: {to}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n'
        "\r\n--b1\r\nContent-Type: text/plain\r\n\r\nThe mail system\r\n"
        "\r\n--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.remote.example\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n"
        "\r\n--b1--\r\n"
    ).encode()


def arf(
    to: str,
    recipient: str,
    *,
    return_path: str | None,
    message_id: str = "<nothing@example>",
    feedback_type: str = "abuse",
) -> bytes:
    quoted = f"Return-Path: <{return_path}>\r\n" if return_path else ""
    return (
        "From: feedback@isp.example\r\n"
        f"To: {to}\r\nSubject: complaint\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="f1"\r\n'
        "\r\n--f1\r\nContent-Type: text/plain\r\n\r\nAn abuse report\r\n"
        "\r\n--f1\r\nContent-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: {feedback_type}\r\nUser-Agent: TestFBL/1.0\r\nVersion: 1\r\n"
        f"Original-Rcpt-To: <{recipient}>\r\n"
        "\r\n--f1\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"{quoted}Message-ID: {message_id}\r\nSubject: Order\r\n"
        "\r\n--f1--\r\n"
    ).encode()


async def talk(mx: MxRole, recipients: list[str], data: bytes) -> tuple[int, bytes] | None:
    exchange = await asyncio.to_thread(deliver, mx.port, recipients, data)
    return exchange.data


async def test_dsn_for_a_sent_message_bounces_suppresses_and_records_the_event(
    mx: MxRole, db: Database, http: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    [sent] = await send(db, http, tenant, runtime)
    reply = await talk(mx, [sent.return_path], dsn(sent.return_path, sent.recipient))
    assert reply is not None
    assert reply[0] == 250
    row = await delivery_row(db, sent.delivery_id)
    assert (row.status, row.bounce_type) == ("bounced", "permanent")
    assert row.last_reply is not None
    assert "User unknown" in row.last_reply
    assert await suppression_reason(db, row) == "hard_bounce"
    events = await event_types(db, sent.email_id)
    [bounced] = [data for kind, data in events if kind == "email.bounced"]
    assert bounced["bounce"] == {
        "type": "Permanent",
        "subType": "NoEmail",
        "message": "550 5.1.1 <x>: Recipient address rejected: User unknown",
    }
    assert (bounced["status"], bounced["reporting_mta"]) == ("5.1.1", "mx.remote.example")
    got = await http.get(f"/v1/emails/{sent.email_id}", headers=tenant.auth)
    assert got.json()["last_event"] == "bounced"
    # The same report again (a remote MTA retrying): accepted, nothing changes.
    again = await talk(mx, [sent.return_path], dsn(sent.return_path, sent.recipient))
    assert again is not None
    assert again[0] == 250
    repeated = [kind for kind, _ in await event_types(db, sent.email_id)]
    assert repeated.count("email.bounced") == 1


async def test_transient_dsn_only_writes_delivery_delayed(
    mx: MxRole, db: Database, http: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    [sent] = await send(db, http, tenant, runtime)
    report = dsn(
        sent.return_path, sent.recipient, action="delayed", status="4.2.2", diagnostic="452 full"
    )
    reply = await talk(mx, [sent.return_path], report)
    assert reply is not None
    assert reply[0] == 250
    row = await delivery_row(db, sent.delivery_id)
    assert row.status == "delivered"
    assert await suppression_reason(db, row) is None
    kinds = [kind for kind, _ in await event_types(db, sent.email_id)]
    assert kinds == ["email.sent", "email.delivery_delayed"]


async def test_policy_block_bounces_without_suppressing(
    mx: MxRole, db: Database, http: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    [sent] = await send(db, http, tenant, runtime)
    report = dsn(sent.return_path, sent.recipient, status="5.7.1", diagnostic="554 5.7.1 spam")
    reply = await talk(mx, [sent.return_path], report)
    assert reply is not None
    assert reply[0] == 250
    row = await delivery_row(db, sent.delivery_id)
    assert (row.status, row.bounce_type) == ("bounced", "block")
    assert await suppression_reason(db, row) is None


async def test_forged_token_is_dropped_and_counted_and_changes_nothing(
    mx: MxRole, db: Database, http: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    [sent] = await send(db, http, tenant, runtime)
    local, _, domain = sent.return_path.partition("@")
    token, _, mac = local.partition("-")
    forged = f"{token}-{'a' * len(mac)}@{domain}"
    other_key = verp.return_path(sent.delivery_id, sent.domain, b"not-the-key" * 3)
    before = await drop_counts(db)
    for address in (forged, other_key):
        reply = await talk(mx, [address], dsn(address, sent.recipient))
        assert reply is not None
        assert reply[0] == 250
    after = await drop_counts(db)
    assert after.get("forged_token", 0) == before.get("forged_token", 0) + 2
    row = await delivery_row(db, sent.delivery_id)
    assert row.status == "delivered"
    assert await suppression_reason(db, row) is None
    assert [kind for kind, _ in await event_types(db, sent.email_id)] == ["email.sent"]


async def test_unknown_addresses_are_refused_at_rcpt(
    mx: MxRole, db: Database, http: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    [sent] = await send(db, http, tenant, runtime)
    exchange = await asyncio.to_thread(
        deliver,
        mx.port,
        [f"postmaster@{sent.domain}", f"b+x.y@{sent.domain}", "b+abc@elsewhere.example"],
        b"Subject: hi\r\n\r\nhello\r\n",
    )
    assert exchange.rcpt[f"postmaster@{sent.domain}"] == (550, b"5.1.1 No such recipient here")
    assert exchange.rcpt[f"b+x.y@{sent.domain}"][0] == 550
    assert exchange.rcpt["b+abc@elsewhere.example"] == (550, b"5.7.1 Relaying denied")
    assert exchange.data is None


async def test_no_auth_and_limits_are_advertised(mx: MxRole) -> None:
    def ehlo() -> tuple[str, tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", mx.port, timeout=GUARD_SECONDS) as client:
            code, features = client.ehlo("remote.example")
            assert code == 250
            return features.decode(), client.docmd("AUTH", "PLAIN AGFiYwB4eXo=")

    features, auth = await asyncio.to_thread(ehlo)
    assert "AUTH" not in features
    assert "STARTTLS" in features
    assert "SIZE 26214400" in features
    assert auth[0] == 502


async def test_arf_complaint_suppresses_and_records_the_event(
    mx: MxRole, db: Database, http: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    [sent] = await send(db, http, tenant, runtime)
    feedback = f"fbl@{sent.domain}"
    reply = await talk(mx, [feedback], arf(feedback, sent.recipient, return_path=sent.return_path))
    assert reply is not None
    assert reply[0] == 250
    row = await delivery_row(db, sent.delivery_id)
    assert row.status == "delivered"
    assert await suppression_reason(db, row) == "complaint"
    events = await event_types(db, sent.email_id)
    [complained] = [data for kind, data in events if kind == "email.complained"]
    assert (complained["feedback_type"], complained["user_agent"]) == ("abuse", "TestFBL/1.0")
    got = await http.get(f"/v1/emails/{sent.email_id}", headers=tenant.auth)
    assert got.json()["last_event"] == "complained"


async def test_arf_by_message_id_only_for_a_one_recipient_message(
    mx: MxRole, db: Database, http: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    [single] = await send(db, http, tenant, runtime)
    pair = await send(db, http, tenant, runtime, to=("a@example.net", "b@example.net"))
    before = await drop_counts(db)
    for sent in (single, pair[0]):
        got = await http.get(f"/v1/emails/{sent.email_id}", headers=tenant.auth)
        assert got.status_code == 200
        header = await _message_id_header(db, sent.email_id)
        feedback = f"fbl@{sent.domain}"
        report = arf(feedback, sent.recipient, return_path=None, message_id=header)
        reply = await talk(mx, [feedback], report)
        assert reply is not None
        assert reply[0] == 250
    assert await suppression_reason(db, await delivery_row(db, single.delivery_id)) == "complaint"
    for sent in pair:  # either recipient could have named the Message-ID: no one is suppressed
        assert await suppression_reason(db, await delivery_row(db, sent.delivery_id)) is None
    after = await drop_counts(db)
    assert after["unknown_message"] == before.get("unknown_message", 0) + 1


async def _message_id_header(db: Database, email_id: uuid.UUID) -> str:
    from postyard.sending.models import Message

    async with db.system_tx(reason="test") as session:
        message = await session.get(Message, email_id)
        assert message is not None
        return message.message_id_header


async def test_not_spam_feedback_is_dropped(
    mx: MxRole, db: Database, http: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    [sent] = await send(db, http, tenant, runtime)
    feedback = f"fbl@{sent.domain}"
    report = arf(feedback, sent.recipient, return_path=sent.return_path, feedback_type="not-spam")
    before = await drop_counts(db)
    reply = await talk(mx, [feedback], report)
    assert reply is not None
    assert reply[0] == 250
    assert (await drop_counts(db))["not_a_complaint"] == before.get("not_a_complaint", 0) + 1
    assert await suppression_reason(db, await delivery_row(db, sent.delivery_id)) is None


async def test_mailto_unsubscribe_suppresses(
    mx: MxRole, db: Database, http: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    [sent] = await send(db, http, tenant, runtime)
    key = intake_config(runtime.settings, runtime.secret).unsubscribe_key
    claim = tokens.MailtoUnsubscribeClaim(delivery_id=sent.delivery_id, issued_at=datetime.now(UTC))
    address = mailto_address(tokens.make_mailto_unsubscribe_token(key, claim), sent.domain)
    message = f"From: {sent.recipient}\r\nTo: {address}\r\nSubject: unsubscribe\r\n\r\n\r\n"
    exchange = await asyncio.to_thread(
        deliver, mx.port, [address], message.encode(), sent.recipient
    )
    assert exchange.data is not None
    assert exchange.data[0] == 250
    row = await delivery_row(db, sent.delivery_id)
    assert await suppression_reason(db, row) == "unsubscribe"
    kinds = [kind for kind, _ in await event_types(db, sent.email_id)]
    assert "email.unsubscribed" in kinds


async def test_forged_and_expired_unsubscribe_tokens_are_dropped(
    mx: MxRole, db: Database, http: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    [sent] = await send(db, http, tenant, runtime)
    key = intake_config(runtime.settings, runtime.secret).unsubscribe_key
    old = tokens.MailtoUnsubscribeClaim(
        delivery_id=sent.delivery_id, issued_at=datetime.now(UTC) - timedelta(days=400)
    )
    expired = mailto_address(tokens.make_mailto_unsubscribe_token(key, old), sent.domain)
    fresh = tokens.MailtoUnsubscribeClaim(delivery_id=sent.delivery_id, issued_at=datetime.now(UTC))
    forged = mailto_address(tokens.make_mailto_unsubscribe_token(b"k" * 32, fresh), sent.domain)
    before = await drop_counts(db)
    for address in (expired, forged):
        reply = await talk(mx, [address], b"Subject: unsubscribe\r\n\r\n\r\n")
        assert reply is not None
        assert reply[0] == 250
    after = await drop_counts(db)
    assert after["expired_token"] == before.get("expired_token", 0) + 1
    assert after["forged_token"] == before.get("forged_token", 0) + 1
    assert await suppression_reason(db, await delivery_row(db, sent.delivery_id)) is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"Subject: Out of office\r\n\r\nI am away until Monday.\r\n", "not_a_report"),
        (
            b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n"
            b"--x\r\nContent-Type: message/delivery-status\r\n\r\nGarbage here\r\n--x",
            "not_a_report",
        ),
        (b"\x00\xff\xfe binary \x80\x81\r\n", "not_a_report"),
    ],
)
async def test_malformed_reports_are_accepted_and_dropped(
    mx: MxRole,
    db: Database,
    http: httpx.AsyncClient,
    tenant: Tenant,
    runtime: Runtime,
    data: bytes,
    reason: str,
) -> None:
    [sent] = await send(db, http, tenant, runtime)
    before = await drop_counts(db)
    reply = await talk(mx, [sent.return_path], data)
    assert reply is not None
    assert reply[0] == 250
    assert (await drop_counts(db))[reason] == before.get(reason, 0) + 1
    row = await delivery_row(db, sent.delivery_id)
    assert row.status == "delivered"
    assert await suppression_reason(db, row) is None


async def test_report_for_a_message_never_sent_is_dropped(
    mx: MxRole, db: Database, http: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    [sent] = await send(db, http, tenant, runtime, status="queued")
    before = await drop_counts(db)
    reply = await talk(mx, [sent.return_path], dsn(sent.return_path, sent.recipient))
    assert reply is not None
    assert reply[0] == 250
    assert (await drop_counts(db))["not_sent"] == before.get("not_sent", 0) + 1
    row = await delivery_row(db, sent.delivery_id)
    assert row.status == "queued"
    assert await suppression_reason(db, row) is None


async def test_bare_line_endings_and_oversized_reports_are_refused(
    settings: Settings,
    db: Database,
    runtime: Runtime,
    tmp_path: Path,
    http: httpx.AsyncClient,
    tenant: Tenant,
) -> None:
    [sent] = await send(db, http, tenant, runtime)

    def raw_session(port: int, body: bytes) -> bytes:
        import socket

        with socket.create_connection(("127.0.0.1", port), timeout=GUARD_SECONDS) as conn:
            reader = conn.makefile("rb")
            reader.readline()
            conn.sendall(b"EHLO remote.example\r\n")
            while not reader.readline().startswith(b"250 "):
                pass
            conn.sendall(f"MAIL FROM:<>\r\nRCPT TO:<{sent.return_path}>\r\nDATA\r\n".encode())
            replies = [reader.readline() for _ in range(3)]
            assert replies[-1].startswith(b"354"), replies
            conn.sendall(body)
            return reader.readline()

    async with running_mx(
        settings, db, data_dir=tmp_path, secret=runtime.secret, max_message_bytes=2048
    ) as role:
        smuggled = b"Subject: x\r\n\r\nline\n.\nMAIL FROM:<a@b>\r\n.\r\n"
        reply = await asyncio.to_thread(raw_session, role.port, smuggled)
        assert reply.startswith(b"554 5.5.2"), reply
        big = b"Subject: x\r\n\r\n" + b"y" * 70 + (b"\r\n" + b"y" * 70) * 40 + b"\r\n.\r\n"
        reply = await asyncio.to_thread(raw_session, role.port, big)
        assert reply.startswith(b"552 5.3.4"), reply
    row = await delivery_row(db, sent.delivery_id)
    assert row.status == "delivered"


async def test_drop_counts_belong_to_the_system_role_only(owner_conn: asyncpg.Connection) -> None:
    await owner_conn.execute(f"SET LOCAL ROLE {APP_ROLE}")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await owner_conn.fetch("SELECT * FROM inbound_drops")
