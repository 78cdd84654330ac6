"""postyard suppressions list|add|remove."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import typer

from postyard.cli.context import JsonOption, emit, one_shot_database
from postyard.core.clock import SystemClock
from postyard.core.db import Database, TenantId
from postyard.core.errors import ValidationFailed
from postyard.core.pagination import MAX_LIMIT, PageRequest
from postyard.suppression import service
from postyard.suppression.types import SuppressionReason, SuppressionView
from postyard.tenancy import service as tenancy

app = typer.Typer(help="Manage an organization's suppression list.", no_args_is_help=True)
OrgOption = typer.Option(..., "--org", help="Organization slug or id.")


def _as_dict(view: SuppressionView) -> dict[str, Any]:
    return {
        "id": str(view.id),
        "email": view.email,
        "reason": view.reason.value,
        "source_email_id": str(view.source_email_id) if view.source_email_id else None,
        "detail": view.detail,
        "expires_at": view.expires_at.isoformat() if view.expires_at else None,
        "created_at": view.created_at.isoformat(),
    }


def _human(view: SuppressionView) -> str:
    until = f" until {view.expires_at.isoformat()}" if view.expires_at else ""
    return f"{view.email}  {view.reason.value}{until}  ({view.id})"


async def _tenant(db: Database, org: str) -> TenantId:
    async with db.system_tx(reason="cli suppressions: resolve org") as s:
        return (await tenancy.require_organization(s, org)).id


def _reason(value: str) -> SuppressionReason:
    try:
        return SuppressionReason(value)
    except ValueError:
        choices = ", ".join(r.value for r in SuppressionReason)
        raise ValidationFailed(f"Unknown reason {value!r}: use one of {choices}.") from None


def _expiry(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        msg = f"--expires-at {value!r} is not an ISO 8601 time (e.g. 2027-01-31T12:00:00Z)."
        raise ValidationFailed(msg) from None


@app.command("list")
def list_(
    org: str = OrgOption,
    reason: str | None = typer.Option(None, help="Only entries with this reason."),
    as_json: bool = JsonOption,
) -> None:
    """List every entry, newest first."""
    wanted = _reason(reason) if reason else None

    async def run() -> list[SuppressionView]:
        views: list[SuppressionView] = []
        async with one_shot_database("cli") as db:
            tenant = await _tenant(db, org)
            page = PageRequest(limit=MAX_LIMIT)
            while True:
                async with db.tenant_tx(tenant) as s:
                    result = await service.list_suppressions(s, tenant, page=page, reason=wanted)
                views += result.items
                if not result.has_more:
                    return views
                page = PageRequest(limit=MAX_LIMIT, after=views[-1].id)

    views = asyncio.run(run())
    human = "\n".join(_human(v) for v in views) or "No suppressed addresses."
    emit(as_json, [_as_dict(v) for v in views], human)


@app.command("add")
def add(
    email: str = typer.Argument(..., help="The address to stop sending to."),
    org: str = OrgOption,
    reason: str = typer.Option("manual", help="hard_bounce, complaint, unsubscribe or manual."),
    expires_at: str | None = typer.Option(
        None, help="ISO 8601 time the entry ends (UTC if naive)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Suppress an address (updates the entry when it is already listed)."""
    why, until = _reason(reason), _expiry(expires_at)

    async def run() -> SuppressionView:
        async with one_shot_database("cli") as db:
            tenant = await _tenant(db, org)
            async with db.tenant_tx(tenant) as s:
                return await service.add_suppression(
                    s, tenant, email, why, now=SystemClock().now(), expires_at=until
                )

    view = asyncio.run(run())
    emit(as_json, _as_dict(view), f"Suppressed {_human(view)}")


@app.command("remove")
def remove(
    id_or_email: str = typer.Argument(..., help="Id of the entry, or the address."),
    org: str = OrgOption,
    as_json: bool = JsonOption,
) -> None:
    """Remove an entry: mail to the address goes out again."""

    async def run() -> SuppressionView:
        async with one_shot_database("cli") as db:
            tenant = await _tenant(db, org)
            async with db.tenant_tx(tenant) as s:
                return await service.remove_suppression(s, tenant, id_or_email)

    view = asyncio.run(run())
    emit(
        as_json,
        {"object": "suppression", "id": str(view.id), "email": view.email, "deleted": True},
        f"Removed {view.email} ({view.id})",
    )
