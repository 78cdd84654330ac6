"""Counting reports the MX listener drops, by reason (one upsert per drop, system role),
and reading the counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from postyard.inbound.models import InboundDrop


class DropReason(StrEnum):
    FORGED_TOKEN = "forged_token"  # noqa: S105 - a reason, not a secret
    """A ``b+``/``u+`` token whose MAC does not verify (or that is malformed)."""
    EXPIRED_TOKEN = "expired_token"  # noqa: S105 - a reason, not a secret
    """An authentic mailto unsubscribe token older than the allowed age."""
    UNKNOWN_DELIVERY = "unknown_delivery"
    """An authentic token naming a delivery that no longer exists."""
    UNKNOWN_MESSAGE = "unknown_message"
    """A complaint at the feedback address that names no message we can pin to one recipient."""
    NOT_SENT = "not_sent"
    """A failure report for a delivery that was never attempted or was canceled."""
    NOT_A_REPORT = "not_a_report"
    """Readable mail that is no bounce or complaint (an auto-reply, a person)."""
    UNPARSABLE = "unparsable"
    """Mail the MIME parser could not read."""
    NOT_A_FAILURE = "not_a_failure"
    """A DSN saying delivered, relayed or expanded."""
    NOT_A_COMPLAINT = "not_a_complaint"
    """A feedback report of type not-spam or other, or a bounce at the feedback address."""


@dataclass(frozen=True, slots=True)
class DropCount:
    reason: str
    count: int
    first_at: datetime
    last_at: datetime


_COUNT = text(
    """
    INSERT INTO inbound_drops (reason, count, first_at, last_at)
    VALUES (:reason, 1, :now, :now)
    ON CONFLICT (reason) DO UPDATE
       SET count = inbound_drops.count + 1,
           last_at = greatest(inbound_drops.last_at, EXCLUDED.last_at)
    """
)


async def count_drop(session: AsyncSession, reason: DropReason, *, now: datetime) -> None:
    """Count one dropped report (session: a system_tx)."""
    await session.execute(_COUNT, {"reason": reason.value, "now": now})


async def list_drops(session: AsyncSession) -> list[DropCount]:
    """Every reason with its count, most frequent first (session: a system_tx)."""
    rows = await session.scalars(
        select(InboundDrop).order_by(InboundDrop.count.desc(), InboundDrop.reason)
    )
    return [DropCount(r.reason, r.count, r.first_at, r.last_at) for r in rows]
