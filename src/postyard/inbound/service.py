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

from postyard.events.service import record_events
from postyard.events.types import EventType, NewEvent
from postyard.inbound.classify import SubType, Verdict, classify
from postyard.inbound.types import Action, BounceReport, ComplaintReport, RecipientStatus
from postyard.sending import feedback
from postyard.sending.feedback import DeliveryRef
from postyard.suppression import SuppressionReason, suppress


class Effect(StrEnum):
    BOUNCED = "bounced"
    DELAYED = "delayed"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
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


def _bounce_type(verdict: Verdict) -> str:
    """The delivery's ``bounce_type``: a policy block is not the address's fault."""
    return "block" if verdict.sub_type is SubType.CONTENT_REJECTED else "permanent"


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
    ``email.bounced`` is written with the diagnostic, and the address is suppressed
    (``hard_bounce``) when the classification says so; a repeated report changes nothing
    at all. ``delayed``: an ``email.delivery_delayed`` event only.
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
    verdict = classify(block)
    reply = block.diagnostic or f"DSN status {block.status}"
    if not await feedback.mark_bounced(
        session, current.tenant_id, current.id, reply=reply, bounce_type=_bounce_type(verdict)
    ):
        # Already bounced: a repeated (or retried) report changes nothing, so that an
        # address the tenant took off the list since is not put back.
        return Applied(Effect.BOUNCED)
    bounce = {"type": verdict.type.value, "subType": verdict.sub_type.value, "message": reply}
    data = {"bounce": bounce, "reply": reply, **details}
    await record_events(session, [_event(current, EventType.EMAIL_BOUNCED, data)])
    await feedback.set_last_event(
        session, current.tenant_id, current.message_id, EventType.EMAIL_BOUNCED.short
    )
    if verdict.suppress:
        await suppress(
            session,
            current.tenant_id,
            current.recipient,
            SuppressionReason.HARD_BOUNCE,
            now=now,
            source_email_id=current.message_id,
            detail=reply[:500],
        )
    return Applied(Effect.BOUNCED, suppressed=verdict.suppress)


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
    await feedback.set_last_event(
        session, current.tenant_id, current.message_id, EventType.EMAIL_COMPLAINED.short
    )
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


async def apply_unsubscribe(
    session: AsyncSession, target: DeliveryRef, *, now: datetime
) -> Applied:
    """A mailto unsubscribe (RFC 2369) from ``target``'s recipient: suppression
    (``unsubscribe``) and an ``email.unsubscribed`` event."""
    current = await _locked(session, target)
    if current is None:
        return Applied(Effect.GONE)
    await record_events(
        session, [_event(current, EventType.EMAIL_UNSUBSCRIBED, {"method": "mailto"})]
    )
    await suppress(
        session,
        current.tenant_id,
        current.recipient,
        SuppressionReason.UNSUBSCRIBE,
        now=now,
        source_email_id=current.message_id,
        detail="mailto unsubscribe",
    )
    return Applied(Effect.UNSUBSCRIBED, suppressed=True)
