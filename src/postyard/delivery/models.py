"""Tables of the delivery domain: what the built-in capture server received."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, LargeBinary, Text, func
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
