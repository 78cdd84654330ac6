"""Use cases of the email API: accept, read, reschedule, cancel.

Every function runs in the caller's tenant transaction. Accepting writes the message, its
content, one delivery row per recipient and the first event in that one transaction; the
caller wakes the workers after it commits. Once the caller's transaction commits, the message
cannot be lost, and until then nothing of it exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from postyard.core.db import TenantId, table_of
from postyard.core.errors import NotFound, ValidationFailed
from postyard.core.ids import parse_uuid
from postyard.core.pagination import Page, PageRequest, fetch_page
from postyard.domains import senders as domains
from postyard.events.service import list_message_events, record_events
from postyard.events.types import EventType, EventView, NewEvent
from postyard.sending.compose import ComposedMessage
from postyard.sending.errors import DomainNotVerified
from postyard.sending.models import Delivery, Message, MessageContent
from postyard.sending.scheduling import parse_scheduled_at
from postyard.sending.tracked import apply_tracking
from postyard.suppression import suppression_reasons
from postyard.tenancy.types import Principal
from postyard.tracking.service import NewTrackedMessage, record_tracked_messages
from postyard.tracking.types import Stream, TrackingConfig

WAKE_CHANNEL = "postyard_deliveries"
_PENDING = ("queued", "scheduled", "deferred")


@dataclass(frozen=True, slots=True)
class RecipientView:
    email: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_reply: str | None
    bounce_type: str | None = None


async def submit_messages(
    session: AsyncSession,
    principal: Principal,
    messages: list[ComposedMessage],
    *,
    source: str = "api",
    now: datetime | None = None,
    tracking: TrackingConfig | None = None,
) -> None:
    # One multi-row INSERT per table whatever the batch size: a batch of 100 costs about
    # what one email costs in round trips.
    """Write composed messages to the ledger (multi-row inserts). With ``tracking``, each
    message is first tracked as its domain and options ask (``sending.tracked``). The
    caller wakes the workers after its commit (``core.notify.Waker``)."""
    if not messages:
        return
    tenant = principal.tenant_id
    # executemany takes values, not SQL expressions: queued rows are due at the caller's
    # clock (saves a round trip; a skew between hosts only shifts the first attempt by it).
    if now is None:
        now = await session.scalar(select(func.now()))
        assert now is not None  # SELECT now() always returns a row
    tracked: list[NewTrackedMessage] = []
    if tracking is not None:
        messages, tracked = await apply_tracking(session, tenant, messages, tracking, now=now)
    conn = await session.connection()
    # One query for every recipient of the batch; a suppressed recipient gets a row that no
    # worker claims, and the message still goes to the others.
    suppressed = await suppression_reasons(
        session, tenant, [r.address for m in messages for r in m.recipients], now
    )
    # Core inserts on the connection: the ORM's bulk machinery costs more than the SQL here.
    await conn.execute(
        insert(table_of(Message)),
        [
            {
                "id": m.id,
                "tenant_id": tenant,
                "api_key_id": principal.api_key_id,
                "source": source,
                "stream": m.stream.value,
                "sender": m.sender,
                "from_domain": m.sender_domain,
                "envelope_from": m.envelope_from,
                "subject": m.subject,
                "to_addrs": list(m.to),
                "cc_addrs": list(m.cc),
                "bcc_addrs": list(m.bcc),
                "reply_to_addrs": list(m.reply_to),
                "html": m.html,
                "text": m.text,
                "tags": [{"name": t.name, "value": t.value} for t in m.tags],
                "message_id_header": m.message_id_header,
                "size": len(m.raw),
                "smtputf8": m.smtputf8,
                "scheduled_at": m.scheduled_at,
                "last_event": _first_event(m, suppressed).short,
            }
            for m in messages
        ],
    )
    await conn.execute(
        insert(table_of(MessageContent)),
        [{"message_id": m.id, "tenant_id": tenant, "raw": m.raw} for m in messages],
    )
    await conn.execute(
        insert(table_of(Delivery)),
        [
            {
                "id": r.id,
                "tenant_id": tenant,
                "message_id": m.id,
                "recipient": r.address,
                "domain": r.domain,
                "kind": r.kind,
                "bulk": m.stream is Stream.BULK,
                "status": (
                    "suppressed"
                    if r.address in suppressed
                    else "scheduled"
                    if m.scheduled_at
                    else "queued"
                ),
                "next_attempt_at": m.scheduled_at or now,
                "last_reply": (
                    f"suppressed ({suppressed[r.address]})" if r.address in suppressed else None
                ),
            }
            for m in messages
            for r in m.recipients
        ],
    )
    await record_events(
        session,
        [
            NewEvent(
                tenant_id=tenant,
                type=EventType.EMAIL_SCHEDULED if m.scheduled_at else EventType.EMAIL_SENT,
                message_id=m.id,
                data={"scheduled_at": m.scheduled_at.isoformat()} if m.scheduled_at else {},
            )
            for m in messages
        ]
        + [
            NewEvent(
                tenant_id=tenant,
                type=EventType.EMAIL_SUPPRESSED,
                message_id=m.id,
                recipient=r.address,
                data={"reason": suppressed[r.address].value},
            )
            for m in messages
            for r in m.recipients
            if r.address in suppressed
        ],
    )
    await record_tracked_messages(session, tenant, tracked)


def _first_event(message: ComposedMessage, suppressed: Mapping[str, object]) -> EventType:
    if all(r.address in suppressed for r in message.recipients):
        return EventType.EMAIL_SUPPRESSED
    return EventType.EMAIL_SCHEDULED if message.scheduled_at else EventType.EMAIL_SENT


async def require_verified_senders(
    session: AsyncSession, tenant_id: TenantId, messages: list[ComposedMessage]
) -> None:
    """Raise DomainNotVerified unless every message's From domain is a verified domain of the
    tenant (the rule POSTYARD_SENDING__REQUIRE_VERIFIED_DOMAIN switches on)."""
    for domain in sorted({m.sender_domain for m in messages}):
        if not await domains.is_verified_sender(session, tenant_id, domain):
            msg = (
                f"The {domain} domain is not verified. Add it with POST /v1/domains, publish "
                "its DNS records and verify it, or send from a verified domain."
            )
            raise DomainNotVerified(msg)


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
    """Cancel every recipient not yet handed to a worker; raises NotFound, or
    ValidationFailed when nothing is left to cancel (already sent, bounced or canceled)."""
    message = await _require_message(session, tenant_id, email_id)
    canceled = await session.execute(
        update(Delivery)
        .where(
            Delivery.tenant_id == tenant_id,
            Delivery.message_id == message.id,
            Delivery.status.in_(_PENDING),
        )
        .values(status="canceled", updated_at=func.now())
    )
    if canceled.rowcount == 0:  # type: ignore[attr-defined]
        msg = "This email cannot be canceled: it was already sent or canceled."
        raise ValidationFailed(msg)
    await session.execute(
        update(Message)
        .where(Message.id == message.id)
        .values(last_event=EventType.EMAIL_CANCELED.short, updated_at=func.now())
    )
    await record_events(
        session,
        [NewEvent(tenant_id=tenant_id, type=EventType.EMAIL_CANCELED, message_id=message.id)],
    )
    return message.id
