"""Writing and reading events. Writers call this inside the transaction that changes the
state the event describes, so an event exists exactly when its change was committed."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from postyard.core.db import TenantId, table_of
from postyard.core.ids import uuid7
from postyard.events.models import Event
from postyard.events.types import EventView, NewEvent


async def record_events(session: AsyncSession, events: Sequence[NewEvent]) -> None:
    """Append events (one multi-row INSERT)."""
    if not events:
        return
    conn = await session.connection()
    await conn.execute(
        insert(table_of(Event)),
        [
            {
                "id": uuid7(),
                "tenant_id": e.tenant_id,
                "type": e.type.value,
                "message_id": e.message_id,
                "recipient": e.recipient,
                "data": e.data,
            }
            for e in events
        ],
    )


async def list_message_events(
    session: AsyncSession, tenant_id: TenantId, message_id: uuid.UUID
) -> list[EventView]:
    """A message's events, oldest first."""
    rows = await session.scalars(
        select(Event)
        .where(Event.tenant_id == tenant_id, Event.message_id == message_id)
        .order_by(Event.seq)
    )
    return [
        EventView(id=e.id, type=e.type, recipient=e.recipient, data=e.data, created_at=e.created_at)
        for e in rows
    ]
