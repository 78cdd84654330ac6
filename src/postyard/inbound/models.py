"""The inbound domain's table: counts of reports the MX listener dropped, by reason.

Not a tenant table: a forged or unreadable report belongs to no tenant. Only the system
role reads and writes it (the listener counts, operators read with ``postyard inbound
drops``). One row per reason keeps it tiny however many reports are dropped.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from postyard.core.db import Base


class InboundDrop(Base):
    __tablename__ = "inbound_drops"

    reason: Mapped[str] = mapped_column(String(32), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    first_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
