"""What other domains may read about a message: the summary webhook payloads carry."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

# tags (jsonb) come back from asyncpg as their text (no codec is set on the bare pools).
_SUMMARIES = (
    "SELECT id, sender, subject, to_addrs, tags, created_at FROM messages"
    " WHERE id = ANY($1::uuid[])"
)


@dataclass(frozen=True, slots=True)
class MessageSummary:
    id: uuid.UUID
    sender: str
    subject: str
    to: list[str]
    tags: dict[str, str]
    created_at: datetime


async def message_summaries_unscoped(
    conn: asyncpg.Connection, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, MessageSummary]:
    """Summaries of the messages with these ids, whatever their tenant, read on a bare system
    connection (``Database.system_conn``: for workers, one statement); missing ids are left
    out."""
    if not ids:
        return {}
    rows = await conn.fetch(_SUMMARIES, list(set(ids)))
    return {
        r["id"]: MessageSummary(
            id=r["id"],
            sender=r["sender"],
            subject=r["subject"],
            to=list(r["to_addrs"]),
            tags={str(t["name"]): str(t["value"]) for t in json.loads(r["tags"] or "null") or []},
            created_at=r["created_at"],
        )
        for r in rows
    }
