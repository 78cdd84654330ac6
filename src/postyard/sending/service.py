"""Use cases of the email API: accept, read, reschedule, cancel.

Every function runs in the caller's tenant transaction. Accepting writes the message, its
content, one delivery row per recipient and the first event in that one transaction; the
caller wakes the workers after it commits. Once the caller's transaction commits, the message
cannot be lost, and until then nothing of it exists.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from postyard.core.db import DriverStatement, TenantId, driver_connection
from postyard.core.errors import NotFound, ValidationFailed
from postyard.core.ids import parse_uuid
from postyard.core.pagination import Page, PageRequest, fetch_page
from postyard.domains import senders as domains
from postyard.events.service import (
    INSERT_EVENTS_SQL,
    event_columns,
    list_message_events,
    record_events,
)
from postyard.events.types import EventType, EventView, NewEvent
from postyard.sending.compose import ComposedMessage
from postyard.sending.errors import DomainNotVerified
from postyard.sending.models import Delivery, Message
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


# The whole accepted batch in one statement (one round trip whatever its size): the
# messages, their contents, one delivery per recipient and the first event of each message.
# Foreign keys are checked at the end of the statement, so the CTEs' order does not matter,
# and every data-modifying CTE runs exactly once whether or not anything reads it.
_ACCEPT = DriverStatement.of(
    f"""
    WITH m AS (
        INSERT INTO messages (id, tenant_id, api_key_id, source, stream, sender, from_domain,
                              envelope_from, subject, to_addrs, cc_addrs, bcc_addrs,
                              reply_to_addrs, html, text, tags, message_id_header, size,
                              smtputf8, scheduled_at, last_event)
        SELECT v.id, CAST(:tenant_id AS uuid), CAST(:api_key_id AS uuid), CAST(:source AS text),
               v.stream, v.sender, v.from_domain, v.envelope_from, v.subject,
               ARRAY(SELECT jsonb_array_elements_text(CAST(v.to_addrs AS jsonb))),
               ARRAY(SELECT jsonb_array_elements_text(CAST(v.cc_addrs AS jsonb))),
               ARRAY(SELECT jsonb_array_elements_text(CAST(v.bcc_addrs AS jsonb))),
               ARRAY(SELECT jsonb_array_elements_text(CAST(v.reply_to_addrs AS jsonb))),
               v.html, v.text, CAST(v.tags AS jsonb), v.message_id_header, v.size,
               v.smtputf8, v.scheduled_at, v.last_event
          FROM unnest(CAST(:ids AS uuid[]), CAST(:streams AS text[]),
                      CAST(:senders AS text[]), CAST(:from_domains AS text[]),
                      CAST(:envelope_froms AS text[]),
                      CAST(:subjects AS text[]), CAST(:to_addrs AS text[]),
                      CAST(:cc_addrs AS text[]), CAST(:bcc_addrs AS text[]),
                      CAST(:reply_to_addrs AS text[]), CAST(:htmls AS text[]),
                      CAST(:texts AS text[]), CAST(:tags AS text[]),
                      CAST(:message_id_headers AS text[]), CAST(:sizes AS integer[]),
                      CAST(:smtputf8s AS boolean[]), CAST(:scheduled_ats AS timestamptz[]),
                      CAST(:last_events AS text[]))
               AS v(id, stream, sender, from_domain, envelope_from, subject, to_addrs,
                    cc_addrs, bcc_addrs, reply_to_addrs, html, text, tags, message_id_header,
                    size, smtputf8, scheduled_at, last_event)
    ), c AS (
        INSERT INTO message_contents (message_id, tenant_id, raw)
        SELECT c.message_id, CAST(:tenant_id AS uuid), c.raw
          FROM unnest(CAST(:ids AS uuid[]), CAST(:raws AS bytea[])) AS c(message_id, raw)
    ), d AS (
        INSERT INTO deliveries (id, tenant_id, message_id, recipient, domain, kind, bulk,
                                status, next_attempt_at, last_reply)
        SELECT d.id, CAST(:tenant_id AS uuid), d.message_id, d.recipient, d.domain, d.kind,
               d.bulk, d.status, d.next_attempt_at, d.last_reply
          FROM unnest(CAST(:delivery_ids AS uuid[]), CAST(:delivery_messages AS uuid[]),
                      CAST(:recipients AS text[]), CAST(:domains AS text[]),
                      CAST(:kinds AS text[]), CAST(:bulks AS boolean[]),
                      CAST(:statuses AS text[]), CAST(:next_attempt_ats AS timestamptz[]),
                      CAST(:last_replies AS text[]))
               AS d(id, message_id, recipient, domain, kind, bulk, status, next_attempt_at,
                    last_reply)
    ){INSERT_EVENTS_SQL}"""  # noqa: S608 - a constant of the events module, no input
)


async def submit_messages(
    session: AsyncSession,
    principal: Principal,
    messages: list[ComposedMessage],
    *,
    source: str = "api",
    now: datetime | None = None,
    tracking: TrackingConfig | None = None,
) -> None:
    """Write composed messages to the ledger: the messages, their contents, one delivery per
    recipient (due at ``now``, the database's time when None, or when scheduled; a suppressed
    recipient gets a ``suppressed`` row no worker claims) and the events, in one statement
    after the suppression look-up. With ``tracking``, each message is first tracked as its
    domain and options ask (``sending.tracked``). The caller wakes the workers after its
    commit (``core.notify.Waker``)."""
    if not messages:
        return
    tenant = principal.tenant_id
    # Values, not SQL expressions: queued rows are due at the caller's clock (saves a round
    # trip; a skew between hosts only shifts the first attempt by it).
    if now is None:
        now = await session.scalar(select(func.now()))
        assert now is not None  # SELECT now() always returns a row
    tracked: list[NewTrackedMessage] = []
    if tracking is not None:
        messages, tracked = await apply_tracking(session, tenant, messages, tracking, now=now)
    # One query for every recipient of the batch; a suppressed recipient gets a row that no
    # worker claims, and the message still goes to the others.
    suppressed = await suppression_reasons(
        session, tenant, [r.address for m in messages for r in m.recipients], now
    )
    deliveries = [(m, r) for m in messages for r in m.recipients]
    events = [
        NewEvent(
            tenant_id=tenant,
            type=EventType.EMAIL_SCHEDULED if m.scheduled_at else EventType.EMAIL_SENT,
            message_id=m.id,
            data={"scheduled_at": m.scheduled_at.isoformat()} if m.scheduled_at else {},
        )
        for m in messages
    ] + [
        NewEvent(
            tenant_id=tenant,
            type=EventType.EMAIL_SUPPRESSED,
            message_id=m.id,
            recipient=r.address,
            data={"reason": suppressed[r.address].value},
        )
        for m, r in deliveries
        if r.address in suppressed
    ]
    params: dict[str, Any] = {
        "tenant_id": tenant,
        "api_key_id": principal.api_key_id,
        "source": source,
        "ids": [m.id for m in messages],
        "streams": [m.stream.value for m in messages],
        "senders": [m.sender for m in messages],
        "from_domains": [m.sender_domain for m in messages],
        "envelope_froms": [m.envelope_from for m in messages],
        "subjects": [m.subject for m in messages],
        "to_addrs": [json.dumps(m.to) for m in messages],
        "cc_addrs": [json.dumps(m.cc) for m in messages],
        "bcc_addrs": [json.dumps(m.bcc) for m in messages],
        "reply_to_addrs": [json.dumps(m.reply_to) for m in messages],
        "htmls": [m.html for m in messages],
        "texts": [m.text for m in messages],
        "tags": [
            json.dumps([{"name": t.name, "value": t.value} for t in m.tags]) for m in messages
        ],
        "message_id_headers": [m.message_id_header for m in messages],
        "sizes": [len(m.raw) for m in messages],
        "smtputf8s": [m.smtputf8 for m in messages],
        "scheduled_ats": [m.scheduled_at for m in messages],
        "last_events": [_first_event(m, suppressed).short for m in messages],
        "raws": [m.raw for m in messages],
        "delivery_ids": [r.id for _, r in deliveries],
        "delivery_messages": [m.id for m, _ in deliveries],
        "recipients": [r.address for _, r in deliveries],
        "domains": [r.domain for _, r in deliveries],
        "kinds": [r.kind for _, r in deliveries],
        "bulks": [m.stream is Stream.BULK for m, _ in deliveries],
        "statuses": [
            "suppressed" if r.address in suppressed else "scheduled" if m.scheduled_at else "queued"
            for m, r in deliveries
        ],
        "next_attempt_ats": [m.scheduled_at or now for m, _ in deliveries],
        "last_replies": [
            f"suppressed ({suppressed[r.address]})" if r.address in suppressed else None
            for _, r in deliveries
        ],
        **event_columns(events),
    }
    # On the session's own connection and transaction, without SQLAlchemy's per-statement
    # work: the largest statement of the API's hottest path (core.db.driver_connection).
    driver = await driver_connection(session)
    await driver.execute(_ACCEPT.sql, *_ACCEPT.arguments(params))
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
