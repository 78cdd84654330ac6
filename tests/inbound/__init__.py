"""Tests of the inbound MX listener and its report parsers, and the helpers they share.

The listener runs in the test's event loop; clients are stdlib ``smtplib`` in a worker
thread (``asyncio.to_thread``), since they block.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import func, select, update

from postyard.core.clock import Clock, SystemClock
from postyard.core.db import Database, TenantId
from postyard.delivery import verp
from postyard.domains import service as domains
from postyard.events.models import Event
from postyard.inbound.drops import list_drops
from postyard.mxd import MxRole, intake_config, mx_role
from postyard.runtime import Runtime
from postyard.sending.models import Delivery
from postyard.settings import MxSettings, Settings
from postyard.suppression import suppressed_among
from postyard.suppression.models import Suppression
from tests.conftest import TEST_KEK, TEST_POLICY, Tenant

GUARD_SECONDS = 20.0


@contextlib.asynccontextmanager
async def running_mx(
    settings: Settings,
    db: Database,
    *,
    data_dir: Path,
    secret: bytes,
    clock: Clock | None = None,
    **mx: object,
) -> AsyncIterator[MxRole]:
    """The MX role on a free loopback port, with ``mx`` settings changed."""
    values: dict[str, object] = {"host": "127.0.0.1", "port": 0, "public_host": "mx.test"}
    configured = settings.model_copy(update={"mx": MxSettings(**(values | mx))})
    async with mx_role(
        configured, db, clock or SystemClock(), data_dir=data_dir, secret=secret
    ) as role:
        yield role


@dataclass(frozen=True)
class Exchange:
    """What the listener answered to each RCPT, and to DATA (None when no RCPT passed)."""

    rcpt: dict[str, tuple[int, bytes]]
    data: tuple[int, bytes] | None


def deliver(port: int, recipients: list[str], data: bytes, mail_from: str = "") -> Exchange:
    """One SMTP transaction with the listener, as a remote MTA returning a report."""
    with smtplib.SMTP("127.0.0.1", port, timeout=GUARD_SECONDS) as client:
        client.ehlo("remote.example")
        code, message = client.mail(mail_from)
        assert code == 250, message
        replies = {r: client.rcpt(r) for r in recipients}
        if not any(code == 250 for code, _ in replies.values()):
            client.rset()
            return Exchange(replies, None)
        try:
            code, message = client.data(data)
        except smtplib.SMTPDataError as exc:
            error = exc.smtp_error
            return Exchange(
                replies, (exc.smtp_code, error if isinstance(error, bytes) else error.encode())
            )
        return Exchange(replies, (code, message))


async def drop_counts(db: Database) -> dict[str, int]:
    async with db.system_tx(reason="test") as session:
        return {d.reason: d.count for d in await list_drops(session)}


async def delivery_row(db: Database, delivery_id: uuid.UUID) -> Delivery:
    async with db.system_tx(reason="test") as session:
        row = await session.scalar(select(Delivery).where(Delivery.id == delivery_id))
        assert row is not None
        session.expunge(row)
        return row


async def event_types(db: Database, message_id: uuid.UUID) -> list[tuple[str, dict[str, object]]]:
    async with db.system_tx(reason="test") as session:
        rows = await session.execute(
            select(Event.type, Event.data).where(Event.message_id == message_id).order_by(Event.seq)
        )
        return [(r.type, r.data) for r in rows]


async def suppression_reason(db: Database, delivery: Delivery) -> str | None:
    """The reason the delivery's recipient is on its tenant's list, or None."""
    tenant_id = TenantId(delivery.tenant_id)
    async with db.tenant_tx(tenant_id) as session:
        found = await suppressed_among(
            session, tenant_id, [delivery.recipient], SystemClock().now()
        )
        if delivery.recipient not in found:
            return None
        reason = await session.scalar(
            select(Suppression.reason).where(
                Suppression.tenant_id == tenant_id,
                func.lower(Suppression.email) == delivery.recipient.lower(),
            )
        )
    return str(reason)


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
