"""Use cases of the tracking domain: remember what a message tracks, record opens, clicks
and unsubscribes, and count them.

Every function runs in the caller's tenant transaction. The tenant comes from a verified
token (the MAC makes its tenant id authentic) and every query names it, so a token made for
one tenant's message finds nothing in another tenant's transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from postyard.core.db import TenantId
from postyard.events.service import list_message_events, record_events
from postyard.events.types import EventType, EventView, NewEvent
from postyard.suppression import SuppressionReason, suppress
from postyard.tracking import tokens
from postyard.tracking.errors import UnknownTrackingLink
from postyard.tracking.machine import MachineReason, classify_click, classify_open
from postyard.tracking.models import TrackedMessage
from postyard.tracking.plan import NO_DELIVERY, TrackingPlan
from postyard.tracking.types import Engagement, TrackingConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class NewTrackedMessage:
    message_id: uuid.UUID
    delivery_id: uuid.UUID | None
    recipient: str | None
    plan: TrackingPlan


@dataclass(frozen=True, slots=True, kw_only=True)
class Visitor:
    """Who fetched a tracking URL, as the HTTP request says."""

    user_agent: str | None
    ip: str | None
    method: str
    at: datetime


async def get_engagement(
    session: AsyncSession, tenant_id: TenantId, message_id: uuid.UUID
) -> Engagement | None:
    """The message's counts; None when it tracked nothing."""
    row = await session.scalar(
        select(TrackedMessage).where(
            TrackedMessage.tenant_id == tenant_id, TrackedMessage.message_id == message_id
        )
    )
    if row is None:
        return None
    return Engagement(
        opens=row.opens,
        machine_opens=row.machine_opens,
        clicks=row.clicks,
        machine_clicks=row.machine_clicks,
        unsubscribed=row.unsubscribed_at is not None,
    )


async def _tracked(
    session: AsyncSession, tenant_id: TenantId, message_id: uuid.UUID, delivery_id: uuid.UUID
) -> TrackedMessage:
    row = await session.scalar(
        select(TrackedMessage).where(
            TrackedMessage.tenant_id == tenant_id, TrackedMessage.message_id == message_id
        )
    )
    if row is None or (row.delivery_id or NO_DELIVERY) != delivery_id:
        raise UnknownTrackingLink("This link is not valid.")
    return row


def _delivered_at(events: list[EventView], recipient: str | None) -> datetime | None:
    times = [
        e.created_at
        for e in events
        if e.type == EventType.EMAIL_DELIVERED and (recipient is None or e.recipient == recipient)
    ]
    return min(times, default=None)


def _activity(visitor: Visitor) -> dict[str, Any]:
    return {
        "timestamp": visitor.at.isoformat(),
        "userAgent": visitor.user_agent or "",
        "ipAddress": visitor.ip or "",
    }


async def _count_and_record(
    session: AsyncSession,
    row: TrackedMessage,
    counter: Any,
    event: EventType,
    data: dict[str, Any],
) -> None:
    """Add one to ``counter`` (a count column of the tracking row) and write ``event``."""
    await session.execute(
        update(TrackedMessage)
        .where(
            TrackedMessage.tenant_id == row.tenant_id,
            TrackedMessage.message_id == row.message_id,
        )
        .values({counter: counter + 1})
    )
    await record_events(
        session,
        [
            NewEvent(
                tenant_id=TenantId(row.tenant_id),
                type=event,
                message_id=row.message_id,
                recipient=row.recipient,
                data=data,
            )
        ],
    )


async def record_open(
    session: AsyncSession, config: TrackingConfig, claim: tokens.OpenClaim, visitor: Visitor
) -> bool:
    """Count the open and write ``email.opened``; returns whether it was machine activity.
    Raises UnknownTrackingLink when the message does not exist for the claim's tenant or
    does not track opens (then nothing is written)."""
    row = await _tracked(session, claim.tenant_id, claim.message_id, claim.delivery_id)
    if not row.open_tracking:
        raise UnknownTrackingLink("This link is not valid.")
    events = await list_message_events(session, claim.tenant_id, claim.message_id)
    verdict = classify_open(
        user_agent=visitor.user_agent,
        ip=visitor.ip,
        delivered_at=_delivered_at(events, row.recipient),
        at=visitor.at,
        method=visitor.method,
        rules=config.rules,
    )
    machine = verdict.machine
    if verdict.reason is MachineReason.IMAGE_PROXY and not config.image_proxy_opens_are_machine:
        machine = False  # a proxy fetch when the reader opens it: a real, unattributable open
    await _count_and_record(
        session,
        row,
        TrackedMessage.machine_opens if machine else TrackedMessage.opens,
        EventType.EMAIL_OPENED,
        {
            "open": _activity(visitor),
            "machine": machine,
            "machine_reason": verdict.reason.value if verdict.reason is not None else None,
        },
    )
    return machine


def _click_times(events: list[EventView], recipient: str | None) -> list[datetime]:
    times = []
    for event in events:
        if event.type != EventType.EMAIL_CLICKED or event.recipient != recipient:
            continue
        stamp = event.data.get("click", {}).get("timestamp")
        if isinstance(stamp, str):
            times.append(datetime.fromisoformat(stamp))
    return times


async def record_click(
    session: AsyncSession, config: TrackingConfig, claim: tokens.ClickClaim, visitor: Visitor
) -> str:
    """Count the click, write ``email.clicked`` and return the link's original URL. Raises
    UnknownTrackingLink when the message, its click tracking or the link index does not
    exist for the claim's tenant (then nothing is written)."""
    row = await _tracked(session, claim.tenant_id, claim.message_id, claim.delivery_id)
    if not row.click_tracking or claim.link_index >= len(row.links):
        raise UnknownTrackingLink("This link is not valid.")
    link = row.links[claim.link_index]
    events = await list_message_events(session, claim.tenant_id, claim.message_id)
    verdict = classify_click(
        user_agent=visitor.user_agent,
        ip=visitor.ip,
        delivered_at=_delivered_at(events, row.recipient),
        at=visitor.at,
        method=visitor.method,
        previous_clicks=_click_times(events, row.recipient),
        rules=config.rules,
    )
    await _count_and_record(
        session,
        row,
        TrackedMessage.machine_clicks if verdict.machine else TrackedMessage.clicks,
        EventType.EMAIL_CLICKED,
        {
            "click": {"link": link, **_activity(visitor)},
            "machine": verdict.machine,
            "machine_reason": verdict.reason.value if verdict.reason is not None else None,
        },
    )
    return link


async def require_unsubscribable(
    session: AsyncSession, claim: tokens.UnsubscribeClaim
) -> TrackedMessage:
    """The tracked message an unsubscribe token names, for the claim's tenant and address;
    raises UnknownTrackingLink otherwise."""
    row = await session.scalar(
        select(TrackedMessage).where(
            TrackedMessage.tenant_id == claim.tenant_id,
            TrackedMessage.message_id == claim.message_id,
        )
    )
    if (
        row is None
        or not row.unsubscribe
        or row.recipient is None
        or row.recipient.lower() != claim.address.lower()
    ):
        raise UnknownTrackingLink("This unsubscribe link is not valid.")
    return row


@dataclass(frozen=True, slots=True)
class MailtoUnsubscribe:
    """Whom a mailto unsubscribe token names, found through a system transaction."""

    tenant_id: TenantId
    message_id: uuid.UUID
    address: str


async def find_mailto_unsubscribe_unscoped(
    session: AsyncSession, config: TrackingConfig, token: str, *, now: datetime
) -> MailtoUnsubscribe | None:
    """The recipient a mailto unsubscribe token (the local part after ``u+``) names, or
    None for a token that does not verify, has expired or names no unsubscribable
    delivery. Reads across tenants: ``session`` must be a ``system_tx``; the caller then
    acts with ``unsubscribe`` in that tenant's own transaction (the MX listener)."""
    try:
        claim = tokens.verify_mailto_unsubscribe_token(
            config.key, token, now=now, max_age=config.unsubscribe_max_age
        )
    except tokens.InvalidToken:
        return None
    row = await session.scalar(
        select(TrackedMessage).where(TrackedMessage.delivery_id == claim.delivery_id)
    )
    if row is None or not row.unsubscribe or row.recipient is None:
        return None
    return MailtoUnsubscribe(TenantId(row.tenant_id), row.message_id, row.recipient)


def mailto_claim(found: MailtoUnsubscribe, *, now: datetime) -> tokens.UnsubscribeClaim:
    """The claim ``unsubscribe`` takes for a mailto unsubscribe."""
    return tokens.UnsubscribeClaim(
        tenant_id=found.tenant_id,
        message_id=found.message_id,
        address=found.address,
        topic_id=None,
        issued_at=now,
    )


async def unsubscribe(
    session: AsyncSession, claim: tokens.UnsubscribeClaim, *, method: str, now: datetime
) -> bool:
    """Unsubscribe the token's recipient: mark the message, write ``email.unsubscribed``
    and suppress the address for the tenant (reason ``unsubscribe``). A repeated request
    suppresses again (the address may have been taken off the list since) but writes no
    second event, and returns False. Raises UnknownTrackingLink as
    ``require_unsubscribable``."""
    row = await require_unsubscribable(session, claim)
    assert row.recipient is not None  # require_unsubscribable checked it
    # Suppressed again on a repeated request: the address may have been taken off the list
    # since (DELETE /v1/suppressions), and a recipient's request must still be honoured.
    await suppress(
        session,
        claim.tenant_id,
        row.recipient,
        SuppressionReason.UNSUBSCRIBE,
        now=now,
        source_email_id=row.message_id,
        detail=f"List-Unsubscribe ({method})",
    )
    if row.unsubscribed_at is not None:
        return False
    await session.execute(
        update(TrackedMessage)
        .where(
            TrackedMessage.tenant_id == claim.tenant_id, TrackedMessage.message_id == row.message_id
        )
        .values(unsubscribed_at=now)
    )
    await record_events(
        session,
        [
            NewEvent(
                tenant_id=claim.tenant_id,
                type=EventType.EMAIL_UNSUBSCRIBED,
                message_id=row.message_id,
                recipient=row.recipient,
                data={"email": row.recipient, "method": method, "timestamp": now.isoformat()},
            )
        ],
    )
    return True
