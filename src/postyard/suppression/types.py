"""Values of the suppression domain shared with other domains and adapters."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class SuppressionReason(StrEnum):
    """Why an address is suppressed."""

    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    MANUAL = "manual"


@dataclass(frozen=True, slots=True)
class SuppressionView:
    id: uuid.UUID
    email: str
    reason: SuppressionReason
    source_email_id: uuid.UUID | None
    detail: str | None
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
