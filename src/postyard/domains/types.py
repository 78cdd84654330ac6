"""Values of the domains domain."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class DomainStatus(StrEnum):
    NOT_STARTED = "not_started"
    PENDING = "pending"
    VERIFIED = "verified"
    PARTIALLY_VERIFIED = "partially_verified"
    FAILED = "failed"
    TEMPORARY_FAILURE = "temporary_failure"


class RecordStatus(StrEnum):
    NOT_STARTED = "not_started"
    PENDING = "pending"
    VERIFIED = "verified"
    FAILED = "failed"
    TEMPORARY_FAILURE = "temporary_failure"


@dataclass(frozen=True, slots=True)
class DnsPolicy:
    """What our records point at, from the operator's settings."""

    return_path_mx_host: str
    spf_mechanisms: str
    tracking_host: str | None


@dataclass(frozen=True, slots=True)
class ExpectedRecord:
    """One record the tenant publishes. ``key`` is stable (statuses are stored under it);
    ``name`` is relative to the domain as dashboards show it; ``fqdn`` is what DNS asks."""

    key: str
    record: str
    type: str
    name: str
    fqdn: str
    value: str
    required: bool
    priority: int | None = None


@dataclass(frozen=True, slots=True)
class DomainView:
    id: uuid.UUID
    name: str
    status: DomainStatus
    created_at: datetime
    return_path: str
    open_tracking: bool
    click_tracking: bool
    tls: str
    tracking_subdomain: str | None
    records: list[tuple[ExpectedRecord, RecordStatus]]
