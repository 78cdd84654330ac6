"""The connection budget of `postyard up`'s processes against the server's max_connections:
the sums, and making room on a real embedded server (a fresh one of this test's own, so the
shared test server is never restarted)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

import pytest

from postyard import runtime as runtime_module
from postyard.core import connections
from postyard.core.db import asyncpg_connect
from postyard.core.embedded import EmbeddedServer, Restarted, auto_conf, restart_embedded
from postyard.core.errors import ConfigurationError
from postyard.runtime import Runtime, fit_connections, prepare
from postyard.settings import DbSettings, Settings


def test_a_process_may_open_its_four_pools_and_a_listener() -> None:
    # SQLAlchemy app and system engines, the asyncpg app pool (10 each), its system pool
    # (a quarter, at least 2) and LISTEN.
    assert connections.per_process(10) == 10 + 10 + 10 + 2 + 1
    assert connections.per_process(2) == 2 + 2 + 2 + 2 + 1
    assert connections.budget(5, 10) == 5 * 33 + connections.OUTSIDE_RESERVE


def test_reserved_slots_count_against_the_server_s_limit() -> None:
    slots = connections.Slots(max_connections=100, reserved=3)
    assert slots.available == 97
    assert slots.max_connections_for(175) == 178


def test_the_embedded_server_is_raised_when_short_and_never_past_the_cap() -> None:
    slots = connections.Slots(max_connections=100, reserved=3)
    assert connections.embedded_target(slots, 97) is None  # room enough
    assert connections.embedded_target(slots, 175) == 178
    cap = connections.EMBEDDED_MAX_CONNECTIONS
    assert connections.embedded_target(slots, 5000) == cap
    at_cap = connections.Slots(max_connections=cap, reserved=3)
    assert connections.embedded_target(at_cap, 5000) is None  # nothing more to gain


async def _max_connections(runtime: Runtime) -> int:
    conn = await asyncpg_connect(runtime.urls.owner)
    try:
        return int(await conn.fetchval("SHOW max_connections"))
    finally:
        await conn.close()


def _over(limit: int, pool_size: int) -> int:
    """A process count whose budget is over ``limit`` connections."""
    return limit // connections.per_process(pool_size) + 1


async def test_the_embedded_server_is_raised_to_the_budget_and_restarted_once(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path / "data", db=DbSettings(pool_size=4))
    runtime = await prepare(settings)
    before = runtime.embedded
    assert isinstance(before, EmbeddedServer)
    processes = _over(await _max_connections(runtime), 4)

    raised = await fit_connections(runtime, processes=processes)

    assert raised.embedded is not None
    assert raised.embedded.pid != before.pid  # restarted: max_connections needs it
    conn = await asyncpg_connect(raised.urls.owner)
    try:
        reserved = int(await conn.fetchval("SHOW superuser_reserved_connections")) + int(
            await conn.fetchval("SHOW reserved_connections")
        )
        limit = int(await conn.fetchval("SHOW max_connections"))
    finally:
        await conn.close()
    assert limit - reserved == connections.budget(processes, 4)
    # Room enough now: nothing changes, no second restart.
    again = await fit_connections(raised, processes=processes)
    assert again is raised
    assert await _max_connections(again) == limit


async def test_an_external_server_is_only_checked_and_warned_about(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    assert runtime.embedded is None  # the tests' server is reached by URL: "external"
    limit = await _max_connections(runtime)
    processes = _over(limit, runtime.settings.db.pool_size)
    with caplog.at_level(logging.WARNING, logger="postyard.runtime"):
        same = await fit_connections(runtime, processes=processes)
    assert same is runtime
    assert await _max_connections(runtime) == limit
    (record,) = [r for r in caplog.records if "raise max_connections" in r.getMessage()]
    needed = connections.budget(processes, runtime.settings.db.pool_size)
    assert f"may open up to {needed}" in record.getMessage()


async def test_an_embedded_server_another_process_uses_is_not_restarted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=tmp_path / "data", db=DbSettings(pool_size=4))
    runtime = await prepare(settings)
    assert runtime.embedded is not None
    limit = await _max_connections(runtime)
    holders = runtime.embedded.pgdata / ".handle_pids.json"
    mine = holders.read_text()
    assert json.loads(mine) == [os.getpid()]
    holders.write_text(json.dumps([os.getpid(), os.getppid()]))  # a second live user
    try:
        with caplog.at_level(logging.WARNING, logger="postyard.runtime"):
            same = await fit_connections(runtime, processes=_over(limit, 4))
    finally:
        holders.write_text(mine)
    assert same is runtime  # same server process: not restarted under the other user
    assert await _max_connections(runtime) == limit  # the new limit waits for a restart
    messages = [r.getMessage() for r in caplog.records]
    assert any("until its next start" in m for m in messages)
    assert any("raise max_connections" in m for m in messages)


# Accepted by ALTER SYSTEM, refused at start at once: the library to load does not exist.
UNSTARTABLE = "shared_preload_libraries = 'postyard_test_missing'\n"


async def test_a_raise_the_server_does_not_start_with_is_undone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path / "data", db=DbSettings(pool_size=4))
    runtime = await prepare(settings)
    assert runtime.embedded is not None
    limit = await _max_connections(runtime)
    before = auto_conf(runtime.embedded.pgdata).read_bytes()

    def restart_unstartable(server: EmbeddedServer, *, undo: bytes) -> Restarted | None:
        # The server's own failure to start, as when it cannot get the memory for the raise.
        with auto_conf(server.pgdata).open("a") as file:
            file.write(UNSTARTABLE)
        return restart_embedded(server, undo=undo)

    monkeypatch.setattr(runtime_module, "restart_embedded", restart_unstartable)
    with caplog.at_level(logging.WARNING, logger="postyard.runtime"):
        after = await fit_connections(runtime, processes=_over(limit, 4))

    assert after.embedded is not None
    assert after.embedded.pid != runtime.embedded.pid  # stopped, then started as it was
    assert await _max_connections(after) == limit
    assert auto_conf(runtime.embedded.pgdata).read_bytes() == before  # the next start too
    messages = [r.getMessage() for r in caplog.records]
    assert any("did not start with max_connections" in m for m in messages), messages
    assert any("raise max_connections" in m for m in messages)


async def test_a_server_that_starts_neither_way_is_a_readable_error(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", db=DbSettings(pool_size=4))
    runtime = await prepare(settings)
    assert runtime.embedded is not None
    conn = await asyncpg_connect(runtime.urls.owner)
    try:  # a setting from before, which the undo keeps
        await conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'postyard_test_missing'")
    finally:
        await conn.close()
    restarted = None
    with pytest.raises(ConfigurationError, match="cannot restart the embedded PostgreSQL"):
        restarted = await asyncio.to_thread(
            restart_embedded,
            runtime.embedded,
            undo=auto_conf(runtime.embedded.pgdata).read_bytes(),
        )
    assert restarted is None
