"""What other domains may read about a message: the summary webhook payloads carry."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ARRAY, Uuid, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

_SUMMARIES = text(
    "SELECT id, sender, subject, to_addrs, tags, created_at FROM messages WHERE id = ANY(:ids)"
).bindparams(bindparam("ids", type_=ARRAY(Uuid())))


@dataclass(frozen=True, slots=True)
class MessageSummary:
    id: uuid.UUID
    sender: str
    subject: str
    to: list[str]
    tags: dict[str, str]
    created_at: datetime


async def message_summaries_unscoped(
    session: AsyncSession, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, MessageSummary]:
    """Summaries of the messages with these ids that the session can see (every tenant's in
    a system transaction); missing ids are left out."""
    if not ids:
        return {}
    rows = await session.execute(_SUMMARIES, {"ids": list(set(ids))})
    return {
        r.id: MessageSummary(
            id=r.id,
            sender=r.sender,
            subject=r.subject,
            to=list(r.to_addrs),
            tags={str(t["name"]): str(t["value"]) for t in r.tags or []},
            created_at=r.created_at,
        )
        for r in rows
    }
