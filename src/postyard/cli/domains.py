"""postyard domains add|list|verify|remove."""

from __future__ import annotations

import asyncio
from typing import Any

import typer

from postyard.cli.context import JsonOption, emit, load_settings, one_shot_database
from postyard.core.clock import SystemClock
from postyard.core.crypto import derive_kek
from postyard.core.db import Database, TenantId
from postyard.core.embedded import ensure_data_dir
from postyard.core.pagination import MAX_LIMIT, PageRequest
from postyard.core.secrets import load_or_create_secret
from postyard.delivery.mx import make_resolver
from postyard.domains import service
from postyard.domains.policy import dns_policy
from postyard.domains.types import DomainView
from postyard.domains.verification import verify_domain
from postyard.tenancy import service as tenancy

app = typer.Typer(help="Manage sending domains.", no_args_is_help=True)
OrgOption = typer.Option(..., "--org", help="Organization slug or id.")


def _as_dict(view: DomainView) -> dict[str, Any]:
    return {
        "id": str(view.id),
        "name": view.name,
        "status": view.status.value,
        "records": [
            {
                "record": r.record,
                "type": r.type,
                "name": r.name,
                "value": r.value,
                "priority": r.priority,
                "status": status.value,
            }
            for r, status in view.records
        ],
    }


def _human(view: DomainView) -> str:
    lines = [f"{view.name} ({view.id}): {view.status.value}"]
    lines += [
        f"  {r.type:5} {r.name}.{view.name}  {r.value}  [{status.value}]"
        for r, status in view.records
    ]
    return "\n".join(lines)


async def _tenant(db: Database, org: str) -> TenantId:
    async with db.system_tx(reason="cli domains: resolve org") as s:
        return (await tenancy.require_organization(s, org)).id


@app.command("add")
def add(
    name: str = typer.Argument(..., help="Domain name, e.g. mail.example.com."),
    org: str = OrgOption,
    return_path: str | None = typer.Option(None, help="Return-path subdomain (default: send)."),
    as_json: bool = JsonOption,
) -> None:
    """Add a domain and print the DNS records to publish."""
    settings = load_settings()

    secret = load_or_create_secret(
        ensure_data_dir(settings.data_dir),
        settings.secret_key.get_secret_value() if settings.secret_key else None,
    )

    async def run() -> DomainView:
        async with one_shot_database("cli") as db:
            tenant = await _tenant(db, org)
            async with db.tenant_tx(tenant) as s:
                return await service.create_domain(
                    s,
                    tenant,
                    name=name,
                    return_path=return_path or settings.sending.return_path_subdomain,
                    options=service.DomainSettings(),
                    kek=derive_kek(secret),
                    policy=dns_policy(settings),
                    now=SystemClock().now(),
                )

    view = asyncio.run(run())
    emit(as_json, _as_dict(view), _human(view))


@app.command("list")
def list_(org: str = OrgOption, as_json: bool = JsonOption) -> None:
    """List an organization's domains with their status."""
    settings = load_settings()

    async def run() -> list[DomainView]:
        async with one_shot_database("cli") as db:
            tenant = await _tenant(db, org)
            async with db.tenant_tx(tenant) as s:
                page = await service.list_domains(
                    s, tenant, page=PageRequest(limit=MAX_LIMIT), policy=dns_policy(settings)
                )
            return list(page.items)

    views = asyncio.run(run())
    emit(
        as_json, [_as_dict(v) for v in views], "\n".join(_human(v) for v in views) or "No domains."
    )


@app.command("verify")
def verify(
    domain_id: str = typer.Argument(..., help="Id of the domain."),
    org: str = OrgOption,
    as_json: bool = JsonOption,
) -> None:
    """Check the domain's DNS records now."""
    settings = load_settings()

    async def run() -> DomainView:
        async with one_shot_database("cli") as db:
            tenant = await _tenant(db, org)
            return await verify_domain(
                db,
                make_resolver(settings.dns.nameservers, cache=False),
                tenant,
                domain_id,
                policy=dns_policy(settings),
                now=SystemClock().now(),
                restart=True,
            )

    view = asyncio.run(run())
    emit(as_json, _as_dict(view), _human(view))


@app.command("remove")
def remove(
    domain_id: str = typer.Argument(..., help="Id of the domain."),
    org: str = OrgOption,
    as_json: bool = JsonOption,
) -> None:
    """Remove a domain and its DKIM keys."""

    async def run() -> str:
        async with one_shot_database("cli") as db:
            tenant = await _tenant(db, org)
            async with db.tenant_tx(tenant) as s:
                return str(await service.delete_domain(s, tenant, domain_id))

    removed = asyncio.run(run())
    emit(as_json, {"object": "domain", "id": removed, "deleted": True}, f"Removed {removed}")
