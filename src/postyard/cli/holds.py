"""postyard holds list|add|release: operators hold and release traffic."""

from __future__ import annotations

import asyncio
from typing import Any

import typer

from postyard.cli.context import JsonOption, emit, one_shot_database
from postyard.core.clock import SystemClock
from postyard.core.db import TenantId
from postyard.delivery import holds
from postyard.delivery.holds import HoldKind, HoldOrigin, HoldView
from postyard.tenancy import service as tenancy

app = typer.Typer(help="Hold and release outgoing mail.", no_args_is_help=True)


def _as_dict(view: HoldView) -> dict[str, Any]:
    h = view.hold
    return {
        "id": str(h.id),
        "tenant_id": str(h.tenant_id) if h.tenant_id else None,
        "kind": h.kind.value,
        "value": h.value or None,
        "reason": h.reason,
        "origin": h.origin.value,
        "created_at": h.created_at.isoformat(),
        "released_at": h.released_at.isoformat() if h.released_at else None,
        "held": view.held,
    }


def _human(view: HoldView) -> str:
    h = view.hold
    scope = f"org {h.tenant_id}" if h.tenant_id else "every org"
    what = f"{h.kind.value} {h.value}".strip()
    state = f"released {h.released_at:%Y-%m-%d %H:%M}" if h.released_at else "active"
    return f"{h.id}  {what} ({scope}, by {h.origin.value}, {state}): {view.held} held; {h.reason}"


@app.command("list")
def list_(
    org: str | None = typer.Option(None, "--org", help="Only this organization (slug or id)."),
    include_released: bool = typer.Option(False, "--all", help="Released holds too."),
    as_json: bool = JsonOption,
) -> None:
    """List holds with how many recipients each holds now."""

    async def run() -> list[HoldView]:
        async with (
            one_shot_database("cli") as db,
            db.system_tx(reason="cli holds list") as s,
        ):
            tenant = (await tenancy.require_organization(s, org)).id if org else None
            return await holds.list_holds(s, tenant, include_released=include_released)

    views = asyncio.run(run())
    emit(as_json, [_as_dict(v) for v in views], "\n".join(map(_human, views)) or "No holds.")


@app.command("add")
def add(
    org: str | None = typer.Option(
        None, "--org", help="Organization (slug or id); omit for a destination hold on every org."
    ),
    domain: str | None = typer.Option(None, "--domain", help="Hold mail from this sending domain."),
    destination: str | None = typer.Option(
        None, "--destination", help="Hold mail to this recipient domain or site (google, ...)."
    ),
    reason: str = typer.Option("", "--reason", help="Shown on held recipients."),
    as_json: bool = JsonOption,
) -> None:
    """Hold an organization's mail (only --org), its mail from one domain (--domain) or to
    one destination (--destination); a destination without --org holds it for every org."""
    if domain and destination:
        raise typer.BadParameter("give --domain or --destination, not both")
    kind = HoldKind.DOMAIN if domain else HoldKind.DESTINATION if destination else HoldKind.TENANT

    async def run() -> HoldView:
        async with (
            one_shot_database("cli") as db,
            db.system_tx(reason="cli holds add") as s,
        ):
            tenant: TenantId | None = (
                (await tenancy.require_organization(s, org)).id if org else None
            )
            return await holds.place_hold(
                s,
                tenant,
                kind=kind,
                value=domain or destination,
                reason=reason,
                origin=HoldOrigin.OPERATOR,
                now=SystemClock().now(),
            )

    view = asyncio.run(run())
    emit(as_json, _as_dict(view), _human(view))


@app.command("release")
def release(
    hold_id: str = typer.Argument(..., help="Id of the hold."), as_json: bool = JsonOption
) -> None:
    """Release a hold; the recipients it held are due at once."""

    async def run() -> HoldView:
        async with (
            one_shot_database("cli") as db,
            db.system_tx(reason="cli holds release") as s,
        ):
            return await holds.release_hold(s, None, hold_id, now=SystemClock().now())

    view = asyncio.run(run())
    emit(as_json, _as_dict(view), _human(view))
