"""postyard webhooks create|list|delete."""

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
from postyard.tenancy import service as tenancy
from postyard.webhooks import service
from postyard.webhooks.ssrf import AddressPolicy
from postyard.webhooks.types import CreatedEndpoint, EndpointView

app = typer.Typer(help="Manage webhook endpoints.", no_args_is_help=True)
OrgOption = typer.Option(..., "--org", help="Organization slug or id.")


def _as_dict(view: EndpointView) -> dict[str, Any]:
    return {
        "id": str(view.id),
        "endpoint": view.url,
        "events": view.events,
        "status": view.status.value,
        "disabled_reason": view.disabled_reason,
    }


def _human(view: EndpointView) -> str:
    why = f" ({view.disabled_reason})" if view.disabled_reason else ""
    return f"{view.url} ({view.id}): {view.status.value}{why}\n  {', '.join(view.events)}"


async def _tenant(db: Database, org: str) -> TenantId:
    async with db.system_tx(reason="cli webhooks: resolve org") as s:
        return (await tenancy.require_organization(s, org)).id


@app.command("create")
def create(
    endpoint: str = typer.Argument(..., help="The https URL to POST events to."),
    org: str = OrgOption,
    events: str = typer.Option(..., help="Comma-separated event types, e.g. email.delivered."),
    as_json: bool = JsonOption,
) -> None:
    """Add a webhook endpoint and print its signing secret (shown this once)."""
    settings = load_settings()
    secret = load_or_create_secret(
        ensure_data_dir(settings.data_dir),
        settings.secret_key.get_secret_value() if settings.secret_key else None,
    )

    async def run() -> CreatedEndpoint:
        async with one_shot_database("cli") as db:
            tenant = await _tenant(db, org)
            async with db.tenant_tx(tenant) as s:
                return await service.create_endpoint(
                    s,
                    tenant,
                    url=endpoint,
                    events=[e.strip() for e in events.split(",") if e.strip()],
                    kek=derive_kek(secret),
                    policy=AddressPolicy(settings.webhooks.allowed_networks),
                    now=SystemClock().now(),
                )

    created = asyncio.run(run())
    emit(
        as_json,
        {**_as_dict(created.view), "signing_secret": created.secret},
        f"{_human(created.view)}\n  signing secret (shown once): {created.secret}",
    )


@app.command("list")
def list_(org: str = OrgOption, as_json: bool = JsonOption) -> None:
    """List an organization's webhook endpoints."""

    async def run() -> list[EndpointView]:
        async with one_shot_database("cli") as db:
            tenant = await _tenant(db, org)
            async with db.tenant_tx(tenant) as s:
                page = await service.list_endpoints(s, tenant, page=PageRequest(limit=MAX_LIMIT))
            return list(page.items)

    views = asyncio.run(run())
    human = "\n".join(_human(v) for v in views) or "No webhooks."
    emit(as_json, [_as_dict(v) for v in views], human)


@app.command("delete")
def delete(
    webhook_id: str = typer.Argument(..., help="Id of the webhook."),
    org: str = OrgOption,
    as_json: bool = JsonOption,
) -> None:
    """Remove a webhook endpoint with its deliveries and attempt log."""

    async def run() -> str:
        async with one_shot_database("cli") as db:
            tenant = await _tenant(db, org)
            async with db.tenant_tx(tenant) as s:
                return str(await service.delete_endpoint(s, tenant, webhook_id))

    removed = asyncio.run(run())
    emit(as_json, {"object": "webhook", "id": removed, "deleted": True}, f"Deleted {removed}")
