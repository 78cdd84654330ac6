"""Cursor pagination as Resend does it: ``limit`` (1-100), ``after`` / ``before`` an object id
(excluded from the page), newest first, ``has_more``.

Ids are UUIDv7, so ordering by id is ordering by creation time.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from postyard.core.errors import ValidationFailed
from postyard.core.ids import parse_uuid

DEFAULT_LIMIT = 20
MAX_LIMIT = 100

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PageRequest:
    limit: int = DEFAULT_LIMIT
    after: uuid.UUID | None = None
    before: uuid.UUID | None = None

    @classmethod
    def parse(cls, limit: int | None, after: str | None, before: str | None) -> PageRequest:
        """Validate raw query values; raises ValidationFailed with Resend's wording."""
        if after is not None and before is not None:
            msg = "You can only use either `after` or `before`, not both."
            raise ValidationFailed(msg)
        if limit is not None and not 1 <= limit <= MAX_LIMIT:
            msg = f"The `limit` parameter must be between 1 and {MAX_LIMIT}."
            raise ValidationFailed(msg)
        cursors: list[uuid.UUID | None] = []
        for name, raw in (("after", after), ("before", before)):
            if raw is None:
                cursors.append(None)
                continue
            parsed = parse_uuid(raw)
            if parsed is None:
                msg = f"The `{name}` parameter must be a valid id."
                raise ValidationFailed(msg)
            cursors.append(parsed)
        return cls(limit=limit or DEFAULT_LIMIT, after=cursors[0], before=cursors[1])


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    has_more: bool


async def fetch_page(
    session: AsyncSession,
    stmt: Select[Any],
    id_column: InstrumentedAttribute[uuid.UUID],
    page: PageRequest,
) -> Page[Any]:
    """Run ``stmt`` (a select of one entity) for one page, newest first."""
    if page.before is not None:
        stmt = stmt.where(id_column > page.before).order_by(id_column.asc())
    else:
        if page.after is not None:
            stmt = stmt.where(id_column < page.after)
        stmt = stmt.order_by(id_column.desc())
    rows = list((await session.scalars(stmt.limit(page.limit + 1))).all())
    has_more = len(rows) > page.limit
    rows = rows[: page.limit]
    if page.before is not None:
        rows.reverse()
    return Page(items=rows, has_more=has_more)
