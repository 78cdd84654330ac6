"""A database that cannot be reached is the server's trouble, told as a 503 the client may
retry, never as a 500."""

from __future__ import annotations

import logging
import socket

import httpx
import pytest
from sqlalchemy import exc as sa_exc

from postyard.core.clock import SystemClock
from postyard.core.db import Database, DatabaseUrls
from postyard.core.http import AppServices, database_unavailable
from postyard.migrations.runner import schema_head
from tests.conftest import AppFactory, start_server, stop_server


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_pool_exhaustion_and_lost_connections_count_as_unavailable() -> None:
    assert database_unavailable(sa_exc.TimeoutError("QueuePool limit of size 10 reached"))
    assert database_unavailable(ConnectionRefusedError(111, "refused"))
    wrapped = RuntimeError("while accepting")
    wrapped.__cause__ = ConnectionResetError()
    assert database_unavailable(wrapped)
    assert not database_unavailable(ValueError("a bug"))
    assert not database_unavailable(sa_exc.IntegrityError("INSERT", {}, Exception("dup")))


async def test_unreachable_database_answers_503_with_retry_after(
    app_factory: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"postgresql+asyncpg://nobody:secret@127.0.0.1:{_closed_port()}/postyard"
    db = Database.connect(DatabaseUrls(owner=url, app=url, system=url), pool_size=1, name="t")
    services = AppServices(db=db, clock=SystemClock(), schema_head=schema_head())
    server, task, base = await start_server(app_factory(services))
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            got = await http.get("/v1/emails", headers={"authorization": "Bearer py_x_y"})
    finally:
        await stop_server(server, task)
        await db.dispose()
    assert got.status_code == 503
    assert got.headers["retry-after"] == "1"
    assert got.json()["name"] == "service_unavailable"
    # An expected overload is one warning, not an application error logged by the server.
    warnings = [r for r in caplog.records if "database unavailable" in r.getMessage()]
    assert [(r.name, r.levelno) for r in warnings] == [("postyard.http", logging.WARNING)]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
