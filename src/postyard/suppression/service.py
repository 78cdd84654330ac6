"""Use cases of the suppression list: add (upsert) an address, check recipients against it.

Every function runs in the caller's tenant transaction and neither commits nor rolls back.
Addresses are compared case-insensitively (PostgreSQL's ``lower``, the same expression the
unique index uses), and an entry whose ``expires_at`` has passed no longer suppresses.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, func, text
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import Text

from postyard.core.db import TenantId, table_of
from postyard.core.errors import ValidationFailed
from postyard.core.ids import uuid7
from postyard.suppression.models import Suppression
from postyard.suppression.types import SuppressionReason, SuppressionView

MAX_EMAIL_LENGTH = 320

_ACTIVE_AMONG = text(
    """
    SELECT DISTINCT x.address
      FROM unnest(:emails) AS x(address)
      JOIN suppressions s
        ON s.tenant_id = :tenant AND lower(s.email) = lower(x.address)
     WHERE s.expires_at IS NULL OR s.expires_at > :now
    """
).bindparams(bindparam("emails", type_=ARRAY(Text())))


def _view(row: Suppression) -> SuppressionView:
    return SuppressionView(
        id=row.id,
        email=row.email,
        reason=SuppressionReason(row.reason),
        source_email_id=row.source_email_id,
        detail=row.detail,
        expires_at=row.expires_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def upsert_suppression(
    session: AsyncSession,
    tenant: TenantId,
    email: str,
    reason: SuppressionReason,
    *,
    now: datetime,
    source_email_id: uuid.UUID | None = None,
    expires_at: datetime | None = None,
    detail: str | None = None,
) -> SuppressionView:
    """Add ``email`` to the tenant's list, or replace the reason, source, expiry and detail of
    the entry it already has (same id, same ``created_at``). Raises ValidationFailed for an
    empty or over-long address; callers validate address syntax at their edge."""
    address = email.strip()
    if not address or "@" not in address or len(address) > MAX_EMAIL_LENGTH:
        msg = "The `email` field must be an email address."
        raise ValidationFailed(msg)
    table = table_of(Suppression)
    stmt = insert(table).values(
        id=uuid7(),
        tenant_id=tenant,
        email=address,
        reason=reason.value,
        source_email_id=source_email_id,
        detail=detail,
        expires_at=expires_at,
        created_at=now,
        updated_at=now,
    )
    upsert = stmt.on_conflict_do_update(
        index_elements=[table.c.tenant_id, func.lower(table.c.email)],
        set_={
            "email": stmt.excluded.email,
            "reason": stmt.excluded.reason,
            "source_email_id": stmt.excluded.source_email_id,
            "detail": stmt.excluded.detail,
            "expires_at": stmt.excluded.expires_at,
            "updated_at": stmt.excluded.updated_at,
        },
    ).returning(table.c.id)
    row_id = (await session.execute(upsert)).scalar_one()
    row = await session.get(Suppression, row_id, populate_existing=True)
    assert row is not None  # the statement above just wrote it in this transaction
    return _view(row)


async def suppress(
    session: AsyncSession,
    tenant: TenantId,
    email: str,
    reason: SuppressionReason,
    *,
    now: datetime,
    source_email_id: uuid.UUID | None = None,
    expires_at: datetime | None = None,
    detail: str | None = None,
) -> None:
    """Suppress ``email`` for ``tenant`` (idempotent: an existing entry for the address, in
    any letter case, is updated in place; the latest call wins). Runs in the caller's tenant
    transaction. Raises ValidationFailed for an empty or over-long address."""
    await upsert_suppression(
        session,
        tenant,
        email,
        reason,
        now=now,
        source_email_id=source_email_id,
        expires_at=expires_at,
        detail=detail,
    )


async def suppressed_among(
    session: AsyncSession, tenant: TenantId, emails: Sequence[str], now: datetime
) -> set[str]:
    """The members of ``emails`` (as given) that the tenant suppresses at ``now``; one query
    whatever the number of addresses."""
    if not emails:
        return set()
    rows = await session.execute(
        _ACTIVE_AMONG, {"emails": list(set(emails)), "tenant": tenant, "now": now}
    )
    return {row[0] for row in rows}
