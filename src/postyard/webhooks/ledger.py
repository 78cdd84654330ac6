"""The dispatcher's statements: claim due deliveries under a lease, record attempts, give
back expired leases, prune the log. Every function runs in a system transaction (work across
tenants); none decides anything (``retry.py`` does)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from postyard.core.db import DriverStatement, TenantId
from postyard.core.ids import uuid7_batch
from postyard.events.service import record_events
from postyard.events.types import EventType, NewEvent

LOG_RETENTION = timedelta(days=30)

# One statement, atomic on its own (so it needs no transaction around it): lease up to
# :limit due deliveries, skipping rows other workers hold, and return them with their
# endpoints.
_CLAIM = DriverStatement.of(
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
      FROM due, webhook_endpoints e
     WHERE d.id = due.id AND e.id = d.endpoint_id
    RETURNING d.id, d.tenant_id, d.endpoint_id, d.event_id, d.attempts, e.url, e.status,
              e.secret, e.previous_secret, e.previous_secret_expires_at
    """
)
# One statement, atomic on its own: the deliveries this worker still holds get their outcome,
# their attempts are logged, and endpoints start or end their failing streak.
_RECORD = DriverStatement.of(
    """
    WITH r AS (
        SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]),
                             CAST(:nexts AS timestamptz[]), CAST(:codes AS int[]),
                             CAST(:errors AS text[]), CAST(:attempt_ids AS uuid[]),
                             CAST(:types AS text[]), CAST(:responses AS text[]),
                             CAST(:durations AS int[]), CAST(:times AS timestamptz[]))
            AS r(id, status, next_at, code, error, attempt_id, type, response, duration, at)
    ), kept AS (
        UPDATE webhook_deliveries d
           SET status = r.status, next_attempt_at = coalesce(r.next_at, d.next_attempt_at),
               last_status_code = r.code, last_error = r.error, lease_owner = NULL,
               lease_expires_at = NULL, updated_at = :now
          FROM r
         WHERE d.id = r.id AND d.status = 'sending' AND d.lease_owner = :owner
        RETURNING d.id, d.tenant_id, d.endpoint_id, d.attempts, r.status, r.error,
                  r.attempt_id, r.type, r.code, r.response, r.duration, r.at
    ), logged AS (
        INSERT INTO webhook_attempts
            (id, tenant_id, endpoint_id, delivery_id, event_type, attempt, status_code,
             response, duration_ms, error, created_at)
        SELECT attempt_id, tenant_id, endpoint_id, id, type, attempts, code, response,
               duration, error, at
          FROM kept
    ), succeeded AS (
        SELECT DISTINCT endpoint_id FROM kept WHERE status = 'succeeded'
    ), cleared AS (
        UPDATE webhook_endpoints SET failing_since = NULL
         WHERE id IN (SELECT endpoint_id FROM succeeded) AND failing_since IS NOT NULL
    ), failing AS (
        UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, :now)
         WHERE id IN (SELECT endpoint_id FROM kept WHERE error IS NOT NULL
                      EXCEPT SELECT endpoint_id FROM succeeded)
           AND status = 'enabled'
        RETURNING id, failing_since
    )
    SELECT 'kept' AS kind, id, NULL::timestamptz AS failing_since FROM kept
    UNION ALL
    SELECT 'failing', id, failing_since FROM failing
    """
)
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


@dataclass(frozen=True, slots=True)
class Claim:
    deliveries: list[Claimed]
    endpoints: dict[uuid.UUID, EndpointRow]


@dataclass(frozen=True, slots=True)
class Recorded:
    kept: list[Outcome]
    """The outcomes recorded (those of deliveries whose lease this worker still held)."""
    failing: dict[uuid.UUID, datetime]
    """Each enabled endpoint with a failed attempt and no success: its ``failing_since``."""


async def claim_due(
    conn: asyncpg.Connection, *, owner: str, limit: int, lease: timedelta, now: datetime
) -> Claim:
    """Lease up to ``limit`` due deliveries, with their endpoints, skipping rows other
    workers hold: one statement, on a bare system connection (``Database.system_conn``;
    atomic on its own, no transaction needed)."""
    params = {"now": now, "limit": limit, "owner": owner, "until": now + lease}
    rows = await conn.fetch(_CLAIM.sql, *_CLAIM.arguments(params))
    claimed = [
        Claimed(r["id"], TenantId(r["tenant_id"]), r["endpoint_id"], r["event_id"], r["attempts"])
        for r in rows
    ]
    endpoints: dict[uuid.UUID, EndpointRow] = {}
    for r in rows:  # every row repeats its endpoint: one EndpointRow each
        if r["endpoint_id"] not in endpoints:
            endpoints[r["endpoint_id"]] = EndpointRow(
                r["endpoint_id"],
                TenantId(r["tenant_id"]),
                r["url"],
                r["status"],
                r["secret"],
                r["previous_secret"],
                r["previous_secret_expires_at"],
            )
    return Claim(claimed, endpoints)


async def record_outcomes(
    conn: asyncpg.Connection, outcomes: Sequence[Outcome], *, owner: str, now: datetime
) -> Recorded:
    """Store each outcome and its attempt, and start or end the endpoints' failing streaks,
    in one statement (``conn``: a bare system connection); rows whose lease this worker lost
    are left to their new holder."""
    if not outcomes:
        return Recorded([], {})
    params = {
        "owner": owner,
        "now": now,
        "ids": [o.delivery.id for o in outcomes],
        "statuses": [o.status for o in outcomes],
        "nexts": [o.next_attempt_at for o in outcomes],
        "codes": [o.status_code for o in outcomes],
        "errors": [o.error for o in outcomes],
        "attempt_ids": uuid7_batch(len(outcomes)),
        "types": [o.event_type for o in outcomes],
        "responses": [o.response for o in outcomes],
        "durations": [o.duration_ms for o in outcomes],
        "times": [o.attempted_at for o in outcomes],
    }
    rows = await conn.fetch(_RECORD.sql, *_RECORD.arguments(params))
    kept_ids = {r["id"] for r in rows if r["kind"] == "kept"}
    return Recorded(
        [o for o in outcomes if o.delivery.id in kept_ids],
        {r["id"]: r["failing_since"] for r in rows if r["kind"] == "failing"},
    )


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
