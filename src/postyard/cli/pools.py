"""postyard pools list|assign|unassign: IP pools and which tenant stream uses which."""

from __future__ import annotations

import asyncio
from typing import Any

import typer

from postyard.cli.context import JsonOption, emit, load_settings, one_shot_database
from postyard.delivery import ippools
from postyard.tenancy import service as tenancy

app = typer.Typer(help="IP pools: outgoing addresses per tenant and stream.", no_args_is_help=True)
OrgOption = typer.Option(..., "--org", help="Organization slug or id.")
StreamOption = typer.Option(..., "--stream", help="transactional or bulk.")


@app.command("list")
def list_(
    org: str | None = typer.Option(None, "--org", help="Also show this organization's pools."),
    as_json: bool = JsonOption,
) -> None:
    """The configured pools (addresses and EHLO names) and an organization's assignments."""
    config = load_settings().ip_pools
    pools = {
        name: [{"address": a, "ehlo_name": config.addresses[a]} for a in members]
        for name, members in config.pools.items()
    }

    async def run() -> list[ippools.Assignment]:
        if org is None:
            return []
        async with one_shot_database("cli") as db:
            async with db.system_tx(reason="cli pools: resolve org") as s:
                tenant = (await tenancy.require_organization(s, org)).id
            async with db.tenant_tx(tenant) as s:
                return await ippools.list_assignments(s, tenant)

    assigned = {a.stream: a.pool for a in asyncio.run(run())}
    data: dict[str, Any] = {
        "pools": pools,
        "stream_pools": config.stream_pools,
        "default_pool": config.default_pool,
        "assignments": assigned,
    }
    lines = [
        f"{name}: " + ", ".join(f"{a['address']} ({a['ehlo_name']})" for a in members)
        for name, members in pools.items()
    ] or ["No IP pools configured: the operating system picks the source address."]
    lines += [f"{org}: {stream} -> {pool}" for stream, pool in assigned.items()]
    emit(as_json, data, "\n".join(lines))


@app.command("assign")
def assign(
    pool: str = typer.Argument(..., help="Pool name from POSTYARD_IP_POOLS__POOLS."),
    org: str = OrgOption,
    stream: str = StreamOption,
    as_json: bool = JsonOption,
) -> None:
    """Send an organization's stream from a pool."""
    known = list(load_settings().ip_pools.pools)

    async def run() -> ippools.Assignment:
        async with one_shot_database("cli") as db:
            async with db.system_tx(reason="cli pools: resolve org") as s:
                tenant = (await tenancy.require_organization(s, org)).id
            async with db.tenant_tx(tenant) as s:
                return await ippools.assign(s, tenant, stream=stream, pool=pool, known=known)

    a = asyncio.run(run())
    emit(as_json, {"stream": a.stream, "pool": a.pool}, f"{org}: {a.stream} -> {a.pool}")


@app.command("unassign")
def unassign(org: str = OrgOption, stream: str = StreamOption, as_json: bool = JsonOption) -> None:
    """Back to the settings' pool for the stream."""

    async def run() -> bool:
        async with one_shot_database("cli") as db:
            async with db.system_tx(reason="cli pools: resolve org") as s:
                tenant = (await tenancy.require_organization(s, org)).id
            async with db.tenant_tx(tenant) as s:
                return await ippools.unassign(s, tenant, stream=stream)

    removed = asyncio.run(run())
    emit(as_json, {"stream": stream, "removed": removed}, "removed" if removed else "none")
