"""postyard destinations list: shaping policies and adaptive state per destination site."""

from __future__ import annotations

import asyncio
from typing import Any

import typer

from postyard.cli.context import JsonOption, emit, load_settings, one_shot_database
from postyard.delivery import shaping_state
from postyard.delivery.shaping import DEFAULT_POLICIES, SitePolicy, SiteState

app = typer.Typer(help="Destination sites: shaping and throttling.", no_args_is_help=True)


def _row(site: str, policy: SitePolicy, state: SiteState | None) -> dict[str, Any]:
    return {
        "site": site,
        "max_connections": policy.max_connections,
        "messages_per_connection": policy.messages_per_connection,
        "messages_per_minute": policy.messages_per_minute,
        "current_rate": state.rate if state else float(policy.messages_per_minute),
        "suspended_until": (
            state.suspended_until.isoformat() if state and state.suspended_until else None
        ),
        "last_throttle": state.last_throttle if state else None,
    }


def _human(row: dict[str, Any]) -> str:
    line = (
        f"{row['site']:<12} {row['current_rate']:>7.0f}/{row['messages_per_minute']}/min "
        f"{row['max_connections']} conn x {row['messages_per_connection']} msg"
    )
    if row["suspended_until"]:
        line += f"  suspended until {row['suspended_until']}"
    if row["last_throttle"]:
        line += f"  last throttle: {row['last_throttle']}"
    return line


@app.command("list")
def list_(as_json: bool = JsonOption) -> None:
    """Each site's policy (settings applied) and its current, adaptive rate."""
    settings = load_settings()
    policies = {**DEFAULT_POLICIES}
    policies.update({k: SitePolicy(**v.model_dump()) for k, v in settings.shaping.policies.items()})

    async def run() -> list[SiteState]:
        async with (
            one_shot_database("cli") as db,
            db.system_tx(reason="cli destinations: shared shaping state") as s,
        ):
            return await shaping_state.load(s)

    states = {s.site: s for s in asyncio.run(run())}
    rows = [
        _row(site, policies.get(site, policies["default"]), states.get(site))
        for site in sorted(set(policies) | set(states))
    ]
    emit(as_json, rows, "\n".join(map(_human, rows)))
