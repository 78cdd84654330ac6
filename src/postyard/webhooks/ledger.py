"""The dispatcher's statements: claim due deliveries under a lease, record attempts, give
back expired leases, prune the log. Every function runs in a system transaction (work across
tenants); none decides anything (``retry.py`` does)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ARRAY, DateTime, Integer, Text, Uuid, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from postyard.core.db import TenantId
from postyard.core.ids import uuid7_batch
from postyard.events.service import record_events
from postyard.events.types import EventType, NewEvent

LOG_RETENTION = timedelta(days=30)

_CLAIM = text(
    """
    WITH due AS (
        SELECT id FROM webhook_deliveries
         WHERE status = 'pending' AND next_attempt_at <= :now
         ORDER BY next_attempt_at
         LIMIT :limit
           FOR UPDATE SKIP LOCKED
    )
    UPDATE webhook_deliveries d
       SET status = 'sending', attempts = d.attempts + 1, lease_owner = :owner,
           lease_expires_at = :until, updated_at = :now
      FROM due
     WHERE d.id = due.id
    RETURNING d.id, d.tenant_id, d.endpoint_id, d.event_id, d.attempts
    """
)
_ENDPOINTS = text(
    "SELECT id, tenant_id, url, status, secret, previous_secret, previous_secret_expires_at"
    " FROM webhook_endpoints WHERE id = ANY(:ids)"
).bindparams(bindparam("ids", type_=ARRAY(Uuid())))
_RECORD = text(
    """
    UPDATE webhook_deliveries d
       SET status = r.status, next_attempt_at = coalesce(r.next_at, d.next_attempt_at),
           last_status_code = r.code, last_error = r.error, lease_owner = NULL,
           lease_expires_at = NULL, updated_at = :now
      FROM unnest(:ids, :statuses, :nexts, :codes, :errors) AS r(id, status, next_at, code, error)
     WHERE d.id = r.id AND d.status = 'sending' AND d.lease_owner = :owner
    RETURNING d.id
    """
).bindparams(
    bindparam("ids", type_=ARRAY(Uuid())),
    bindparam("statuses", type_=ARRAY(Text())),
    bindparam("nexts", type_=ARRAY(DateTime(timezone=True))),
    bindparam("codes", type_=ARRAY(Integer())),
    bindparam("errors", type_=ARRAY(Text())),
)
_LOG = text(
    """
    INSERT INTO webhook_attempts
        (id, tenant_id, endpoint_id, delivery_id, event_type, attempt, status_code, response,
         duration_ms, error, created_at)
    SELECT * FROM unnest(:ids, :tenants, :endpoints, :deliveries, :types, :attempts, :codes,
                         :responses, :durations, :errors, :times)
    """
).bindparams(
    bindparam("ids", type_=ARRAY(Uuid())),
    bindparam("tenants", type_=ARRAY(Uuid())),
    bindparam("endpoints", type_=ARRAY(Uuid())),
    bindparam("deliveries", type_=ARRAY(Uuid())),
    bindparam("types", type_=ARRAY(Text())),
    bindparam("attempts", type_=ARRAY(Integer())),
    bindparam("codes", type_=ARRAY(Integer())),
    bindparam("responses", type_=ARRAY(Text())),
    bindparam("durations", type_=ARRAY(Integer())),
    bindparam("errors", type_=ARRAY(Text())),
    bindparam("times", type_=ARRAY(DateTime(timezone=True))),
)
_SUCCEEDED = text(
    "UPDATE webhook_endpoints SET failing_since = NULL"
    " WHERE id = ANY(:ids) AND failing_since IS NOT NULL"
).bindparams(bindparam("ids", type_=ARRAY(Uuid())))
_FAILING = text(
    "UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, :now)"
    " WHERE id = ANY(:ids) AND status = 'enabled' RETURNING id, tenant_id, url, failing_since"
).bindparams(bindparam("ids", type_=ARRAY(Uuid())))
_DISABLE = text(
    "UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = :reason,"
    " updated_at = :now WHERE id = :id AND status = 'enabled' RETURNING tenant_id, url"
)
_FAIL_WAITING = text(
    "UPDATE webhook_deliveries SET status = 'failed', last_error = :error, updated_at = :now"
    " WHERE endpoint_id = :id AND status = 'pending'"
)
_RECOVER = text(
    "UPDATE webhook_deliveries SET status = 'pending', lease_owner = NULL,"
    " lease_expires_at = NULL, next_attempt_at = :now, updated_at = :now"
    " WHERE status = 'sending' AND lease_expires_at < :now"
)
_PRUNE_ATTEMPTS = text("DELETE FROM webhook_attempts WHERE created_at < :before")
_PRUNE_DELIVERIES = text(
    "DELETE FROM webhook_deliveries"
    " WHERE status IN ('succeeded', 'failed') AND updated_at < :before"
)


@dataclass(frozen=True, slots=True)
class Claimed:
    id: uuid.UUID
    tenant_id: TenantId
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    attempts: int


@dataclass(frozen=True, slots=True)
class EndpointRow:
    id: uuid.UUID
    tenant_id: TenantId
    url: str
    status: str
    secret: bytes
    previous_secret: bytes | None
    previous_secret_expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt's result and what follows it."""

    delivery: Claimed
    event_type: str
    status: str  # the delivery's next status: pending (retry), succeeded or failed
    next_attempt_at: datetime | None
    status_code: int | None
    response: str
    duration_ms: int
    error: str | None
    attempted_at: datetime


async def claim_due(
    session: AsyncSession, *, owner: str, limit: int, lease: timedelta, now: datetime
) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries (skipping rows other workers hold)."""
    rows = await session.execute(
        _CLAIM, {"now": now, "limit": limit, "owner": owner, "until": now + lease}
    )
    return [
        Claimed(r.id, TenantId(r.tenant_id), r.endpoint_id, r.event_id, r.attempts) for r in rows
    ]


async def load_endpoints(
    session: AsyncSession, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, EndpointRow]:
    rows = await session.execute(_ENDPOINTS, {"ids": list(set(ids))})
    return {
        r.id: EndpointRow(
            r.id,
            TenantId(r.tenant_id),
            r.url,
            r.status,
            r.secret,
            r.previous_secret,
            r.previous_secret_expires_at,
        )
        for r in rows
    }


async def record_outcomes(
    session: AsyncSession, outcomes: Sequence[Outcome], *, owner: str, now: datetime
) -> list[Outcome]:
    """Store each outcome and its attempt; rows whose lease this worker lost are left to
    their new holder. Returns the outcomes recorded."""
    if not outcomes:
        return []
    kept_ids = set(
        (
            await session.execute(
                _RECORD,
                {
                    "owner": owner,
                    "now": now,
                    "ids": [o.delivery.id for o in outcomes],
                    "statuses": [o.status for o in outcomes],
                    "nexts": [o.next_attempt_at for o in outcomes],
                    "codes": [o.status_code for o in outcomes],
                    "errors": [o.error for o in outcomes],
                },
            )
        ).scalars()
    )
    kept = [o for o in outcomes if o.delivery.id in kept_ids]
    if kept:
        await session.execute(
            _LOG,
            {
                "ids": uuid7_batch(len(kept)),
                "tenants": [o.delivery.tenant_id for o in kept],
                "endpoints": [o.delivery.endpoint_id for o in kept],
                "deliveries": [o.delivery.id for o in kept],
                "types": [o.event_type for o in kept],
                "attempts": [o.delivery.attempts for o in kept],
                "codes": [o.status_code for o in kept],
                "responses": [o.response for o in kept],
                "durations": [o.duration_ms for o in kept],
                "errors": [o.error for o in kept],
                "times": [o.attempted_at for o in kept],
            },
        )
    return kept


async def mark_succeeded(session: AsyncSession, endpoint_ids: Sequence[uuid.UUID]) -> None:
    """A success ends an endpoint's failing streak."""
    if endpoint_ids:
        await session.execute(_SUCCEEDED, {"ids": list(endpoint_ids)})


async def mark_failing(
    session: AsyncSession, endpoint_ids: Sequence[uuid.UUID], *, now: datetime
) -> dict[uuid.UUID, datetime]:
    """Start the failing streak of endpoints that had none; returns each enabled endpoint's
    ``failing_since``."""
    if not endpoint_ids:
        return {}
    rows = await session.execute(_FAILING, {"ids": list(endpoint_ids), "now": now})
    return {r.id: r.failing_since for r in rows}


async def disable_endpoint(
    session: AsyncSession, endpoint_id: uuid.UUID, *, reason: str, now: datetime
) -> bool:
    """Disable an enabled endpoint, fail its waiting deliveries and record a
    ``webhook.disabled`` event (which other endpoints of the tenant may subscribe to; the
    disabled one no longer matches). Returns False when it was not enabled."""
    row = (
        await session.execute(_DISABLE, {"id": endpoint_id, "reason": reason, "now": now})
    ).first()
    if row is None:
        return False
    await session.execute(
        _FAIL_WAITING, {"id": endpoint_id, "error": f"endpoint disabled: {reason}", "now": now}
    )
    await record_events(
        session,
        [
            NewEvent(
                tenant_id=TenantId(row.tenant_id),
                type=EventType.WEBHOOK_DISABLED,
                data={"id": str(endpoint_id), "endpoint": row.url, "reason": reason},
            )
        ],
    )
    return True


async def recover_expired_leases(session: AsyncSession, *, now: datetime) -> int:
    """Deliveries whose worker died (lease expired) become due again. Returns how many."""
    result = await session.execute(_RECOVER, {"now": now})
    return int(result.rowcount)  # type: ignore[attr-defined]


async def prune(session: AsyncSession, *, now: datetime) -> None:
    """Forget attempts, and finished deliveries, older than ``LOG_RETENTION``."""
    before = now - LOG_RETENTION
    await session.execute(_PRUNE_ATTEMPTS, {"before": before})
    await session.execute(_PRUNE_DELIVERIES, {"before": before})
