"""Reads the metrics snapshot: one statement as the system role (every tenant's rows), on
the partial indexes of the waiting rows, never a scan of the finished ones."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from postyard import __version__
from postyard.core.db import Database
from postyard.ops.metrics import DELIVERY_WAITING, WEBHOOK_WAITING, Queue, Snapshot

# $1: now (the app's clock). Due is what a claim would take: queued, scheduled or deferred whose time came.
_SNAPSHOT = """
SELECT
  (SELECT coalesce(json_object_agg(status, n), '{}') FROM (
      SELECT status, count(*) AS n FROM deliveries
       WHERE status = ANY($2::text[]) GROUP BY status) d) AS deliveries,
  (SELECT count(*) FROM deliveries
    WHERE status IN ('queued', 'scheduled', 'deferred') AND next_attempt_at <= $1) AS due,
  (SELECT min(next_attempt_at) FROM deliveries
    WHERE status IN ('queued', 'scheduled', 'deferred') AND next_attempt_at <= $1) AS oldest,
  (SELECT count(*) FROM deliveries  -- by the server's clock, as the recovery of leases
    WHERE status = 'sending' AND lease_expires_at < now()) AS expired,
  (SELECT coalesce(json_object_agg(status, n), '{}') FROM (
      SELECT status, count(*) AS n FROM webhook_deliveries
       WHERE status = ANY($3::text[]) GROUP BY status) w) AS webhooks,
  (SELECT count(*) FROM webhook_deliveries
    WHERE status = 'pending' AND next_attempt_at <= $1) AS webhooks_due,
  (SELECT min(next_attempt_at) FROM webhook_deliveries
    WHERE status = 'pending' AND next_attempt_at <= $1) AS webhooks_oldest,
  (SELECT count(*) FROM webhook_deliveries
    WHERE status = 'sending' AND lease_expires_at < $1) AS webhooks_expired,
  (SELECT coalesce(max(seq), 0) FROM events) AS events,
  (SELECT coalesce(json_object_agg(status, n), '{}') FROM (
      SELECT status, count(*) AS n FROM organizations GROUP BY status) o) AS organizations,
  (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()) AS connections,
  current_setting('max_connections')::int AS max_connections
"""


def _counts(value: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in json.loads(value).items()}


async def read_snapshot(db: Database, now: datetime) -> Snapshot:
    async with db.system_conn(reason="metrics") as conn:
        row = await conn.fetchrow(_SNAPSHOT, now, list(DELIVERY_WAITING), list(WEBHOOK_WAITING))
    assert row is not None  # a SELECT without FROM returns one row
    return Snapshot(
        taken_at=now,
        version=__version__,
        deliveries=Queue(_counts(row["deliveries"]), row["due"], row["oldest"], row["expired"]),
        webhooks=Queue(
            _counts(row["webhooks"]),
            row["webhooks_due"],
            row["webhooks_oldest"],
            row["webhooks_expired"],
        ),
        events=row["events"],
        organizations=_counts(row["organizations"]),
        connections=row["connections"],
        max_connections=row["max_connections"],
    )
