"""Event names (Resend's) and the values other domains pass in."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from postyard.core.db import TenantId


class EventType(StrEnum):
    EMAIL_SENT = "email.sent"
    EMAIL_SCHEDULED = "email.scheduled"
    EMAIL_DELIVERED = "email.delivered"
    EMAIL_DELIVERY_DELAYED = "email.delivery_delayed"
    EMAIL_BOUNCED = "email.bounced"
    EMAIL_FAILED = "email.failed"
    EMAIL_CANCELED = "email.canceled"
    EMAIL_SUPPRESSED = "email.suppressed"
    EMAIL_OPENED = "email.opened"
    EMAIL_CLICKED = "email.clicked"
    EMAIL_COMPLAINED = "email.complained"
    EMAIL_UNSUBSCRIBED = "email.unsubscribed"
    DOMAIN_CREATED = "domain.created"
    DOMAIN_UPDATED = "domain.updated"
    DOMAIN_DELETED = "domain.deleted"

    @property
    def short(self) -> str:
        """The name without its family, as Resend's ``last_event`` shows it."""
        return self.value.split(".", 1)[1]


@dataclass(frozen=True, slots=True)
class NewEvent:
    tenant_id: TenantId
    type: EventType
    message_id: uuid.UUID | None = None
    recipient: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EventView:
    id: uuid.UUID
    type: str
    recipient: str | None
    data: dict[str, Any]
    created_at: datetime
