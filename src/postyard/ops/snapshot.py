"""Reads the metrics snapshot: one statement as the system role (every tenant's rows). Each
count names its statuses as constants, so that the planner can prove the predicates of the
partial indexes of waiting rows and never scans the finished ones (a parameter array would
not let it: tests/ops checks the plans)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from postyard import __version__
from postyard.core.db import Database
from postyard.ops.metrics import Queue, Snapshot

# $1: now (the app's clock). Due: what a claim would take, waiting rows whose time came.
SNAPSHOT = """
SELECT
  (SELECT json_build_object(
      'queued', count(*) FILTER (WHERE status = 'queued'),
      'scheduled', count(*) FILTER (WHERE status = 'scheduled'),
      'deferred', count(*) FILTER (WHERE status = 'deferred'))
     FROM deliveries WHERE status IN ('queued', 'scheduled', 'deferred')) AS waiting,
  (SELECT count(*) FROM deliveries WHERE status = 'sending') AS sending,
  (SELECT count(*) FROM deliveries WHERE status = 'held') AS held,
  (SELECT count(*) FROM deliveries
    WHERE status IN ('queued', 'scheduled', 'deferred') AND next_attempt_at <= $1) AS due,
  (SELECT min(next_attempt_at) FROM deliveries
    WHERE status IN ('queued', 'scheduled', 'deferred') AND next_attempt_at <= $1) AS oldest,
  (SELECT count(*) FROM deliveries  -- by the server's clock, as the recovery of leases
    WHERE status = 'sending' AND lease_expires_at < now()) AS expired,
  (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending') AS webhooks_pending,
  (SELECT count(*) FROM webhook_deliveries WHERE status = 'sending') AS webhooks_sending,
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
        row = await conn.fetchrow(SNAPSHOT, now)
    assert row is not None  # a SELECT without FROM returns one row
    deliveries = {**_counts(row["waiting"]), "sending": row["sending"], "held": row["held"]}
    webhooks = {"pending": row["webhooks_pending"], "sending": row["webhooks_sending"]}
    return Snapshot(
        taken_at=now,
        version=__version__,
        deliveries=Queue(deliveries, row["due"], row["oldest"], row["expired"]),
        webhooks=Queue(
            webhooks,
            row["webhooks_due"],
            row["webhooks_oldest"],
            row["webhooks_expired"],
        ),
        events=row["events"],
        organizations=_counts(row["organizations"]),
        connections=row["connections"],
        max_connections=row["max_connections"],
    )
