"""Writing and reading events. Writers call this inside the transaction that changes the
state the event describes, so an event exists exactly when its change was committed."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from postyard.core.db import TenantId, table_of
from postyard.core.ids import uuid7, uuid7_batch
from postyard.events.models import Event
from postyard.events.types import EventView, NewEvent, StoredEvent

# jsonb comes back from asyncpg as its text (no codec is set on the bare pools).
_BY_IDS = (
    "SELECT id, tenant_id, type, message_id, recipient, data, created_at FROM events"
    " WHERE id = ANY($1::uuid[])"
)

# For callers that write events in the same statement as the change they describe (a
# data-modifying CTE, one round trip): the INSERT, fed by ``event_rows`` as ``:events``.
INSERT_EVENTS_SQL = """
    INSERT INTO events (id, tenant_id, type, message_id, recipient, data)
    SELECT e.id, e.tenant_id, e.type, e.message_id, e.recipient, e.data
      FROM json_to_recordset(CAST(:events AS json))
           AS e(id uuid, tenant_id uuid, type text, message_id uuid, recipient text, data jsonb)
"""


def event_rows(events: Sequence[NewEvent]) -> list[dict[str, Any]]:
    """The rows of ``INSERT_EVENTS_SQL`` for these events (``core.json_rows`` makes them its
    ``:events``), each with a new id (made together: one read of the random source)."""
    return [
        {
            "id": event_id,
            "tenant_id": e.tenant_id,
            "type": e.type.value,
            "message_id": e.message_id,
            "recipient": e.recipient,
            "data": e.data,
        }
        for e, event_id in zip(events, uuid7_batch(len(events)), strict=True)
    ]


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


async def get_events_unscoped(
    conn: asyncpg.Connection, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, StoredEvent]:
    """Events by id, whatever their tenant, read on a bare system connection
    (``Database.system_conn``: for workers, one statement; events are immutable, so no
    transaction is needed around it). Missing ids are left out."""
    if not ids:
        return {}
    rows = await conn.fetch(_BY_IDS, list(ids))
    return {
        r["id"]: StoredEvent(
            id=r["id"],
            tenant_id=TenantId(r["tenant_id"]),
            type=r["type"],
            message_id=r["message_id"],
            recipient=r["recipient"],
            data=json.loads(r["data"]),
            created_at=r["created_at"],
        )
        for r in rows
    }
