"""postyard inbound drops: what the MX listener accepted but could not act on."""

from __future__ import annotations

import asyncio

import typer

from postyard.cli.context import JsonOption, emit, one_shot_database
from postyard.inbound.drops import DropCount, list_drops

app = typer.Typer(help="Inspect the inbound MX listener.", no_args_is_help=True)


@app.command("drops")
def drops(as_json: bool = JsonOption) -> None:
    """Reports dropped by the MX listener, counted by reason (forged tokens, unreadable
    mail, auto-replies, …), across every MX process since the database was created."""

    async def run() -> list[DropCount]:
        async with (
            one_shot_database("cli") as db,
            db.system_tx(reason="cli inbound drops") as session,
        ):
            return await list_drops(session)

    found = asyncio.run(run())
    rows = [
        {
            "reason": d.reason,
            "count": d.count,
            "first_at": d.first_at.isoformat(),
            "last_at": d.last_at.isoformat(),
        }
        for d in found
    ]
    human = "\n".join(f"{d.reason:<18} {d.count:>10}  last {d.last_at.isoformat()}" for d in found)
    emit(as_json, {"data": rows}, human or "No reports dropped.")
