"""Values the webhooks domain hands to adapters: statuses, views, the event names one may
subscribe to."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from postyard.events.types import EventType

# Resend's event names that Postyard does not write yet are accepted, so that an endpoint
# set up for them starts receiving them the day they are written.
_RESEND_NAMES = (
    "email.complained",
    "email.opened",
    "email.clicked",
    "email.suppressed",
    "email.received",
    "contact.created",
    "contact.updated",
    "contact.deleted",
)
SUBSCRIBABLE_EVENTS = frozenset(e.value for e in EventType) | frozenset(_RESEND_NAMES)


class EndpointStatus(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class EndpointView:
    id: uuid.UUID
    url: str
    events: list[str]
    status: EndpointStatus
    disabled_reason: str | None
    failing_since: datetime | None
    previous_secret_expires_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CreatedEndpoint:
    """An endpoint and its signing secret, which is shown this once."""

    view: EndpointView
    secret: str


@dataclass(frozen=True, slots=True)
class AttemptView:
    id: uuid.UUID
    delivery_id: uuid.UUID
    event_type: str
    attempt: int
    status_code: int | None
    response: str
    duration_ms: int
    error: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DeliveryView:
    id: uuid.UUID
    endpoint_id: uuid.UUID
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
