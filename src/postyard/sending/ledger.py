"""The delivery ledger as the workers see it: claim due recipients under a lease, record each
recipient's outcome (with its event), release or recover leases.

All functions take a ``system_tx`` session: workers serve every tenant. Rows are never deleted
to recover: a lease that expires puts its row back in the queue.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import Uuid

from postyard.core.db import TenantId
from postyard.events.service import record_events
from postyard.events.types import EventType, NewEvent
from postyard.suppression import SuppressionReason, suppress


class Result(StrEnum):
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    FAILED = "failed"


_EVENT_OF = {
    Result.DELIVERED: EventType.EMAIL_DELIVERED,
    Result.DEFERRED: EventType.EMAIL_DELIVERY_DELAYED,
    Result.BOUNCED: EventType.EMAIL_BOUNCED,
    Result.FAILED: EventType.EMAIL_FAILED,
}


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    id: uuid.UUID
    tenant_id: TenantId
    message_id: uuid.UUID
    recipient: str
    domain: str
    attempts: int
    first_attempt_at: datetime


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    id: uuid.UUID
    tenant_id: TenantId
    envelope_from: str
    from_domain: str
    smtputf8: bool
    raw: bytes


@dataclass(frozen=True, slots=True)
class Bounce:
    """How a bounce was classified (``delivery.classify``): ``type`` is ours (``permanent``
    suppresses the address; ``block`` is kept for shaping), ``resend_type`` and ``sub_type``
    are Resend's ``bounce.type`` and ``bounce.subType``."""

    type: str
    category: str
    resend_type: str
    sub_type: str

    @property
    def suppresses(self) -> bool:
        return self.type == "permanent"


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    delivery: ClaimedDelivery
    result: Result
    reply: str
    next_attempt_at: datetime | None = None
    bounce: Bounce | None = None


_CLAIM = text(
    """
    WITH due AS (
        SELECT id FROM deliveries
         WHERE status IN ('queued', 'scheduled', 'deferred') AND next_attempt_at <= now()
         ORDER BY next_attempt_at
         LIMIT :limit
         FOR UPDATE SKIP LOCKED
    )
    UPDATE deliveries d
       SET status = 'sending', lease_owner = :owner,
           lease_expires_at = now() + CAST(:lease AS interval),
           attempts = d.attempts + 1, last_attempt_at = now(),
           first_attempt_at = coalesce(d.first_attempt_at, now()), updated_at = now()
      FROM due
     WHERE d.id = due.id
    RETURNING d.id, d.tenant_id, d.message_id, d.recipient, d.domain, d.attempts,
              d.first_attempt_at
    """
)
_MESSAGES = text(
    """
    SELECT m.id, m.tenant_id, m.envelope_from, m.from_domain, m.smtputf8, c.raw
      FROM messages m JOIN message_contents c ON c.message_id = m.id
     WHERE m.id = ANY(:ids)
    """
).bindparams(bindparam("ids", type_=ARRAY(Uuid())))
_RECORD = text(
    """
    UPDATE deliveries d
       SET status = v.status, last_reply = v.reply, bounce_type = v.bounce_type,
           next_attempt_at = coalesce(v.next_attempt_at, d.next_attempt_at),
           lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
      FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:replies AS text[]),
                  CAST(:nexts AS timestamptz[]), CAST(:bounce_types AS text[]))
           AS v(id, status, reply, next_attempt_at, bounce_type)
     WHERE d.id = v.id AND d.status = 'sending' AND d.lease_owner = :owner
    RETURNING d.id
    """
)
_LAST_EVENT = text(
    """
    UPDATE messages m SET last_event = v.last_event, updated_at = now()
      FROM unnest(CAST(:ids AS uuid[]), CAST(:events AS text[])) AS v(id, last_event)
     WHERE m.id = v.id
    """
)
_RELEASE = text(
    """
    UPDATE deliveries
       SET status = 'queued', attempts = greatest(attempts - 1, 0), lease_owner = NULL,
           lease_expires_at = NULL, next_attempt_at = now(), updated_at = now()
     WHERE status = 'sending' AND lease_owner = :owner AND id = ANY(:ids)
    """
).bindparams(bindparam("ids", type_=ARRAY(Uuid())))
_RECOVER = text(
    """
    UPDATE deliveries
       SET status = 'deferred', lease_owner = NULL, lease_expires_at = NULL,
           next_attempt_at = now(), updated_at = now(),
           last_reply = 'lease expired: the worker stopped before recording a result'
     WHERE status = 'sending' AND lease_expires_at < now()
    """
)


async def claim_due(
    session: AsyncSession, *, owner: str, limit: int, lease: timedelta
) -> tuple[list[ClaimedDelivery], dict[uuid.UUID, OutboundMessage]]:
    """Lease up to ``limit`` due recipients (oldest due first) and load their messages."""
    rows = (await session.execute(_CLAIM, {"owner": owner, "limit": limit, "lease": lease})).all()
    claimed = [
        ClaimedDelivery(
            id=r.id,
            tenant_id=TenantId(r.tenant_id),
            message_id=r.message_id,
            recipient=r.recipient,
            domain=r.domain,
            attempts=r.attempts,
            first_attempt_at=r.first_attempt_at,
        )
        for r in rows
    ]
    if not claimed:
        return [], {}
    message_rows = await session.execute(_MESSAGES, {"ids": list({c.message_id for c in claimed})})
    messages = {
        r.id: OutboundMessage(
            id=r.id,
            tenant_id=TenantId(r.tenant_id),
            envelope_from=r.envelope_from,
            from_domain=r.from_domain,
            smtputf8=r.smtputf8,
            raw=r.raw,
        )
        for r in message_rows
    }
    return claimed, messages


async def record_results(
    session: AsyncSession, results: Sequence[DeliveryResult], *, owner: str, now: datetime
) -> int:
    """Store each recipient's outcome and its event, and suppress the address of every
    permanent bounce (reason ``hard_bounce``, this message as the source) in the same
    transaction; rows whose lease this worker lost (it expired and another worker took them)
    are left to that worker. Returns rows recorded."""
    if not results:
        return 0
    recorded = set(
        (
            await session.execute(
                _RECORD,
                {
                    "owner": owner,
                    "ids": [r.delivery.id for r in results],
                    "statuses": [r.result.value for r in results],
                    "replies": [r.reply for r in results],
                    "nexts": [r.next_attempt_at for r in results],
                    "bounce_types": [r.bounce.type if r.bounce else None for r in results],
                },
            )
        ).scalars()
    )
    kept = [r for r in results if r.delivery.id in recorded]
    await record_events(
        session,
        [
            NewEvent(
                tenant_id=r.delivery.tenant_id,
                type=_EVENT_OF[r.result],
                message_id=r.delivery.message_id,
                recipient=r.delivery.recipient,
                data=_event_data(r),
            )
            for r in kept
        ],
    )
    # Hard bounces are rare next to deliveries: one upsert each keeps suppress() the only
    # writer of the list.
    for r in kept:
        if r.bounce is not None and r.bounce.suppresses:
            await suppress(
                session,
                r.delivery.tenant_id,
                r.delivery.recipient,
                SuppressionReason.HARD_BOUNCE,
                now=now,
                source_email_id=r.delivery.message_id,
                detail=r.reply,
            )
    last: dict[uuid.UUID, str] = {}
    for r in kept:
        last[r.delivery.message_id] = _EVENT_OF[r.result].short
    if last:
        await session.execute(_LAST_EVENT, {"ids": list(last), "events": list(last.values())})
    return len(kept)


def _event_data(r: DeliveryResult) -> dict[str, object]:
    data: dict[str, object] = {"reply": r.reply, "attempt": r.delivery.attempts}
    if r.next_attempt_at:
        data["next_attempt_at"] = r.next_attempt_at.isoformat()
    if r.bounce is not None:
        # Resend's shape (``bounce.type``/``subType``/``message``) plus our own class.
        data["bounce"] = {
            "type": r.bounce.resend_type,
            "subType": r.bounce.sub_type,
            "message": r.reply,
        }
        data["bounce_type"] = r.bounce.type
        data["bounce_category"] = r.bounce.category
    return data


async def release(session: AsyncSession, ids: Sequence[uuid.UUID], *, owner: str) -> None:
    """Give back leases that were never attempted (graceful shutdown)."""
    if ids:
        await session.execute(_RELEASE, {"owner": owner, "ids": list(ids)})


async def recover_expired_leases(session: AsyncSession) -> int:
    """Requeue recipients whose worker died (its lease expired). Returns how many."""
    result = await session.execute(_RECOVER)
    return int(result.rowcount)  # type: ignore[attr-defined]
