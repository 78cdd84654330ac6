"""Use cases of the email API: accept, read, reschedule, cancel.

Every function runs in the caller's tenant transaction. Accepting writes the message, its
content, one delivery row per recipient and the first event in that one transaction; the
caller wakes the workers after it commits. Once the caller's transaction commits, the message
cannot be lost, and until then nothing of it exists.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from postyard.core.db import TenantId
from postyard.core.errors import NotFound, ValidationFailed
from postyard.core.ids import parse_uuid
from postyard.core.pagination import Page, PageRequest, fetch_page
from postyard.events.service import (
    list_message_events,
    record_events,
)
from postyard.events.types import EventType, EventView, NewEvent
from postyard.sending.models import Delivery, Message
from postyard.sending.scheduling import parse_scheduled_at

WAKE_CHANNEL = "postyard_deliveries"
_PENDING = ("queued", "scheduled", "deferred")
_CANCELABLE = (*_PENDING, "held")
"""Recipients no worker holds a lease on: waiting, scheduled, retrying, or kept by a hold."""


@dataclass(frozen=True, slots=True)
class RecipientView:
    email: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_reply: str | None
    bounce_type: str | None = None


async def _require_message(session: AsyncSession, tenant_id: TenantId, email_id: str) -> Message:
    parsed = parse_uuid(email_id)
    message = None
    if parsed is not None:
        message = await session.scalar(
            select(Message).where(Message.id == parsed, Message.tenant_id == tenant_id)
        )
    if message is None:
        raise NotFound("Email not found.")
    return message


async def get_email(session: AsyncSession, tenant_id: TenantId, email_id: str) -> Message:
    """The message; raises NotFound (also for another tenant's id)."""
    return await _require_message(session, tenant_id, email_id)


async def list_emails(
    session: AsyncSession, tenant_id: TenantId, *, page: PageRequest
) -> Page[Message]:
    stmt = select(Message).where(Message.tenant_id == tenant_id)
    return await fetch_page(session, stmt, Message.id, page)


async def email_timeline(
    session: AsyncSession, tenant_id: TenantId, email_id: str
) -> tuple[list[RecipientView], list[EventView]]:
    """Each recipient's state and the message's events, oldest first."""
    message = await _require_message(session, tenant_id, email_id)
    rows = await session.scalars(
        select(Delivery)
        .where(Delivery.tenant_id == tenant_id, Delivery.message_id == message.id)
        .order_by(Delivery.recipient)
    )
    recipients = [
        RecipientView(
            email=d.recipient,
            status=d.status,
            attempts=d.attempts,
            next_attempt_at=d.next_attempt_at if d.status in _PENDING else None,
            last_reply=d.last_reply,
            bounce_type=d.bounce_type,
        )
        for d in rows
    ]
    return recipients, await list_message_events(session, tenant_id, message.id)


async def reschedule_email(
    session: AsyncSession, tenant_id: TenantId, email_id: str, scheduled_at: str, *, now: datetime
) -> uuid.UUID:
    """Move a scheduled email; raises NotFound, or ValidationFailed when it is not scheduled
    any more or the new time is invalid."""
    message = await _require_message(session, tenant_id, email_id)
    when = parse_scheduled_at(scheduled_at, now=now)
    moved = await session.execute(
        update(Delivery)
        .where(
            Delivery.tenant_id == tenant_id,
            Delivery.message_id == message.id,
            Delivery.status == "scheduled",
        )
        .values(next_attempt_at=when, updated_at=func.now())
    )
    if moved.rowcount == 0:  # type: ignore[attr-defined]
        msg = "This email is not scheduled any more (it was sent or canceled): it cannot move."
        raise ValidationFailed(msg)
    await session.execute(update(Message).where(Message.id == message.id).values(scheduled_at=when))
    await record_events(
        session,
        [
            NewEvent(
                tenant_id=tenant_id,
                type=EventType.EMAIL_SCHEDULED,
                message_id=message.id,
                data={"scheduled_at": when.isoformat()},
            )
        ],
    )
    return message.id


async def cancel_email(session: AsyncSession, tenant_id: TenantId, email_id: str) -> uuid.UUID:
    """Cancel every recipient not yet handed to a worker (held ones included: releasing
    their hold later leaves them canceled); raises NotFound, or ValidationFailed when
    nothing is left to cancel (already sent, bounced or canceled)."""
    message = await _require_message(session, tenant_id, email_id)
    canceled = await session.execute(
        update(Delivery)
        .where(
            Delivery.tenant_id == tenant_id,
            Delivery.message_id == message.id,
            Delivery.status.in_(_CANCELABLE),
        )
        .values(status="canceled", held_by=None, updated_at=func.now())
    )
    if canceled.rowcount == 0:  # type: ignore[attr-defined]
        msg = "This email cannot be canceled: it was already sent or canceled."
        raise ValidationFailed(msg)
    await record_events(
        session,
        [NewEvent(tenant_id=tenant_id, type=EventType.EMAIL_CANCELED, message_id=message.id)],
    )
    return message.id
