"""Tests of the inbound MX listener and its report parsers, and the helpers they share.

The listener runs in the test's event loop; clients are stdlib ``smtplib`` in a worker
thread (``asyncio.to_thread``), since they block.
"""

from __future__ import annotations

import contextlib
import smtplib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from postyard.core.clock import Clock, SystemClock
from postyard.core.db import Database, TenantId
from postyard.events.models import Event
from postyard.inbound.drops import list_drops
from postyard.mxd import MxRole, mx_role
from postyard.sending.models import Delivery
from postyard.settings import MxSettings, Settings
from postyard.suppression import suppressed_among
from postyard.suppression.models import Suppression

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
