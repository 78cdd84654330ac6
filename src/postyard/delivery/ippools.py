"""IP pools: which local address (and EHLO name) a message leaves from.

The addresses and pools are settings (``POSTYARD_IP_POOLS__*``): an address belongs to the
host and its PTR record names its EHLO name. Which pool a tenant's mail uses is data:
``ip_pool_assignments`` per tenant and stream, else the settings' pool for the stream, else
the default pool, else no binding (the operating system chooses). Within a pool a message
always gets the same address (chosen by its id), so retries keep the reputation together.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from postyard.core.db import TenantId
from postyard.core.errors import ValidationFailed
from postyard.delivery.models import IpPoolAssignment
from postyard.delivery.session import SourceAddress

STREAMS = ("transactional", "bulk")


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """From the settings: pools of addresses, per-stream defaults and the default pool."""

    pools: Mapping[str, tuple[SourceAddress, ...]] = field(default_factory=dict)
    stream_pools: Mapping[str, str] = field(default_factory=dict)
    default_pool: str | None = None


@dataclass(frozen=True, slots=True)
class Assignment:
    tenant_id: TenantId
    stream: str
    pool: str


def choose(
    config: PoolConfig,
    assignments: Mapping[tuple[TenantId, str], str],
    *,
    tenant_id: TenantId,
    bulk: bool,
    message_id: uuid.UUID,
) -> SourceAddress | None:
    """The source address of one message (pure); None when no pool applies."""
    stream = "bulk" if bulk else "transactional"
    name = (
        assignments.get((tenant_id, stream))
        or config.stream_pools.get(stream)
        or config.default_pool
    )
    addresses = config.pools.get(name) if name else None
    if not addresses:
        return None
    return addresses[zlib.crc32(message_id.bytes) % len(addresses)]


async def load_assignments(session: AsyncSession) -> dict[tuple[TenantId, str], str]:
    """Every tenant's assignments (system session: the worker)."""
    rows = await session.scalars(select(IpPoolAssignment))
    return {(TenantId(r.tenant_id), r.stream): r.pool for r in rows}


async def assign(
    session: AsyncSession, tenant_id: TenantId, *, stream: str, pool: str, known: Sequence[str]
) -> Assignment:
    """Send ``tenant_id``'s ``stream`` mail from ``pool``. Raises ValidationFailed for an
    unknown stream or a pool the settings do not define."""
    if stream not in STREAMS:
        raise ValidationFailed(f"stream must be one of {', '.join(STREAMS)}")
    if pool not in known:
        raise ValidationFailed(
            f"unknown IP pool {pool!r} (configured: {', '.join(known) or 'none'})"
        )
    await session.execute(
        insert(IpPoolAssignment)
        .values(tenant_id=tenant_id, stream=stream, pool=pool)
        .on_conflict_do_update(index_elements=["tenant_id", "stream"], set_={"pool": pool})
    )
    return Assignment(tenant_id, stream, pool)


async def unassign(session: AsyncSession, tenant_id: TenantId, *, stream: str) -> bool:
    result = await session.execute(
        delete(IpPoolAssignment).where(
            IpPoolAssignment.tenant_id == tenant_id, IpPoolAssignment.stream == stream
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def list_assignments(session: AsyncSession, tenant_id: TenantId) -> list[Assignment]:
    rows = await session.scalars(
        select(IpPoolAssignment)
        .where(IpPoolAssignment.tenant_id == tenant_id)
        .order_by(IpPoolAssignment.stream)
    )
    return [Assignment(TenantId(r.tenant_id), r.stream, r.pool) for r in rows]
