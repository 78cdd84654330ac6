"""The tracking domain's table: what was tracked in a message, and what came of it."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, Text, func, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from postyard.core.db import Base


class TrackedMessage(Base):
    """One row per message accepted with open or click tracking or an unsubscribe link.

    ``delivery_id`` and ``recipient`` name the one recipient when the message has exactly
    one (then events and unsubscribes are that recipient's); None for a message to several.
    ``links`` are the original URLs, in the order of the click tokens' link indexes.
    """

    __tablename__ = "tracked_messages"
    __table_args__ = (
        # The mailto unsubscribe token names a delivery (it must fit a 64-octet local part).
        Index(
            "ix_tracked_messages_delivery_id",
            "delivery_id",
            postgresql_where=text("delivery_id IS NOT NULL"),
        ),
    )

    message_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    delivery_id: Mapped[uuid.UUID | None] = mapped_column()
    recipient: Mapped[str | None] = mapped_column(Text)
    open_tracking: Mapped[bool] = mapped_column(Boolean)
    click_tracking: Mapped[bool] = mapped_column(Boolean)
    unsubscribe: Mapped[bool] = mapped_column(Boolean)
    links: Mapped[list[str]] = mapped_column(ARRAY(Text))
    opens: Mapped[int] = mapped_column(Integer, server_default="0")
    machine_opens: Mapped[int] = mapped_column(Integer, server_default="0")
    clicks: Mapped[int] = mapped_column(Integer, server_default="0")
    machine_clicks: Mapped[int] = mapped_column(Integer, server_default="0")
    unsubscribed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
