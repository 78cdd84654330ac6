"""Holds: stop a tenant's, a sending domain's or a destination's traffic without dropping it.

A hold is a row in ``holds``; recipients it catches wait with status ``held`` and
``held_by`` naming it (out of the due index, so a held backlog costs the claim nothing),
with the reason in ``last_reply``. Releasing the hold makes them due at once. Tenants place
and release their own holds through the API; operators place holds on any tenant, or on a
destination for every tenant (``tenant_id`` NULL), through the CLI, and tenants cannot
release those.

Matching is pure (``hold_for``); it runs when the worker claims rows (tenant, domain, and
destinations known without DNS) and again after MX resolution (destinations by site).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from postyard.core.db import TenantId
from postyard.core.errors import AppError, NotFound, ValidationFailed
from postyard.core.ids import parse_uuid, uuid7
from postyard.delivery.models import Hold as HoldRow
from postyard.delivery.sites import KNOWN_SITES
from postyard.sending.models import Delivery


class HoldKind(StrEnum):
    TENANT = "tenant"
    DOMAIN = "domain"
    DESTINATION = "destination"


class HoldOrigin(StrEnum):
    TENANT = "tenant"
    OPERATOR = "operator"


class HoldOwnedByOperator(AppError):
    code = "hold_owned_by_operator"
    status = 403


@dataclass(frozen=True, slots=True)
class Hold:
    id: uuid.UUID
    tenant_id: TenantId | None
    kind: HoldKind
    value: str
    reason: str
    origin: HoldOrigin
    created_at: datetime
    released_at: datetime | None = None

    def describe(self) -> str:
        """The text a held recipient shows in ``last_reply``."""
        what = {
            HoldKind.TENANT: "all mail of this organization",
            HoldKind.DOMAIN: f"mail from {self.value}",
            HoldKind.DESTINATION: f"mail to {self.value}",
        }[self.kind]
        by = "an operator" if self.origin is HoldOrigin.OPERATOR else "this organization"
        return f"held by {by} ({what}): {self.reason}"


@dataclass(frozen=True, slots=True)
class HoldView:
    hold: Hold
    held: int
    """Recipients waiting on this hold now."""


_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")


def normalise_value(kind: HoldKind, value: str | None) -> str:
    """The stored value for ``kind`` (lower-case domain or site name; '' for tenant holds).
    Raises ValidationFailed for a missing or malformed value."""
    if kind is HoldKind.TENANT:
        if value:
            raise ValidationFailed("A tenant hold takes no value.")
        return ""
    cleaned = (value or "").strip().rstrip(".").lower()
    if not _NAME.match(cleaned):
        raise ValidationFailed("`value` must be a domain name (or, for a destination, a site).")
    if kind is HoldKind.DOMAIN and "." not in cleaned:
        raise ValidationFailed("`value` must be a sending domain such as example.com.")
    if kind is HoldKind.DESTINATION and "." not in cleaned and cleaned not in KNOWN_SITES:
        sites = ", ".join(sorted(KNOWN_SITES))
        raise ValidationFailed(f"`value` must be a recipient domain or a site ({sites}).")
    return cleaned


def hold_for(
    holds: Sequence[Hold],
    *,
    tenant_id: TenantId,
    from_domain: str,
    recipient_domain: str,
    site: str,
) -> Hold | None:
    """The first active hold that catches this recipient (pure): the tenant's own holds and
    the global ones, by tenant, sending domain, recipient domain or destination site."""
    for hold in holds:
        if hold.released_at is not None:
            continue
        if hold.tenant_id is not None and hold.tenant_id != tenant_id:
            continue
        if hold.kind is HoldKind.TENANT and hold.tenant_id is not None:
            return hold
        if hold.kind is HoldKind.DOMAIN and hold.value == from_domain.lower():
            return hold
        if hold.kind is HoldKind.DESTINATION and hold.value in (recipient_domain.lower(), site):
            return hold
    return None


def _view(row: HoldRow) -> Hold:
    return Hold(
        id=row.id,
        tenant_id=TenantId(row.tenant_id) if row.tenant_id is not None else None,
        kind=HoldKind(row.kind),
        value=row.value,
        reason=row.reason,
        origin=HoldOrigin(row.origin),
        created_at=row.created_at,
        released_at=row.released_at,
    )


_HOLD_DUE = text(
    """
    UPDATE deliveries d
       SET status = 'held', held_by = :hold, last_reply = :reply, updated_at = :now
      FROM messages m
     WHERE m.id = d.message_id
       AND d.status IN ('queued', 'scheduled', 'deferred') AND d.next_attempt_at <= :now
       AND (CAST(:tenant AS uuid) IS NULL OR d.tenant_id = CAST(:tenant AS uuid))
       AND (:kind = 'tenant'
            OR (:kind = 'domain' AND m.from_domain = :value)
            OR (:kind = 'destination' AND d.domain = :value))
    """
)


async def place_hold(
    session: AsyncSession,
    tenant_id: TenantId | None,
    *,
    kind: HoldKind,
    value: str | None,
    reason: str,
    origin: HoldOrigin,
    now: datetime,
) -> HoldView:
    """Create an active hold and hold the recipients it catches that are due now (those due
    later, and destinations matched by site, are held when the worker reaches them).

    ``tenant_id`` None is a global destination hold, for operators only. Raises
    ValidationFailed for a bad value or a global hold that is not on a destination.
    """
    stored = normalise_value(kind, value)
    global_hold = tenant_id is None
    if global_hold and (kind is not HoldKind.DESTINATION or origin is not HoldOrigin.OPERATOR):
        raise ValidationFailed("Only an operator's destination hold can cover every tenant.")
    row = HoldRow(
        id=uuid7(),
        tenant_id=tenant_id,
        kind=kind.value,
        value=stored,
        reason=reason.strip() or "no reason given",
        origin=origin.value,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    hold = _view(row)
    result = await session.execute(
        _HOLD_DUE,
        {
            "hold": hold.id,
            "reply": hold.describe(),
            "now": now,
            "tenant": tenant_id,
            "kind": kind.value,
            "value": stored,
        },
    )
    return HoldView(hold, int(result.rowcount))  # type: ignore[attr-defined]


async def list_holds(
    session: AsyncSession, tenant_id: TenantId | None, *, include_released: bool = False
) -> list[HoldView]:
    """Holds on ``tenant_id`` (None, for operators: every hold), newest first, with how many
    recipients each holds now."""
    query = select(HoldRow).order_by(HoldRow.created_at.desc(), HoldRow.id)
    if tenant_id is not None:
        query = query.where(HoldRow.tenant_id == tenant_id)
    if not include_released:
        query = query.where(HoldRow.released_at.is_(None))
    holds = [_view(r) for r in (await session.scalars(query)).all()]
    counts: dict[uuid.UUID, int] = {}
    if holds:
        rows = await session.execute(
            select(Delivery.held_by, func.count())
            .where(Delivery.status == "held", Delivery.held_by.in_([h.id for h in holds]))
            .group_by(Delivery.held_by)
        )
        counts = {r[0]: int(r[1]) for r in rows if r[0] is not None}
    return [HoldView(h, counts.get(h.id, 0)) for h in holds]


async def release_hold(
    session: AsyncSession, tenant_id: TenantId | None, hold_id: str, *, now: datetime
) -> HoldView:
    """Release a hold and make every recipient it held due now (``held`` count in the
    result: how many). Releasing a released hold changes nothing. ``tenant_id`` None acts as
    the operator. Raises NotFound for another tenant's or an unknown hold, and
    HoldOwnedByOperator when a tenant tries to release an operator's hold."""
    parsed = parse_uuid(hold_id)
    if parsed is None:
        raise NotFound("Hold not found.")
    query = select(HoldRow).where(HoldRow.id == parsed).with_for_update()
    if tenant_id is not None:
        query = query.where(HoldRow.tenant_id == tenant_id)
    row = await session.scalar(query)
    if row is None:
        raise NotFound("Hold not found.")
    if tenant_id is not None and row.origin == HoldOrigin.OPERATOR:
        raise HoldOwnedByOperator("This hold was placed by an operator; only they can release it.")
    released = 0
    if row.released_at is None:
        row.released_at = now
        result = await session.execute(
            update(Delivery)
            .where(Delivery.status == "held", Delivery.held_by == parsed)
            .values(
                status="queued",
                held_by=None,
                next_attempt_at=now,
                last_reply=f"hold released at {now.isoformat()}",
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        released = int(result.rowcount)  # type: ignore[attr-defined]
    await session.flush()
    return HoldView(_view(row), released)


async def active_holds_unscoped(session: AsyncSession) -> list[Hold]:
    """Every active hold of every tenant (system sessions: the delivery worker)."""
    rows = await session.scalars(select(HoldRow).where(HoldRow.released_at.is_(None)))
    return [_view(r) for r in rows]
