"""Tables of the sending domain: messages, their content, one delivery row per recipient,
and idempotency records."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from postyard.core.db import Base

DELIVERY_STATUSES = (
    "queued",
    "scheduled",
    "sending",
    "deferred",
    "delivered",
    "bounced",
    "failed",
    "canceled",
    "suppressed",
    "held",
)
# The class of a bounce (delivery.classify): only 'permanent' suppresses the address;
# 'block' is the receiver's policy or our reputation, kept for per-destination shaping.
BOUNCE_TYPES = ("permanent", "transient", "block", "undetermined")


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        CheckConstraint("source IN ('api', 'smtp')", name="source"),
        CheckConstraint("stream IN ('transactional', 'bulk')", name="stream"),
        # Deliveries and contents reference their message by (tenant, id) (migration 0014).
        UniqueConstraint("tenant_id", "id"),
        Index("ix_messages_message_id_header", "message_id_header"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    api_key_id: Mapped[uuid.UUID | None] = mapped_column()
    source: Mapped[str] = mapped_column(String(8))
    stream: Mapped[str] = mapped_column(String(16), server_default="transactional")
    sender: Mapped[str] = mapped_column(Text)
    from_domain: Mapped[str] = mapped_column(Text, server_default="")
    envelope_from: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    to_addrs: Mapped[list[str]] = mapped_column(ARRAY(Text))
    cc_addrs: Mapped[list[str]] = mapped_column(ARRAY(Text))
    bcc_addrs: Mapped[list[str]] = mapped_column(ARRAY(Text))
    reply_to_addrs: Mapped[list[str]] = mapped_column(ARRAY(Text))
    html: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    message_id_header: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)
    smtputf8: Mapped[bool] = mapped_column(Boolean)
    scheduled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


def _of_its_message() -> ForeignKeyConstraint:
    """A row's message, by (tenant, id): one key where two (to the message, to the
    organization) cost a look-up each per row, and the row's tenant is its message's."""
    return ForeignKeyConstraint(
        ["tenant_id", "message_id"], ["messages.tenant_id", "messages.id"], ondelete="CASCADE"
    )


class MessageContent(Base):
    """The built MIME, apart from the message row so that listings never read it."""

    __tablename__ = "message_contents"

    __table_args__ = (_of_its_message(),)

    message_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    raw: Mapped[bytes] = mapped_column(LargeBinary)


class Delivery(Base):
    """One recipient of one message: the unit the delivery worker leases and retries."""

    __tablename__ = "deliveries"
    __table_args__ = (
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in DELIVERY_STATUSES) + ")", name="status"
        ),
        CheckConstraint("kind IN ('to', 'cc', 'bcc')", name="kind"),
        CheckConstraint(
            "bounce_type IN (" + ", ".join(f"'{t}'" for t in BOUNCE_TYPES) + ")",
            name="bounce_type",
        ),
        _of_its_message(),
        Index("ix_deliveries_message_id", "message_id"),
        Index(
            "ix_deliveries_tenant_due",
            "tenant_id",
            "bulk",
            "next_attempt_at",
            postgresql_where=text("status IN ('queued', 'scheduled', 'deferred')"),
        ),
        Index("ix_deliveries_held", "held_by", postgresql_where=text("status = 'held'")),
        Index(
            "ix_deliveries_leased",
            "lease_expires_at",
            postgresql_where=text("status = 'sending'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    message_id: Mapped[uuid.UUID] = mapped_column()
    recipient: Mapped[str] = mapped_column(Text)
    domain: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(4))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    first_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_owner: Mapped[str | None] = mapped_column(Text)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_reply: Mapped[str | None] = mapped_column(Text)
    bulk: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    """The message's stream is bulk (copied so the claim orders by it from the index)."""
    held_by: Mapped[uuid.UUID | None] = mapped_column()
    """The hold that keeps this row waiting (status ``held``); see delivery/holds.py."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    bounce_type: Mapped[str | None] = mapped_column(String(16))


class IdempotencyRecord(Base):
    """A finished request under an Idempotency-Key, replayed for 24 hours."""

    __tablename__ = "idempotency_keys"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    request_hash: Mapped[bytes] = mapped_column(LargeBinary)
    response: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
