"""Retention of built messages: the MIME of a message (its attachments included, most of
what Postyard stores) is read only to deliver it, so once every recipient has an outcome
(delivered, bounced, failed or canceled) and ``content_days`` have passed since it was
accepted, it is deleted. The message row, its recipients, events and its html/text stay:
`GET /v1/emails/{id}` answers as before."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from postyard.core.clock import Clock
from postyard.core.db import Database
from postyard.core.ids import uuid7_floor

BATCH = 1000
MAX_BATCHES = 50
"""Per maintenance round: up to 50,000 contents, a transaction per thousand."""

# Message ids are UUIDv7, so "accepted before" is "id below": a range scan of the primary
# key from the oldest content still kept. SKIP LOCKED: worker processes prune side by side.
_PRUNE = text(
    """
    DELETE FROM message_contents
     WHERE message_id IN (
        SELECT c.message_id FROM message_contents c
         WHERE c.message_id < :before
           AND NOT EXISTS (
               SELECT 1 FROM deliveries d
                WHERE d.message_id = c.message_id
                  AND d.status IN ('queued', 'scheduled', 'deferred', 'sending', 'held'))
         ORDER BY c.message_id
         LIMIT :limit
         FOR UPDATE SKIP LOCKED)
    """
)


async def prune_contents(session: AsyncSession, *, accepted_before: datetime, limit: int) -> int:
    """Delete up to ``limit`` contents of messages accepted before ``accepted_before`` whose
    recipients all have an outcome. Returns how many."""
    result = await session.execute(_PRUNE, {"before": uuid7_floor(accepted_before), "limit": limit})
    return int(result.rowcount)  # type: ignore[attr-defined]


def content_pruner(db: Database, clock: Clock, days: int) -> Callable[[], Awaitable[int]]:
    """The maintenance job of the delivery worker: prune in batches until none is left or
    ``MAX_BATCHES`` ran. Returns how many it deleted."""

    async def prune() -> int:
        before = clock.now() - timedelta(days=days)
        total = 0
        for _ in range(MAX_BATCHES):
            async with db.system_tx(reason="retention: message contents") as session:
                deleted = await prune_contents(session, accepted_before=before, limit=BATCH)
            total += deleted
            if deleted < BATCH:
                break
        return total

    return prune
