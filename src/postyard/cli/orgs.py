"""postyard orgs create|list|suspend|activate."""

from __future__ import annotations

import asyncio

import typer

from postyard.cli.context import JsonOption, emit, one_shot_database
from postyard.tenancy import service
from postyard.tenancy.types import OrganizationView, OrgStatus

app = typer.Typer(help="Manage organizations (the tenants).", no_args_is_help=True)


def _as_dict(org: OrganizationView) -> dict[str, str]:
    return {
        "id": str(org.id),
        "slug": org.slug,
        "name": org.name,
        "status": org.status.value,
        "created_at": org.created_at.isoformat(),
    }


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Display name of the organization."),
    slug: str | None = typer.Option(None, help="URL-safe slug (default: derived from NAME)."),
    as_json: bool = JsonOption,
) -> None:
    """Create an organization; prints its id and slug."""

    async def run() -> OrganizationView:
        async with one_shot_database("cli") as db, db.system_tx(reason="cli orgs create") as s:
            return await service.create_organization(s, name=name, slug=slug)

    org = asyncio.run(run())
    emit(
        as_json,
        {"id": str(org.id), "slug": org.slug},
        f"Created organization {org.slug} ({org.id})",
    )


@app.command("list")
def list_(as_json: bool = JsonOption) -> None:
    """List organizations."""

    async def run() -> list[OrganizationView]:
        async with one_shot_database("cli") as db, db.system_tx(reason="cli orgs list") as s:
            return await service.list_organizations(s)

    orgs = asyncio.run(run())
    lines = [f"{o.slug}\t{o.id}\t{o.status.value}\t{o.name}" for o in orgs]
    emit(as_json, [_as_dict(o) for o in orgs], "\n".join(lines) or "No organizations.")


def _set_status(ref: str, status: OrgStatus, as_json: bool) -> None:
    async def run() -> OrganizationView:
        async with one_shot_database("cli") as db, db.system_tx(reason=f"cli orgs {status}") as s:
            return await service.set_organization_status(s, ref, status)

    org = asyncio.run(run())
    emit(as_json, _as_dict(org), f"Organization {org.slug} is now {org.status.value}")


@app.command("suspend")
def suspend(org: str = typer.Argument(..., help="Slug or id."), as_json: bool = JsonOption) -> None:
    """Suspend an organization: its API keys are refused until it is activated."""
    _set_status(org, OrgStatus.SUSPENDED, as_json)


@app.command("activate")
def activate(
    org: str = typer.Argument(..., help="Slug or id."), as_json: bool = JsonOption
) -> None:
    """Reactivate a suspended organization."""
    _set_status(org, OrgStatus.ACTIVE, as_json)
