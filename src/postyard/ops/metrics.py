"""The instance's metrics as Prometheus text (exposition format 0.0.4), from one snapshot of
its queues read from PostgreSQL (pure: no I/O here).

Every figure comes from the database, so any API process answers for the whole instance
(all its processes and tenants). There are no per-process counters: `postyard up` runs
several processes, and a scrape reaches only one of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DELIVERY_WAITING = ("queued", "scheduled", "deferred", "sending", "held")
"""The statuses a recipient is in before its outcome (canceled and the outcomes are not
counted: they only grow)."""
WEBHOOK_WAITING = ("pending", "sending")
ORGANIZATION_STATUSES = ("active", "suspended", "deleted")


@dataclass(frozen=True, slots=True)
class Queue:
    """One queue's state at ``Snapshot.taken_at``."""

    by_status: Mapping[str, int]
    due: int
    """Rows whose next attempt time has come."""
    oldest_due_at: datetime | None
    """The earliest next attempt time among the due rows."""
    expired_leases: int
    """Rows in `sending` whose lease ran out: their worker died, and they will be retried."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    taken_at: datetime
    version: str
    deliveries: Queue
    webhooks: Queue
    events: int
    """Events written since the database was created (the last event sequence number)."""
    organizations: Mapping[str, int] = field(default_factory=dict)
    connections: int = 0
    max_connections: int = 0


def _number(value: float) -> str:
    """Whole numbers in full (``:g`` would round a counter past a million), others as is."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Text:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(
        self, name: str, kind: str, help_text: str, samples: list[tuple[str, float]]
    ) -> None:
        """``samples`` are (label text, value); the label text is ``''`` or ``{a="b"}``."""
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        self.lines += [f"{name}{labels} {_number(value)}" for labels, value in samples]

    def by_status(
        self, name: str, help_text: str, values: Mapping[str, int], keys: tuple[str, ...]
    ) -> None:
        """One sample per status of ``keys`` (0 for those absent from ``values``)."""
        samples = [(f'{{status="{_label(key)}"}}', float(values.get(key, 0))) for key in keys]
        self.metric(name, "gauge", help_text, samples)


def _age(snapshot: Snapshot, since: datetime | None) -> float:
    if since is None:
        return 0.0
    return max((snapshot.taken_at - since).total_seconds(), 0.0)


def _queue(
    out: _Text, snapshot: Snapshot, prefix: str, queue: Queue, *, what: str, keys: tuple[str, ...]
) -> None:
    out.by_status(prefix, f"{what} waiting or in flight, by status.", queue.by_status, keys)
    out.metric(f"{prefix}_due", "gauge", f"{what} whose next attempt is due now.",
               [("", queue.due)])  # fmt: skip
    out.metric(
        f"{prefix}_oldest_due_seconds", "gauge",
        f"How long the longest-waiting due {what.lower()} has been due (0: none is).",
        [("", _age(snapshot, queue.oldest_due_at))],
    )  # fmt: skip
    out.metric(
        f"{prefix}_expired_leases", "gauge",
        f"{what} leased to a worker whose lease ran out (retried once noticed).",
        [("", queue.expired_leases)],
    )  # fmt: skip


def render(snapshot: Snapshot) -> str:
    """The Prometheus text of ``snapshot``."""
    out = _Text()
    out.metric("postyard_build_info", "gauge", "The running release.",
               [(f'{{version="{_label(snapshot.version)}"}}', 1)])  # fmt: skip
    _queue(out, snapshot, "postyard_deliveries", snapshot.deliveries, what="Recipients",
           keys=DELIVERY_WAITING)  # fmt: skip
    _queue(out, snapshot, "postyard_webhook_deliveries", snapshot.webhooks,
           what="Webhook deliveries", keys=WEBHOOK_WAITING)  # fmt: skip
    out.metric("postyard_events_total", "counter", "Events written (all types, all tenants).",
               [("", snapshot.events)])  # fmt: skip
    out.by_status("postyard_organizations", "Organizations, by status.",
                  snapshot.organizations, ORGANIZATION_STATUSES)  # fmt: skip
    out.metric("postyard_database_connections", "gauge",
               "Connections open to Postyard's database (all roles and processes).",
               [("", snapshot.connections)])  # fmt: skip
    out.metric("postyard_database_max_connections", "gauge", "The server's max_connections.",
               [("", snapshot.max_connections)])  # fmt: skip
    return "\n".join(out.lines) + "\n"
