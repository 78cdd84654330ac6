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


async def is_verified_sender(session: AsyncSession, tenant_id: TenantId, domain: str) -> bool:
    """Whether ``domain`` (ASCII form) is a verified domain of the tenant."""
    found = await session.scalar(
        select(Domain.id).where(
            Domain.tenant_id == tenant_id,
            Domain.name == domain.lower(),
            Domain.status == DomainStatus.VERIFIED,
        )
    )
    return found is not None


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


async def tracking_defaults(
    session: AsyncSession, tenant_id: TenantId, names: set[str]
) -> dict[str, TrackingDefaults]:
    """The tracking settings of those of ``names`` (ASCII, lowercase) that are domains of
    the tenant, in one query; a name that is not a domain of the tenant is missing."""
    if not names:
        return {}
    rows = await session.execute(
        select(
            Domain.name, Domain.open_tracking, Domain.click_tracking, Domain.status,
            Domain.return_path,
        ).where(Domain.tenant_id == tenant_id, Domain.name.in_(sorted(names)))
    )  # fmt: skip
    return {
        name: TrackingDefaults(
            open_tracking=opens,
            click_tracking=clicks,
            return_path_domain=(
                f"{return_path}.{name}" if status == DomainStatus.VERIFIED else None
            ),
        )
        for name, opens, clicks, status, return_path in rows
    }


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
