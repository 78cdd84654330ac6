"""Recording a batch's outcomes: every recipient's status and reply, and its event, in one
statement (one round trip however large the batch). The message row is not touched: its
``last_event`` is read from the events (``sending/last_event.py``).

Runs in the worker's ``system_tx``: the events are written in the same transaction as the
status changes they describe, and hard bounces are suppressed in it too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from postyard.core.json_rows import json_rows
from postyard.core.text import storable
from postyard.events.service import INSERT_EVENTS_SQL, event_rows
from postyard.events.types import EventType, NewEvent
from postyard.sending.ledger import DeliveryResult, Result
from postyard.suppression import SuppressionReason, suppress

EVENT_OF = {
    Result.DELIVERED: EventType.EMAIL_DELIVERED,
    Result.DEFERRED: EventType.EMAIL_DELIVERY_DELAYED,
    Result.BOUNCED: EventType.EMAIL_BOUNCED,
    Result.FAILED: EventType.EMAIL_FAILED,
    Result.SUPPRESSED: EventType.EMAIL_SUPPRESSED,
}

# Only rows still leased to this worker change (a lease that expired belongs to whoever took
# the row since), and only their events are written, in the batch's order (an email's last
# event is its latest). Data-modifying CTEs each run once.
_RECORD = text(
    f"""
    WITH v AS (
        SELECT *
          FROM json_to_recordset(CAST(:results AS json))
               AS v(id uuid, status text, reply text, next_attempt_at timestamptz,
                    bounce_type text, event_id uuid)
    ), r AS (
        UPDATE deliveries d
           SET status = v.status, last_reply = v.reply, bounce_type = v.bounce_type,
               next_attempt_at = coalesce(v.next_attempt_at, d.next_attempt_at),
               lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
          FROM v
         WHERE d.id = v.id AND d.status = 'sending' AND d.lease_owner = :owner
        RETURNING d.id, v.event_id
    ), recorded_events AS ({INSERT_EVENTS_SQL}
         WHERE e.id IN (SELECT event_id FROM r)
    )
    SELECT id FROM r
    """  # noqa: S608 - a constant of the events module, no input
)


async def record_results(
    session: AsyncSession, results: Sequence[DeliveryResult], *, owner: str, now: datetime
) -> int:
    """Store each recipient's outcome and its event, and suppress the address of every
    permanent bounce (reason ``hard_bounce``, this message as the source) in the same
    transaction; rows whose lease this worker lost (it expired and another worker took them)
    are left to that worker. Returns rows recorded."""
    if not results:
        return 0
    results = [_storable(r) for r in results]
    events = event_rows(
        [
            NewEvent(
                tenant_id=r.delivery.tenant_id,
                type=EVENT_OF[r.result],
                message_id=r.delivery.message_id,
                recipient=r.delivery.recipient,
                data=event_data(r),
            )
            for r in results
        ]
    )
    rows = await session.execute(
        _RECORD,
        {
            "owner": owner,
            "results": json_rows(_result_rows(results, events)),
            "events": json_rows(events),
        },
    )
    recorded = set(rows.scalars())
    kept = [r for r in results if r.delivery.id in recorded]
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
    return len(kept)


def _storable(r: DeliveryResult) -> DeliveryResult:
    """``r`` with a reply PostgreSQL can keep (``storable``: a remote server's reply may hold
    bytes that are not UTF-8, or NUL)."""
    reply = storable(r.reply)
    return r if reply is r.reply else dataclasses.replace(r, reply=reply)


def _result_rows(
    results: Sequence[DeliveryResult], events: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The statement's ``:results`` (pure): each outcome with its event's id, in order."""
    return [
        {
            "id": r.delivery.id,
            "status": r.result.value,
            "reply": r.reply,
            "next_attempt_at": r.next_attempt_at,
            "bounce_type": r.bounce.type if r.bounce else None,
            "event_id": event["id"],
        }
        for r, event in zip(results, events, strict=True)
    ]


def event_data(r: DeliveryResult) -> dict[str, object]:
    """The ``data`` of a result's event (pure)."""
    data: dict[str, object] = {"reply": r.reply, "attempt": r.delivery.attempts}
    if r.suppression_reason is not None:
        data["reason"] = r.suppression_reason
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
