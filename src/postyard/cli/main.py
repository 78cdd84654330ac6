"""Entry point: registers the command groups and turns failures into one readable line."""

from __future__ import annotations

import json
import sys

import typer

from postyard.cli import (
    destinations,
    domains,
    holds,
    inbound,
    keys,
    orgs,
    pools,
    serve,
    suppressions,
    warmup,
    webhooks,
)
from postyard.cli.context import wants_json
from postyard.core.errors import AppError, ConfigurationError

app = typer.Typer(
    help="Postyard: a self-hosted, multi-tenant email platform.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("up")(serve.up)
app.command("api")(serve.api)
app.command("worker")(serve.worker)
app.command("smtp")(serve.smtp)
app.command("mx")(serve.mx)
app.command("migrate")(serve.migrate)
app.add_typer(orgs.app, name="orgs")
app.add_typer(keys.app, name="keys")
app.add_typer(domains.app, name="domains")
app.add_typer(holds.app, name="holds")
app.add_typer(destinations.app, name="destinations")
app.add_typer(warmup.app, name="warmup")
app.add_typer(pools.app, name="pools")
app.add_typer(suppressions.app, name="suppressions")
app.add_typer(inbound.app, name="inbound")
app.add_typer(webhooks.app, name="webhooks")


def _fail(code: str, message: str) -> None:
    if wants_json():
        sys.stderr.write(json.dumps({"error": {"code": code, "message": message}}) + "\n")
    else:
        sys.stderr.write(f"postyard: error: {message}\n")
    raise SystemExit(1)


def main() -> None:
    try:
        app()
    except ConfigurationError as exc:
        _fail("configuration_error", str(exc))
    except AppError as exc:
        _fail(exc.code, exc.message)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
