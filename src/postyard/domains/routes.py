"""/v1/domains: thin adapters over the domains service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import dns.asyncresolver
from fastapi import APIRouter, Depends, Query, Request

from postyard.core.http import Services
from postyard.core.json_route import JsonRoute
from postyard.core.pagination import PageRequest
from postyard.domains import service
from postyard.domains.schemas import (
    CreateDomainRequest,
    DeletedDomain,
    DomainList,
    DomainOut,
    DomainRef,
    UpdateDomainRequest,
)
from postyard.domains.types import DnsPolicy
from postyard.domains.verification import verify_domain
from postyard.tenancy.auth import FullAccess

router = APIRouter(route_class=JsonRoute, prefix="/domains", tags=["Domains"])


@dataclass(frozen=True, slots=True)
class DomainDeps:
    """What the domain routes need beyond AppServices, set on app.state at start-up."""

    policy: DnsPolicy
    resolver: dns.asyncresolver.Resolver
    kek: bytes
    default_return_path: str


def _deps(request: Request) -> DomainDeps:
    deps: DomainDeps = request.app.state.domain_deps
    return deps


Deps = Annotated[DomainDeps, Depends(_deps)]


@router.post("")
async def create_domain(
    body: CreateDomainRequest, principal: FullAccess, services: Services, deps: Deps
) -> DomainOut:
    """Add a sending domain; the response lists the DNS records to publish."""
    options = service.DomainSettings(
        open_tracking=body.open_tracking,
        click_tracking=body.click_tracking,
        tls=body.tls,
        tracking_subdomain=body.tracking_subdomain,
    )
    async with services.db.tenant_tx(principal.tenant_id) as session:
        view = await service.create_domain(
            session,
            principal.tenant_id,
            name=body.name,
            return_path=body.custom_return_path or deps.default_return_path,
            options=options,
            kek=deps.kek,
            policy=deps.policy,
            now=services.clock.now(),
        )
    return DomainOut.of(view)


@router.get("")
async def list_domains(
    principal: FullAccess,
    services: Services,
    deps: Deps,
    *,
    limit: Annotated[int | None, Query()] = None,
    after: Annotated[str | None, Query()] = None,
    before: Annotated[str | None, Query()] = None,
) -> DomainList:
    """List the organization's domains, newest first."""
    page = PageRequest.parse(limit, after, before)
    async with services.db.tenant_tx(principal.tenant_id) as session:
        result = await service.list_domains(
            session, principal.tenant_id, page=page, policy=deps.policy
        )
    return DomainList(has_more=result.has_more, data=[DomainOut.of(v) for v in result.items])


@router.get("/{domain_id}")
async def get_domain(
    domain_id: str, principal: FullAccess, services: Services, deps: Deps
) -> DomainOut:
    """A domain with each record's status."""
    async with services.db.tenant_tx(principal.tenant_id) as session:
        view = await service.get_domain(session, principal.tenant_id, domain_id, policy=deps.policy)
    return DomainOut.of(view)


@router.post("/{domain_id}/verify")
async def verify(
    domain_id: str, principal: FullAccess, services: Services, deps: Deps
) -> DomainRef:
    """Check the records now (and keep re-checking for 72 hours while pending)."""
    view = await verify_domain(
        services.db,
        deps.resolver,
        principal.tenant_id,
        domain_id,
        policy=deps.policy,
        now=services.clock.now(),
        restart=True,
    )
    return DomainRef(id=str(view.id), status=view.status.value)


@router.patch("/{domain_id}")
async def update_domain(
    domain_id: str,
    body: UpdateDomainRequest,
    principal: FullAccess,
    services: Services,
    *,
    deps: Deps,
) -> DomainRef:
    """Change tracking and TLS options."""
    changes = body.model_dump(exclude_unset=True)
    async with services.db.tenant_tx(principal.tenant_id) as session:
        view = await service.update_domain(
            session, principal.tenant_id, domain_id, changes=changes, policy=deps.policy
        )
    return DomainRef(id=str(view.id))


@router.delete("/{domain_id}")
async def delete_domain(domain_id: str, principal: FullAccess, services: Services) -> DeletedDomain:
    """Remove a domain and its keys; mail from it is refused from now on."""
    async with services.db.tenant_tx(principal.tenant_id) as session:
        deleted = await service.delete_domain(session, principal.tenant_id, domain_id)
    return DeletedDomain(id=str(deleted))


@router.post("/{domain_id}/rotate-dkim")
async def rotate_dkim(
    domain_id: str, principal: FullAccess, services: Services, deps: Deps
) -> DomainOut:
    """Publish a new DKIM key pair beside the current one (our extension). The new keys sign
    once their records verify; the old ones are retired then."""
    async with services.db.tenant_tx(principal.tenant_id) as session:
        view = await service.rotate_dkim_keys(
            session,
            principal.tenant_id,
            domain_id,
            kek=deps.kek,
            policy=deps.policy,
            now=services.clock.now(),
        )
    return DomainOut.of(view)
