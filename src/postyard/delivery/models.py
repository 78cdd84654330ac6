"""Tables of the delivery domain: what the built-in capture server received, and holds."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
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


class Warmup(Base):
    """A sending domain's warm-up: the day it started, its ramp (NULL: the settings' ramp)
    and how many recipients went out on ``counted_on``."""

    __tablename__ = "warmups"
    __table_args__ = (CheckConstraint("sent >= 0", name="sent"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    domain: Mapped[str] = mapped_column(String(253), primary_key=True)
    started_on: Mapped[date] = mapped_column(Date)
    schedule: Mapped[list[int] | None] = mapped_column(ARRAY(Integer))
    counted_on: Mapped[date] = mapped_column(Date)
    sent: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class IpWarmup(Base):
    """A source address's warm-up (no tenant: the address is the instance's), with the
    day's count across every tenant that sends from it."""

    __tablename__ = "ip_warmups"
    __table_args__ = (CheckConstraint("sent >= 0", name="sent"),)

    address: Mapped[str] = mapped_column(String(45), primary_key=True)
    started_on: Mapped[date] = mapped_column(Date)
    schedule: Mapped[list[int] | None] = mapped_column(ARRAY(Integer))
    counted_on: Mapped[date] = mapped_column(Date)
    sent: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DestinationState(Base):
    """A destination site's adaptive shaping state, shared by every worker (no tenant)."""

    __tablename__ = "destination_states"

    site: Mapped[str] = mapped_column(String(253), primary_key=True)
    rate: Mapped[float] = mapped_column(Float)
    suspended_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    throttles_in_a_row: Mapped[int] = mapped_column(Integer)
    last_throttle: Mapped[str | None] = mapped_column(Text)
    last_change: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class IpPoolAssignment(Base):
    """Which IP pool (a name from the settings) a tenant's stream leaves from."""

    __tablename__ = "ip_pool_assignments"
    __table_args__ = (CheckConstraint("stream IN ('transactional', 'bulk')", name="stream"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    stream: Mapped[str] = mapped_column(String(16), primary_key=True)
    pool: Mapped[str] = mapped_column(String(64))
