"""postyard warmup list|set|stop (sending domains) and list-ips|set-ip|stop-ip (source
addresses of the IP pools): warm-up ramps."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

import typer

from postyard.cli.context import JsonOption, emit, load_settings, one_shot_database
from postyard.core.clock import SystemClock
from postyard.delivery import ip_warmup, warmup
from postyard.delivery.ip_warmup import IpWarmupState
from postyard.delivery.warmup import WarmupPolicy, WarmupState
from postyard.tenancy import service as tenancy
from postyard.worker import warmup_policy

app = typer.Typer(
    help="Warm up sending domains and source addresses (a daily volume ramp).",
    no_args_is_help=True,
)
OrgOption = typer.Option(..., "--org", help="Organization slug or id.")


def _as_dict(state: WarmupState, policy: WarmupPolicy) -> dict[str, Any]:
    limit, sent = warmup.today_of(state, policy, SystemClock().now())
    return {
        "tenant_id": str(state.tenant_id),
        "domain": state.domain,
        "started_on": state.started_on.isoformat(),
        "schedule": list(state.schedule) if state.schedule else None,
        "allowance_today": limit,
        "sent_today": sent,
    }


def _human(row: dict[str, Any]) -> str:
    allowance = "no limit" if row["allowance_today"] is None else row["allowance_today"]
    ramp = "settings' ramp" if row["schedule"] is None else ",".join(map(str, row["schedule"]))
    return (
        f"{row['domain']} (org {row['tenant_id']}): since {row['started_on']}, {ramp}; "
        f"today {row['sent_today']} of {allowance}"
    )


def _policy() -> WarmupPolicy:
    return warmup_policy(load_settings())


def _first_day(start: str | None) -> date:
    try:
        return date.fromisoformat(start) if start else SystemClock().now().date()
    except ValueError as exc:
        raise typer.BadParameter("--start must be YYYY-MM-DD") from exc


def _ip_as_dict(state: IpWarmupState, policy: WarmupPolicy) -> dict[str, Any]:
    limit, sent = ip_warmup.ip_today_of(state, policy, SystemClock().now())
    return {
        "address": state.address,
        "started_on": state.started_on.isoformat(),
        "schedule": list(state.schedule) if state.schedule else None,
        "allowance_today": limit,
        "sent_today": sent,
    }


def _ip_human(row: dict[str, Any]) -> str:
    allowance = "no limit" if row["allowance_today"] is None else row["allowance_today"]
    ramp = "settings' IP ramp" if row["schedule"] is None else ",".join(map(str, row["schedule"]))
    return (
        f"{row['address']}: since {row['started_on']}, {ramp}; "
        f"today {row['sent_today']} of {allowance}"
    )


@app.command("list")
def list_(
    org: str | None = typer.Option(None, "--org", help="Only this organization (slug or id)."),
    as_json: bool = JsonOption,
) -> None:
    """Domains warming up, with today's allowance and count."""
    policy = _policy()

    async def run() -> list[WarmupState]:
        async with one_shot_database("cli") as db, db.system_tx(reason="cli warmup list") as s:
            tenant = (await tenancy.require_organization(s, org)).id if org else None
            return await warmup.list_warmups(s, tenant)

    rows = [_as_dict(state, policy) for state in asyncio.run(run())]
    emit(as_json, rows, "\n".join(map(_human, rows)) or "No warm-ups.")


@app.command("set")
def set_(
    domain: str = typer.Argument(..., help="Sending domain, e.g. mail.example.com."),
    org: str = OrgOption,
    schedule: str | None = typer.Option(
        None, help="Daily allowances, e.g. 50,100,200 (default: the settings' ramp)."
    ),
    start: str | None = typer.Option(None, help="First day, YYYY-MM-DD (default: today, UTC)."),
    as_json: bool = JsonOption,
) -> None:
    """Start or restart a domain's warm-up."""
    policy = _policy()
    ramp = warmup.parse_schedule(schedule) if schedule else None
    first = _first_day(start)

    async def run() -> WarmupState:
        async with one_shot_database("cli") as db:
            async with db.system_tx(reason="cli warmup: resolve org") as s:
                tenant = (await tenancy.require_organization(s, org)).id
            async with db.tenant_tx(tenant) as s:
                return await warmup.set_warmup(s, tenant, domain, started_on=first, schedule=ramp)

    row = _as_dict(asyncio.run(run()), policy)
    emit(as_json, row, _human(row))


@app.command("stop")
def stop(
    domain: str = typer.Argument(..., help="Sending domain."),
    org: str = OrgOption,
    as_json: bool = JsonOption,
) -> None:
    """End a domain's warm-up: no daily limit from now on."""

    async def run() -> bool:
        async with one_shot_database("cli") as db:
            async with db.system_tx(reason="cli warmup: resolve org") as s:
                tenant = (await tenancy.require_organization(s, org)).id
            async with db.tenant_tx(tenant) as s:
                return await warmup.stop_warmup(s, tenant, domain)

    stopped = asyncio.run(run())
    emit(
        as_json, {"domain": domain, "stopped": stopped}, "stopped" if stopped else "not warming up"
    )


@app.command("list-ips")
def list_ips(as_json: bool = JsonOption) -> None:
    """Source addresses warming up, with today's allowance and count."""
    policy = _policy()

    async def run() -> list[IpWarmupState]:
        async with one_shot_database("cli") as db, db.system_tx(reason="cli warmup ips") as s:
            return await ip_warmup.list_ip_warmups(s)

    rows = [_ip_as_dict(state, policy) for state in asyncio.run(run())]
    emit(as_json, rows, "\n".join(map(_ip_human, rows)) or "No address warm-ups.")


@app.command("set-ip")
def set_ip(
    address: str = typer.Argument(..., help="A source address of the IP pools."),
    schedule: str | None = typer.Option(
        None, help="Daily allowances, e.g. 500,1000,2000 (default: the settings' IP ramp)."
    ),
    start: str | None = typer.Option(None, help="First day, YYYY-MM-DD (default: today, UTC)."),
    as_json: bool = JsonOption,
) -> None:
    """Start or restart a source address's warm-up (counted across every organization)."""
    policy = _policy()
    ramp = warmup.parse_schedule(schedule) if schedule else None
    first = _first_day(start)

    async def run() -> IpWarmupState:
        async with one_shot_database("cli") as db, db.system_tx(reason="cli warmup set-ip") as s:
            return await ip_warmup.set_ip_warmup(s, address, started_on=first, schedule=ramp)

    row = _ip_as_dict(asyncio.run(run()), policy)
    emit(as_json, row, _ip_human(row))


@app.command("stop-ip")
def stop_ip(
    address: str = typer.Argument(..., help="A source address."),
    as_json: bool = JsonOption,
) -> None:
    """End a source address's warm-up: no daily limit from now on."""

    async def run() -> bool:
        async with one_shot_database("cli") as db, db.system_tx(reason="cli warmup stop-ip") as s:
            return await ip_warmup.stop_ip_warmup(s, address)

    stopped = asyncio.run(run())
    emit(
        as_json,
        {"address": address, "stopped": stopped},
        "stopped" if stopped else "not warming up",
    )
