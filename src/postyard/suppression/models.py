"""The suppressions table: one row per (tenant, address), addresses compared case-insensitively."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from postyard.core.db import Base
from postyard.suppression.types import SuppressionReason

REASONS = tuple(r.value for r in SuppressionReason)


class Suppression(Base):
    __tablename__ = "suppressions"
    __table_args__ = (
        CheckConstraint("reason IN (" + ", ".join(f"'{r}'" for r in REASONS) + ")", name="reason"),
        # The one index: uniqueness, the upsert's conflict target and every lookup by address.
        Index(
            "uq_suppressions_tenant_id_lower_email", "tenant_id", text("lower(email)"), unique=True
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(String(16))
    # The message whose bounce or complaint caused the entry; no foreign key, the entry
    # outlives any clean-up of old messages.
    source_email_id: Mapped[uuid.UUID | None] = mapped_column()
    detail: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
