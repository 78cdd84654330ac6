"""What the ledger offers reports that come back after sending (bounces, complaints,
unsubscribes): find the delivery a report names, and mark it bounced.

``*_unscoped`` functions run in a ``system_tx`` (a report names a delivery, not a tenant);
the others in the delivery's tenant transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from postyard.core.db import TenantId
from postyard.sending.models import Delivery, Message

# Statuses a delivery may be in when an asynchronous bounce arrives for it: handed over
# (delivered), being recorded as handed over (sending: the DSN beat the worker's commit),
# or waiting for a retry after a lost reply (deferred); failed (gave up on temporary
# errors) is made more specific. Never attempted (queued, scheduled), canceled: no.
BOUNCEABLE = ("delivered", "sending", "deferred", "failed")


@dataclass(frozen=True, slots=True)
class DeliveryRef:
    id: uuid.UUID
    tenant_id: TenantId
    message_id: uuid.UUID
    recipient: str
    status: str
    attempts: int


_COLUMNS = (
    Delivery.id,
    Delivery.tenant_id,
    Delivery.message_id,
    Delivery.recipient,
    Delivery.status,
    Delivery.attempts,
)


def _ref(row: Row[uuid.UUID, uuid.UUID, uuid.UUID, str, str, int]) -> DeliveryRef:
    return DeliveryRef(
        id=row.id,
        tenant_id=TenantId(row.tenant_id),
        message_id=row.message_id,
        recipient=row.recipient,
        status=row.status,
        attempts=row.attempts,
    )


async def find_delivery_unscoped(
    session: AsyncSession, delivery_id: uuid.UUID
) -> DeliveryRef | None:
    """The delivery with this id in any tenant (session: a system_tx)."""
    row = (await session.execute(select(*_COLUMNS).where(Delivery.id == delivery_id))).first()
    return _ref(row) if row is not None else None


async def find_sole_delivery_by_message_id_unscoped(
    session: AsyncSession, tenant_ids: Sequence[TenantId], message_id_header: str
) -> DeliveryRef | None:
    """The delivery of the message of one of ``tenant_ids`` whose ``Message-ID`` header is
    ``message_id_header``, when that message had exactly one recipient (session: a
    system_tx). A message with several recipients is not matched: each of them holds its
    Message-ID, so naming it proves nothing about which recipient complains."""
    if not tenant_ids:
        return None
    rows = (
        await session.execute(
            select(*_COLUMNS)
            .join(Message, Message.id == Delivery.message_id)
            .where(
                Message.message_id_header == message_id_header,
                Message.tenant_id.in_(list(tenant_ids)),
            )
            .limit(2)
        )
    ).all()
    if len(rows) != 1:
        return None
    siblings = await session.scalar(
        select(func.count()).select_from(Delivery).where(Delivery.message_id == rows[0].message_id)
    )
    return _ref(rows[0]) if siblings == 1 else None


async def find_sole_delivery(
    session: AsyncSession, tenant_id: TenantId, message_id: uuid.UUID
) -> DeliveryRef | None:
    """The delivery of a message of the tenant when it had exactly one recipient (for the
    same reason as above: a signed message id does not say which recipient complains)."""
    rows = (
        await session.execute(
            select(*_COLUMNS)
            .where(Delivery.tenant_id == tenant_id, Delivery.message_id == message_id)
            .limit(2)
        )
    ).all()
    return _ref(rows[0]) if len(rows) == 1 else None


async def lock_delivery(
    session: AsyncSession, tenant_id: TenantId, delivery_id: uuid.UUID
) -> DeliveryRef | None:
    """The delivery, locked until the transaction ends (two reports for one delivery are
    applied one after the other)."""
    row = (
        await session.execute(
            select(*_COLUMNS)
            .where(Delivery.tenant_id == tenant_id, Delivery.id == delivery_id)
            .with_for_update()
        )
    ).first()
    return _ref(row) if row is not None else None


async def mark_bounced(
    session: AsyncSession,
    tenant_id: TenantId,
    delivery_id: uuid.UUID,
    *,
    reply: str,
    bounce_type: str,
) -> bool:
    """Set a delivery ``bounced`` with ``reply`` and ``bounce_type`` (one of
    ``models.BOUNCE_TYPES``) when its status is one of ``BOUNCEABLE``
    (a lease it held is released: the worker's later result for it is then not recorded);
    True when it changed."""
    result = await session.execute(
        update(Delivery)
        .where(
            Delivery.tenant_id == tenant_id,
            Delivery.id == delivery_id,
            Delivery.status.in_(BOUNCEABLE),
        )
        .values(
            status="bounced",
            bounce_type=bounce_type,
            last_reply=reply[:2000],
            lease_owner=None,
            lease_expires_at=None,
            updated_at=func.now(),
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
