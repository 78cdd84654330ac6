"""What every command shares: settings, output, and a database for one-shot commands."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import typer
from pydantic import ValidationError

from postyard.core.db import Database
from postyard.core.errors import ConfigurationError
from postyard.runtime import connect, prepare, require_current_schema
from postyard.settings import Settings

JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON.")


def _env_name(loc: tuple[int | str, ...]) -> str:
    return "POSTYARD_" + "__".join(str(part).upper() for part in loc)


def load_settings() -> Settings:
    """Settings from the environment; a readable ConfigurationError when they are bad."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        msg = f"invalid setting {_env_name(first['loc'])}: {first['msg']}"
        raise ConfigurationError(msg) from None


def emit(as_json: bool, data: Any, human: str) -> None:
    if as_json:
        typer.echo(json.dumps(data, default=str))
    else:
        typer.echo(human)


def wants_json() -> bool:
    return "--json" in sys.argv[1:]


@asynccontextmanager
async def one_shot_database(name: str) -> AsyncIterator[Database]:
    """A Database for a one-shot command, after checking the schema is current."""
    runtime = await prepare(load_settings())
    await require_current_schema(runtime)
    db = connect(runtime, name=name)
    try:
        yield db
    finally:
        await db.dispose()
