"""postyard keys create|list|revoke."""

from __future__ import annotations

import asyncio
from enum import StrEnum

import typer

from postyard.cli.context import JsonOption, emit, one_shot_database
from postyard.core.pagination import MAX_LIMIT, PageRequest
from postyard.tenancy import service
from postyard.tenancy.types import ApiKeyView, CreatedApiKey, Scope

app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
OrgOption = typer.Option(..., "--org", help="Organization slug or id.")


class ScopeChoice(StrEnum):
    FULL = "full"
    SENDING = "sending"


@app.command("create")
def create(
    org: str = OrgOption,
    name: str = typer.Option(..., "--name", help="A name to recognise the key by."),
    scope: ScopeChoice = typer.Option(ScopeChoice.FULL, "--scope", help="full or sending."),
    as_json: bool = JsonOption,
) -> None:
    """Create an API key; the token is printed once and stored only as a hash."""

    async def run() -> CreatedApiKey:
        async with one_shot_database("cli") as db:
            async with db.system_tx(reason="cli keys create: resolve org") as s:
                tenant = await service.require_organization(s, org)
            async with db.tenant_tx(tenant.id) as s:
                return await service.create_api_key(s, tenant.id, name=name, scope=Scope(scope))

    created = asyncio.run(run())
    emit(
        as_json,
        {"id": str(created.id), "token": created.token},
        f"Created API key {created.id}\nToken (shown once, store it now): {created.token}",
    )


@app.command("list")
def list_(org: str = OrgOption, as_json: bool = JsonOption) -> None:
    """List an organization's active API keys (never their tokens)."""

    async def run() -> list[ApiKeyView]:
        found: list[ApiKeyView] = []
        async with one_shot_database("cli") as db:
            async with db.system_tx(reason="cli keys list: resolve org") as s:
                tenant = await service.require_organization(s, org)
            page = PageRequest(limit=MAX_LIMIT)
            while True:
                async with db.tenant_tx(tenant.id) as s:
                    result = await service.list_api_keys(s, tenant.id, page=page)
                found.extend(result.items)
                if not result.has_more:
                    return found
                page = PageRequest(limit=MAX_LIMIT, after=result.items[-1].id)

    views = asyncio.run(run())
    data = [
        {
            "id": str(v.id),
            "name": v.name,
            "scope": v.scope.value,
            "token_prefix": v.token_prefix,
            "created_at": v.created_at.isoformat(),
            "last_used_at": v.last_used_at.isoformat() if v.last_used_at else None,
        }
        for v in views
    ]
    lines = [f"{v.id}\t{v.token_prefix}…\t{v.scope.value}\t{v.name}" for v in views]
    emit(as_json, data, "\n".join(lines) or "No API keys.")


@app.command("revoke")
def revoke(
    key_id: str = typer.Argument(..., help="Id of the key to revoke."),
    org: str = OrgOption,
    as_json: bool = JsonOption,
) -> None:
    """Revoke an API key; it stops authenticating at once."""

    async def run() -> str:
        async with one_shot_database("cli") as db:
            async with db.system_tx(reason="cli keys revoke: resolve org") as s:
                tenant = await service.require_organization(s, org)
            async with db.tenant_tx(tenant.id) as s:
                return str(await service.revoke_api_key(s, tenant.id, key_id))

    revoked = asyncio.run(run())
    emit(as_json, {"object": "api_key", "id": revoked, "deleted": True}, f"Revoked {revoked}")
