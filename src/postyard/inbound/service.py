"""The effects of one report on one delivery, inside that delivery's tenant transaction.

Each function locks the delivery first, so two reports for it apply one after the other,
and writes the state change, its event and the suppression together: all or nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from postyard.delivery.classify import Classification, classify
from postyard.events.service import record_events
from postyard.events.types import EventType, NewEvent
from postyard.inbound.types import Action, BounceReport, ComplaintReport, RecipientStatus
from postyard.sending import feedback
from postyard.sending.feedback import DeliveryRef
from postyard.suppression import SuppressionReason, suppress


class Effect(StrEnum):
    BOUNCED = "bounced"
    DELAYED = "delayed"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    """(Applied by tracking's unsubscribe, the same as a one-click POST.)"""
    NOT_SENT = "not_sent"
    """Nothing done: the delivery was never attempted (or was canceled)."""
    GONE = "gone"
    """Nothing done: the delivery disappeared between lookup and lock."""


@dataclass(frozen=True, slots=True)
class Applied:
    effect: Effect
    suppressed: bool = False


def recipient_status_for(report: BounceReport, recipient: str) -> RecipientStatus:
    """The block of ``report`` about ``recipient`` (final or original recipient, any case);
    else the first failed block, else the first (VERP already named the recipient)."""
    wanted = recipient.lower()
    for block in report.recipients:
        names = {(block.final_recipient or "").lower(), (block.original_recipient or "").lower()}
        if wanted in names:
            return block
    failed = [b for b in report.recipients if b.action is Action.FAILED]
    return failed[0] if failed else report.recipients[0]


def classify_report(block: RecipientStatus) -> Classification:
    """A failure report's class, by the same table as refusals at send time
    (``delivery.classify``): the diagnostic's text first, then the RFC 3463 status. A
    ``failed`` report with a 4.x.x status (retries expired) is transient: not suppressed."""
    return classify(block.diagnostic or "", enhanced=block.status)


async def _locked(session: AsyncSession, target: DeliveryRef) -> DeliveryRef | None:
    return await feedback.lock_delivery(session, target.tenant_id, target.id)


def _event(target: DeliveryRef, kind: EventType, data: dict[str, Any]) -> NewEvent:
    return NewEvent(
        tenant_id=target.tenant_id,
        type=kind,
        message_id=target.message_id,
        recipient=target.recipient,
        data=data,
    )


async def apply_bounce(
    session: AsyncSession, target: DeliveryRef, report: BounceReport, *, now: datetime
) -> Applied:
    """A failure or delay report for ``target``. ``failed``: the delivery becomes
    ``bounced`` (also after ``delivered``: the remote end accepted it, then gave up),
    ``email.bounced`` is written with the diagnostic and the class of ``delivery.classify``,
    and the address is suppressed (``hard_bounce``) when that class is ``permanent``; a
    repeated report changes nothing at all. ``delayed``: an ``email.delivery_delayed``
    event only.
    Reports for a delivery never attempted or canceled do nothing (``NOT_SENT``)."""
    current = await _locked(session, target)
    if current is None:
        return Applied(Effect.GONE)
    block = recipient_status_for(report, current.recipient)
    if current.attempts == 0 or current.status in {"queued", "scheduled", "canceled"}:
        return Applied(Effect.NOT_SENT)
    details: dict[str, Any] = {
        "status": block.status,
        "diagnostic_code": block.diagnostic,
        "reporting_mta": report.reporting_mta,
        "remote_mta": block.remote_mta,
        "final_recipient": block.final_recipient,
        "format": report.format,
        "source": "dsn",
    }
    if block.action is not Action.FAILED:
        await record_events(session, [_event(current, EventType.EMAIL_DELIVERY_DELAYED, details)])
        return Applied(Effect.DELAYED)
    found = classify_report(block)
    reply = block.diagnostic or f"DSN status {block.status}"
    if not await feedback.mark_bounced(
        session, current.tenant_id, current.id, reply=reply, bounce_type=found.type.value
    ):
        # Already bounced: a repeated (or retried) report changes nothing, so that an
        # address the tenant took off the list since is not put back.
        return Applied(Effect.BOUNCED)
    data = {
        # Resend's shape (as for refusals at send time) plus our class and the DSN's fields.
        "bounce": {"type": found.resend_type, "subType": found.sub_type, "message": reply},
        "bounce_type": found.type.value,
        "bounce_category": found.category.value,
        "reply": reply,
        **details,
    }
    await record_events(session, [_event(current, EventType.EMAIL_BOUNCED, data)])
    if found.suppresses:
        await suppress(
            session,
            current.tenant_id,
            current.recipient,
            SuppressionReason.HARD_BOUNCE,
            now=now,
            source_email_id=current.message_id,
            detail=reply[:500],
        )
    return Applied(Effect.BOUNCED, suppressed=found.suppresses)


async def apply_complaint(
    session: AsyncSession, target: DeliveryRef, report: ComplaintReport, *, now: datetime
) -> Applied:
    """A complaint about ``target``: ``email.complained`` and suppression (``complaint``).
    The delivery's status stays what it was (the mail was delivered)."""
    current = await _locked(session, target)
    if current is None:
        return Applied(Effect.GONE)
    if current.attempts == 0:
        return Applied(Effect.NOT_SENT)
    data = {
        "feedback_type": report.feedback_type,
        "user_agent": report.user_agent,
        "source_ip": report.source_ip,
        "arrival_date": report.arrival_date,
        "source": "arf",
    }
    await record_events(session, [_event(current, EventType.EMAIL_COMPLAINED, data)])
    await suppress(
        session,
        current.tenant_id,
        current.recipient,
        SuppressionReason.COMPLAINT,
        now=now,
        source_email_id=current.message_id,
        detail=f"feedback-type {report.feedback_type}",
    )
    return Applied(Effect.COMPLAINED, suppressed=True)
