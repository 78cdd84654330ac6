"""What sending needs from domains: whether a From domain is verified, and the material to
sign and bounce-route its mail."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from postyard.core.db import TenantId
from postyard.domains.models import DkimKey, Domain
from postyard.domains.types import DomainStatus


@dataclass(frozen=True, slots=True)
class SigningMaterial:
    domain: str
    return_path: str
    keys: list[tuple[uuid.UUID, str, str, bytes]]
    """(key id, selector, algorithm, encrypted private key) of the active keys."""


async def signing_material(
    session: AsyncSession, tenant_id: TenantId, domain: str
) -> SigningMaterial | None:
    """What the worker needs to sign and bounce-route mail from ``domain``: None unless the
    domain is verified (session: a system_tx)."""
    found = await session.scalar(
        select(Domain).where(
            Domain.tenant_id == tenant_id,
            Domain.name == domain.lower(),
            Domain.status == DomainStatus.VERIFIED,
        )
    )
    if found is None:
        return None
    keys = list(
        await session.scalars(
            select(DkimKey).where(
                DkimKey.tenant_id == tenant_id,
                DkimKey.domain_id == found.id,
                DkimKey.state == "active",
            )
        )
    )
    return SigningMaterial(
        domain=found.name,
        return_path=f"{found.return_path}.{found.name}",
        keys=[(k.id, k.selector, k.algorithm, k.private_key) for k in keys],
    )


@dataclass(frozen=True, slots=True)
class TrackingDefaults:
    open_tracking: bool
    click_tracking: bool
    return_path_domain: str | None
    """``<return path>.<domain>`` when the domain is verified (its MX is ours), else None."""


async def return_path_owners_unscoped(session: AsyncSession, fqdn: str) -> list[TenantId]:
    """The tenants with a domain whose return-path domain (``<return_path>.<name>``) is
    ``fqdn``, whatever its status (session: a system_tx): where bounces and complaints for
    their mail arrive."""
    label, _, name = fqdn.lower().rstrip(".").partition(".")
    if not label or not name:
        return []
    rows = await session.scalars(
        select(Domain.tenant_id).where(Domain.name == name, Domain.return_path == label)
    )
    return [TenantId(t) for t in rows]
