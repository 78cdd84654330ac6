"""Use cases of the suppression list: add (upsert) an address, check recipients against it,
list, read and remove entries.

Every function runs in the caller's tenant transaction and neither commits nor rolls back.
Addresses are compared case-insensitively (PostgreSQL's ``lower``, the same expression the
unique index uses), and an entry whose ``expires_at`` has passed no longer suppresses.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, bindparam, delete, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import Text

from postyard.core.db import TenantId, table_of
from postyard.core.errors import NotFound, ValidationFailed
from postyard.core.ids import parse_uuid, uuid7
from postyard.core.pagination import Page, PageRequest, fetch_page
from postyard.suppression.addresses import normalize_address
from postyard.suppression.models import Suppression
from postyard.suppression.types import SuppressionReason, SuppressionView

MAX_EMAIL_LENGTH = 320

_ACTIVE_AMONG = text(
    """
    SELECT DISTINCT x.address, s.reason
      FROM unnest(:emails) AS x(address)
      JOIN suppressions s
        ON s.tenant_id = :tenant AND lower(s.email) = lower(x.address)
     WHERE s.expires_at IS NULL OR s.expires_at > :now
    """
).bindparams(bindparam("emails", type_=ARRAY(Text())))

_ACTIVE_PAIRS_UNSCOPED = text(
    """
    SELECT DISTINCT x.tenant_id, x.address, s.reason
      FROM unnest(CAST(:tenants AS uuid[]), CAST(:emails AS text[])) AS x(tenant_id, address)
      JOIN suppressions s
        ON s.tenant_id = x.tenant_id AND lower(s.email) = lower(x.address)
     WHERE s.expires_at IS NULL OR s.expires_at > :now
    """
)


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
    return set(await suppression_reasons(session, tenant, emails, now))


async def suppression_reasons(
    session: AsyncSession, tenant: TenantId, emails: Sequence[str], now: datetime
) -> dict[str, SuppressionReason]:
    """Like ``suppressed_among``, with the reason each address is suppressed for."""
    if not emails:
        return {}
    rows = await session.execute(
        _ACTIVE_AMONG, {"emails": list(set(emails)), "tenant": tenant, "now": now}
    )
    return {row.address: SuppressionReason(row.reason) for row in rows}


async def suppression_reasons_unscoped(
    session: AsyncSession, recipients: Sequence[tuple[TenantId, str]], now: datetime
) -> dict[tuple[TenantId, str], SuppressionReason]:
    """For a ``system_tx`` that serves several tenants (the delivery worker): which of these
    (tenant, address) pairs that tenant suppresses at ``now``, in one query."""
    if not recipients:
        return {}
    pairs = set(recipients)
    rows = await session.execute(
        _ACTIVE_PAIRS_UNSCOPED,
        {"tenants": [t for t, _ in pairs], "emails": [e for _, e in pairs], "now": now},
    )
    return {(TenantId(r.tenant_id), r.address): SuppressionReason(r.reason) for r in rows}


async def add_suppression(
    session: AsyncSession,
    tenant: TenantId,
    email: str,
    reason: SuppressionReason,
    *,
    now: datetime,
    expires_at: datetime | None = None,
) -> SuppressionView:
    """Add or update an entry from a client (API, CLI): the address must be valid (its
    domain is stored in IDNA form) and ``expires_at`` (UTC when naive) in the future. Raises
    ValidationFailed."""
    address = normalize_address(email)
    if expires_at is not None:
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        if expires_at <= now:
            msg = "The `expires_at` field must be in the future."
            raise ValidationFailed(msg)
    return await upsert_suppression(
        session, tenant, address, reason, now=now, expires_at=expires_at
    )


async def list_suppressions(
    session: AsyncSession,
    tenant: TenantId,
    *,
    page: PageRequest,
    reason: SuppressionReason | None = None,
) -> Page[SuppressionView]:
    """Entries newest first (expired ones too: their ``expires_at`` says so)."""
    stmt = select(Suppression).where(Suppression.tenant_id == tenant)
    if reason is not None:
        stmt = stmt.where(Suppression.reason == reason.value)
    result = await fetch_page(session, stmt, Suppression.id, page)
    return Page(items=[_view(row) for row in result.items], has_more=result.has_more)


def _matching(tenant: TenantId, id_or_email: str) -> ColumnElement[bool]:
    """The entry named by an id, or by an address in any letter case; raises NotFound for a
    value that is neither."""
    if "@" in id_or_email:
        wanted = id_or_email.strip()
        # Look an address that does not normalise up as given: entries written by other
        # paths (DSNs, unsubscribes) are not validated the way the API validates.
        with contextlib.suppress(ValidationFailed):
            wanted = normalize_address(wanted)
        return (Suppression.tenant_id == tenant) & (
            func.lower(Suppression.email) == func.lower(wanted)
        )
    parsed = parse_uuid(id_or_email)
    if parsed is None:
        raise NotFound("Suppression not found.")
    return (Suppression.tenant_id == tenant) & (Suppression.id == parsed)


async def get_suppression(
    session: AsyncSession, tenant: TenantId, id_or_email: str
) -> SuppressionView:
    """The entry with this id or address; raises NotFound (also for another tenant's)."""
    row = await session.scalar(select(Suppression).where(_matching(tenant, id_or_email)))
    if row is None:
        raise NotFound("Suppression not found.")
    return _view(row)


async def remove_suppression(
    session: AsyncSession, tenant: TenantId, id_or_email: str
) -> SuppressionView:
    """Delete the entry with this id or address, so mail to it goes out again; returns what
    was removed. Raises NotFound."""
    removed = await session.scalar(
        delete(Suppression).where(_matching(tenant, id_or_email)).returning(Suppression)
    )
    if removed is None:
        raise NotFound("Suppression not found.")
    return _view(removed)
