"""The delivery ledger as the workers see it: claim due recipients under a lease, release or
recover leases (``delivery.record`` records the outcomes).

All functions take a ``system_tx`` session: workers serve every tenant. Rows are never deleted
to recover: a lease that expires puts its row back in the queue.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import Uuid

from postyard.core.db import DriverStatement, TenantId, driver_connection
from postyard.suppression import suppression_reasons_unscoped


class Result(StrEnum):
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    FAILED = "failed"
    SUPPRESSED = "suppressed"


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    id: uuid.UUID
    tenant_id: TenantId
    message_id: uuid.UUID
    recipient: str
    domain: str
    attempts: int
    first_attempt_at: datetime
    bulk: bool = False


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    id: uuid.UUID
    tenant_id: TenantId
    envelope_from: str
    from_domain: str
    smtputf8: bool
    raw: bytes


@dataclass(frozen=True, slots=True)
class Bounce:
    """How a bounce was classified (``delivery.classify``): ``type`` is ours (``permanent``
    suppresses the address; ``block`` is kept for shaping), ``resend_type`` and ``sub_type``
    are Resend's ``bounce.type`` and ``bounce.subType``."""

    type: str
    category: str
    resend_type: str
    sub_type: str

    @property
    def suppresses(self) -> bool:
        return self.type == "permanent"


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    delivery: ClaimedDelivery
    result: Result
    reply: str
    next_attempt_at: datetime | None = None
    bounce: Bounce | None = None
    suppression_reason: str | None = None


# One claim's candidates in one statement: the tenants with waiting rows (a skip scan over
# ix_deliveries_tenant_due: one index probe per tenant, however many rows each has;
# PostgreSQL has no native skip scan before 18), an equal share of :limit for each (as
# ``share_per_tenant`` computes it), and each tenant's oldest due rows up to that share,
# locked. Rows another lane holds are skipped so lanes never wait on each other.
#
# Here and in _START a claimed row's message is read by its primary key, one look-up per
# row, in a form the planner cannot turn into a join: as a join, the planner (which cannot
# know how few rows a claim returns) hashed the whole messages table, which only grows, so
# every claim cost more than the last (51 ms of the server's time for a 200-row claim at
# 20,000 messages, against about 1 ms by key).
_LOCK_DUE = DriverStatement.of(
    """
    WITH RECURSIVE t(tenant_id) AS (
        (SELECT tenant_id FROM deliveries WHERE status IN ('queued', 'scheduled', 'deferred')
          ORDER BY tenant_id LIMIT 1)
        UNION ALL
        SELECT (SELECT d.tenant_id FROM deliveries d
                 WHERE d.status IN ('queued', 'scheduled', 'deferred') AND d.tenant_id > t.tenant_id
                 ORDER BY d.tenant_id LIMIT 1)
          FROM t WHERE t.tenant_id IS NOT NULL
    ), waiting AS (
        SELECT tenant_id FROM t WHERE tenant_id IS NOT NULL
    ), share AS (
        SELECT CAST(greatest(1, ceil(CAST(:limit AS numeric) / greatest(1, count(*))))
                    AS integer) AS n
          FROM waiting
    )
    SELECT c.id, c.tenant_id, c.message_id, c.recipient, c.domain, c.attempts,
           c.first_attempt_at, c.next_attempt_at, c.bulk,
           (SELECT m.from_domain FROM messages m WHERE m.id = c.message_id) AS from_domain,
           (SELECT n FROM share) AS share
      FROM waiting w
      CROSS JOIN LATERAL (
            SELECT d.id, d.tenant_id, d.message_id, d.recipient, d.domain, d.attempts,
                   d.first_attempt_at, d.next_attempt_at, d.bulk
              FROM deliveries d
             WHERE d.tenant_id = w.tenant_id AND d.status IN ('queued', 'scheduled', 'deferred')
               AND d.next_attempt_at <= :now
             ORDER BY d.bulk, d.next_attempt_at
             LIMIT (SELECT n FROM share)
             FOR UPDATE OF d SKIP LOCKED
      ) c
     ORDER BY c.bulk, c.next_attempt_at
    """
)
# The lease and the leased rows' messages in one statement; a message's columns (its raw
# bytes above all) come once, with the first of its rows. LIMIT 1 keeps each LATERAL a
# look-up by key (see _LOCK_DUE).
_START = DriverStatement.of(
    """
    WITH s AS (
        UPDATE deliveries d
           SET status = 'sending', lease_owner = :owner,
               lease_expires_at = now() + CAST(:lease AS interval),
               attempts = d.attempts + 1, last_attempt_at = :now,
               first_attempt_at = coalesce(d.first_attempt_at, :now), updated_at = :now
         WHERE d.id = ANY(CAST(:ids AS uuid[]))
        RETURNING d.id, d.tenant_id, d.message_id, d.recipient, d.domain, d.attempts,
                  d.first_attempt_at, d.bulk
    ), f AS (
        SELECT s.*, row_number() OVER (PARTITION BY s.message_id) = 1 AS first FROM s
    )
    SELECT f.id, f.tenant_id, f.message_id, f.recipient, f.domain, f.attempts,
           f.first_attempt_at, f.bulk, f.first, m.envelope_from, m.from_domain, m.smtputf8,
           c.raw
      FROM f
      LEFT JOIN LATERAL (SELECT m.envelope_from, m.from_domain, m.smtputf8 FROM messages m
                          WHERE f.first AND m.id = f.message_id LIMIT 1) m ON true
      LEFT JOIN LATERAL (SELECT c.raw FROM message_contents c
                          WHERE f.first AND c.message_id = f.message_id LIMIT 1) c ON true
    """
)
_HOLD = text(
    """
    UPDATE deliveries d
       SET status = 'held', held_by = v.hold, last_reply = v.reply, updated_at = :now,
           attempts = CASE WHEN d.status = 'sending' THEN greatest(d.attempts - 1, 0)
                           ELSE d.attempts END,
           lease_owner = NULL, lease_expires_at = NULL
      FROM unnest(CAST(:ids AS uuid[]), CAST(:holds AS uuid[]), CAST(:replies AS text[]))
           AS v(id, hold, reply)
     WHERE d.id = v.id AND d.status IN ('queued', 'scheduled', 'deferred', 'sending')
    """
)
_POSTPONE = text(
    """
    UPDATE deliveries d
       SET status = 'deferred',
           attempts = CASE WHEN d.status = 'sending' THEN greatest(d.attempts - 1, 0)
                           ELSE d.attempts END,
           next_attempt_at = v.next_attempt_at, last_reply = v.reply,
           lease_owner = NULL, lease_expires_at = NULL, updated_at = :now
      FROM unnest(CAST(:ids AS uuid[]), CAST(:nexts AS timestamptz[]), CAST(:replies AS text[]))
           AS v(id, next_attempt_at, reply)
     WHERE d.id = v.id
    """
)
_RELEASE = text(
    """
    UPDATE deliveries
       SET status = 'queued', attempts = greatest(attempts - 1, 0), lease_owner = NULL,
           lease_expires_at = NULL, next_attempt_at = now(), updated_at = now()
     WHERE status = 'sending' AND lease_owner = :owner AND id = ANY(:ids)
    """
).bindparams(bindparam("ids", type_=ARRAY(Uuid())))
_RECOVER = text(
    """
    UPDATE deliveries
       SET status = 'deferred', lease_owner = NULL, lease_expires_at = NULL,
           next_attempt_at = now(), updated_at = now(),
           last_reply = 'lease expired: the worker stopped before recording a result'
     WHERE status = 'sending' AND lease_expires_at < now()
    """
)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A due recipient locked by the claiming transaction, before the worker's policies
    (holds, warm-up) decide whether it goes now."""

    id: uuid.UUID
    tenant_id: TenantId
    message_id: uuid.UUID
    recipient: str
    domain: str
    from_domain: str
    attempts: int
    next_attempt_at: datetime
    bulk: bool = False


@dataclass(frozen=True, slots=True)
class Postponed:
    """A recipient that waits without an attempt (warm-up, shaping): due again at ``until``."""

    id: uuid.UUID
    until: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class Held:
    id: uuid.UUID
    hold_id: uuid.UUID
    reason: str


def share_per_tenant(limit: int, tenants: int) -> int:
    """Rows one claim takes from each tenant: an equal share of ``limit`` (pure). One tenant
    with a 20,000-row backlog gets no more of a claim than one with ten rows."""
    return max(1, -(-limit // max(1, tenants)))


async def lock_due(
    session: AsyncSession, *, limit: int, now: datetime
) -> tuple[list[Candidate], int]:
    """Lock an equal share of ``limit`` (``share_per_tenant``) of each waiting tenant's
    oldest due recipients (skipping rows other claims hold), oldest first, in one
    statement; returns them and the share. The locks last until the transaction ends.
    A row per candidate: read on the session's driver connection (``start_sending``), which
    begins the transaction when this is its first statement."""
    conn = await driver_connection(session, begin=True)
    rows = await conn.fetch(_LOCK_DUE.sql, *_LOCK_DUE.arguments({"limit": limit, "now": now}))
    candidates = [
        Candidate(
            id=r["id"],
            tenant_id=TenantId(r["tenant_id"]),
            message_id=r["message_id"],
            recipient=r["recipient"],
            domain=r["domain"],
            from_domain=r["from_domain"],
            attempts=r["attempts"],
            next_attempt_at=r["next_attempt_at"],
            bulk=r["bulk"],
        )
        for r in rows
    ]
    return candidates, rows[0]["share"] if rows else limit


def took_all_due(candidates: Sequence[Candidate], *, share: int, limit: int) -> bool:
    """True when a claim that locked ``candidates`` left no due row unlocked behind it (pure):
    no tenant reached its share and the claim stayed under ``limit``. Rows other claims
    held (SKIP LOCKED) are theirs to send."""
    counts: dict[TenantId, int] = {}
    for c in candidates:
        counts[c.tenant_id] = counts.get(c.tenant_id, 0) + 1
    return len(candidates) < limit and all(n < share for n in counts.values())


def round_robin(candidates: Sequence[Candidate], limit: int) -> list[Candidate]:
    """At most ``limit`` candidates: transactional before bulk, and within each stream taken
    in turns: every tenant's oldest first, then every tenant's second, … (pure). With more
    tenants than ``limit``, the tenants whose oldest row is oldest go first; the others lead
    the next claim."""
    rank: dict[tuple[bool, TenantId], int] = {}
    ranked: list[tuple[bool, int, datetime, Candidate]] = []
    for c in sorted(candidates, key=lambda c: c.next_attempt_at):
        key = (c.bulk, c.tenant_id)
        rank[key] = rank.get(key, 0) + 1
        ranked.append((c.bulk, rank[key], c.next_attempt_at, c))
    ranked.sort(key=lambda r: (r[0], r[1], r[2]))
    return [c for _, _, _, c in ranked[:limit]]


async def start_sending(
    session: AsyncSession, ids: Sequence[uuid.UUID], *, owner: str, lease: timedelta, now: datetime
) -> tuple[list[ClaimedDelivery], dict[uuid.UUID, OutboundMessage]]:
    """Lease locked recipients to ``owner`` (status ``sending``, one more attempt) and load
    their messages, in one statement, on the session's own connection and transaction
    without SQLAlchemy's work per row (``driver_connection``: the claim's first statement
    has begun the transaction)."""
    if not ids:
        return [], {}
    conn = await driver_connection(session)
    params = {"owner": owner, "lease": lease, "now": now, "ids": list(ids)}
    rows = await conn.fetch(_START.sql, *_START.arguments(params))
    claimed: list[ClaimedDelivery] = []
    messages: dict[uuid.UUID, OutboundMessage] = {}
    for r in rows:
        tenant_id, message_id = TenantId(r["tenant_id"]), r["message_id"]
        claimed.append(
            ClaimedDelivery(
                id=r["id"],
                tenant_id=tenant_id,
                message_id=message_id,
                recipient=r["recipient"],
                domain=r["domain"],
                attempts=r["attempts"],
                first_attempt_at=r["first_attempt_at"],
                bulk=r["bulk"],
            )
        )
        if r["first"]:
            messages[message_id] = OutboundMessage(
                id=message_id,
                tenant_id=tenant_id,
                envelope_from=r["envelope_from"],
                from_domain=r["from_domain"],
                smtputf8=r["smtputf8"],
                raw=r["raw"],
            )
    return claimed, messages


async def hold(session: AsyncSession, held: Sequence[Held], *, now: datetime) -> None:
    """Move recipients to ``held`` under their hold (waiting or leased ones; a lease is
    dropped). They stay until the hold is released."""
    if held:
        await session.execute(
            _HOLD,
            {
                "now": now,
                "ids": [h.id for h in held],
                "holds": [h.hold_id for h in held],
                "replies": [h.reason for h in held],
            },
        )


async def postpone(session: AsyncSession, rows: Sequence[Postponed], *, now: datetime) -> None:
    """Make recipients ``deferred`` until later without counting an attempt (a leased one
    loses its lease); the reason shows in ``last_reply``."""
    if rows:
        await session.execute(
            _POSTPONE,
            {
                "now": now,
                "ids": [p.id for p in rows],
                "nexts": [p.until for p in rows],
                "replies": [p.reason for p in rows],
            },
        )


async def claim_due(
    session: AsyncSession, *, owner: str, limit: int, lease: timedelta, now: datetime
) -> tuple[list[ClaimedDelivery], dict[uuid.UUID, OutboundMessage]]:
    """Lease due recipients fairly across tenants (an equal share of ``limit`` each, oldest
    first within a tenant), with no policy applied (delivery.claim adds holds and warm-up)."""
    candidates, _ = await lock_due(session, limit=limit, now=now)
    ids = [c.id for c in round_robin(candidates, limit)]
    return await start_sending(session, ids, owner=owner, lease=lease, now=now)


async def hold_back_suppressed(
    session: AsyncSession, claimed: Sequence[ClaimedDelivery], *, now: datetime
) -> tuple[list[ClaimedDelivery], list[DeliveryResult]]:
    """Split claimed rows into those to send and results for recipients suppressed since
    their email was accepted (scheduled or retried mail); one query for the batch."""
    listed = await suppression_reasons_unscoped(
        session, [(c.tenant_id, c.recipient) for c in claimed], now
    )
    if not listed:
        return list(claimed), []
    to_send = [c for c in claimed if (c.tenant_id, c.recipient) not in listed]
    held = [
        DeliveryResult(
            c,
            Result.SUPPRESSED,
            f"suppressed ({listed[(c.tenant_id, c.recipient)]})",
            suppression_reason=listed[(c.tenant_id, c.recipient)].value,
        )
        for c in claimed
        if (c.tenant_id, c.recipient) in listed
    ]
    return to_send, held


async def release(session: AsyncSession, ids: Sequence[uuid.UUID], *, owner: str) -> None:
    """Give back leases that were never attempted (graceful shutdown)."""
    if ids:
        await session.execute(_RELEASE, {"owner": owner, "ids": list(ids)})


async def recover_expired_leases(session: AsyncSession) -> int:
    """Requeue recipients whose worker died (its lease expired). Returns how many."""
    result = await session.execute(_RECOVER)
    return int(result.rowcount)  # type: ignore[attr-defined]
