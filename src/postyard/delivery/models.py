"""Tables of the delivery domain: what the built-in capture server received, and holds."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from postyard.core.db import Base


class CapturedMessage(Base):
    """A message as the capture server received it over SMTP (capture mode)."""

    __tablename__ = "captured_messages"
    __table_args__ = (
        Index("ix_captured_messages_tenant_id_message_id", "tenant_id", "message_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    message_id: Mapped[uuid.UUID] = mapped_column()
    mail_from: Mapped[str] = mapped_column(Text)
    recipients: Mapped[list[str]] = mapped_column(ARRAY(Text))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class Hold(Base):
    """Traffic an operator or a tenant has stopped: a tenant's, one sending domain's or one
    destination's (recipient domain or site). Rows it catches wait with status ``held``."""

    __tablename__ = "holds"
    __table_args__ = (
        CheckConstraint("kind IN ('tenant', 'domain', 'destination')", name="kind"),
        CheckConstraint("origin IN ('tenant', 'operator')", name="origin"),
        CheckConstraint("(kind = 'tenant') = (value = '')", name="value_matches_kind"),
        CheckConstraint("tenant_id IS NOT NULL OR origin = 'operator'", name="global_by_operator"),
        Index("ix_holds_active", "tenant_id", postgresql_where=text("released_at IS NULL")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(253))
    reason: Mapped[str] = mapped_column(Text)
    origin: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
