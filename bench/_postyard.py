"""Postyard under test: its roles as subprocesses in a fresh data dir, its CLI, and a
superuser view of its embedded PostgreSQL (the ledger)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import psutil  # type: ignore[import-untyped]  # no inline types; types-psutil is not locked
from _http_load import read_response
from _procs import LOOPBACK, START_GUARD_SECONDS, STOP_GUARD_SECONDS, free_port

POSTYARD = (sys.executable, "-m", "postyard")


def postyard_env(data_dir: Path, http_port: int, settings: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any POSTYARD_ variable, plus the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTYARD_")}
    env["POSTYARD_DATA_DIR"] = str(data_dir)
    env["POSTYARD_HTTP__PORT"] = str(http_port)
    # `up` also runs the inbound MX: a free port, not the default another instance may hold.
    env["POSTYARD_MX__PORT"] = str(free_port())
    env.update(settings)
    return env


def postyard_cli(args: Sequence[str], env: Mapping[str, str]) -> Any:
    """Run ``postyard ARGS --json``; its parsed output, or a RuntimeError with its stderr."""
    done = subprocess.run(
        [*POSTYARD, *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=STOP_GUARD_SECONDS,
    )
    if done.returncode != 0:
        msg = f"postyard {' '.join(args)} failed: {done.stderr.strip()}"
        raise RuntimeError(msg)
    return json.loads(done.stdout)


async def http_status(port: int, path: str) -> int | None:
    """The status of ``GET path``, or None when nothing answers."""
    try:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
    except OSError:
        return None
    try:
        request = f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nConnection: close\r\n\r\n"
        writer.write(request.encode())
        status, _, _ = await read_response(reader)
    except (OSError, asyncio.IncompleteReadError):
        return None
    finally:
        writer.close()
    return status


@contextlib.asynccontextmanager
async def postyard_role(
    role: str, env: Mapping[str, str], log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``postyard ROLE`` as a subprocess, yielded once ``/readyz`` answers 200; stopped with
    SIGINT (Ctrl-C) on exit, which also stops the embedded PostgreSQL it started."""
    port = int(env["POSTYARD_HTTP__PORT"])
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            *POSTYARD, role, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + START_GUARD_SECONDS
        while await http_status(port, "/readyz") != 200:
            if proc.returncode is not None or time.monotonic() > deadline:
                # The log goes with the benchmark's temp dir: show its end now.
                output = await asyncio.to_thread(log.read_text, errors="replace")
                tail = "\n".join(output.splitlines()[-15:])
                msg = f"postyard {role} did not become ready; the end of its output:\n{tail}"
                raise RuntimeError(msg)
            await asyncio.sleep(0.1)
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), STOP_GUARD_SECONDS)
            except TimeoutError:
                print(f"postyard {role} ignored SIGINT for {STOP_GUARD_SECONDS:.0f} s: killing it")
                proc.kill()
                await proc.wait()
        if proc.returncode != 0:
            print(f"postyard {role} exited with {proc.returncode}; its output is in {log}")


@dataclass(frozen=True, slots=True)
class Postmaster:
    """The embedded PostgreSQL of a data dir, as its postmaster.pid file describes it."""

    pid: int
    port: int
    socket_dir: str

    @classmethod
    def of(cls, data_dir: Path) -> Postmaster | None:
        try:
            lines = (data_dir / "pg" / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return None
        return cls(pid=int(lines[0]), port=int(lines[3]), socket_dir=lines[4])


def stop_leftover_postgres(data_dir: Path) -> None:
    """Stop an embedded PostgreSQL that outlived Postyard (it was killed, not stopped)."""
    server = Postmaster.of(data_dir)
    if server is None or not psutil.pid_exists(server.pid):
        return
    print(f"stopping the embedded PostgreSQL left running (pid {server.pid})")
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(server.pid)
        proc.send_signal(signal.SIGINT)  # "fast" shutdown
        proc.wait(STOP_GUARD_SECONDS)


async def superuser_connection(data_dir: Path) -> asyncpg.Connection:
    """A connection as the PostgreSQL superuser to the embedded database of ``data_dir``."""
    server = Postmaster.of(data_dir)
    if server is None:
        msg = f"no embedded PostgreSQL runs in {data_dir}"
        raise RuntimeError(msg)
    return await asyncpg.connect(
        host=server.socket_dir, port=server.port, user="postgres", database="postyard"
    )


class Ledger:
    """A superuser connection to the embedded database (row-level security does not apply)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.waiting_seen = 0
        """The last count ``waiting`` saw (one connection runs one query at a time)."""

    @classmethod
    async def open(cls, data_dir: Path) -> Ledger:
        return cls(await superuser_connection(data_dir))

    async def now(self) -> dt.datetime:
        """The database's clock (``created_at`` defaults to it)."""
        now: dt.datetime = await self._conn.fetchval("SELECT now()")
        return now

    async def queued(self) -> int:
        count: int = await self._conn.fetchval(
            "SELECT count(*) FROM deliveries WHERE status = 'queued'"
        )
        return count

    async def close(self) -> None:
        await self._conn.close()

    async def delivered(self) -> int:
        """Recipients delivered, ever: a scan of the whole table (slow on a big one)."""
        count: int = await self._conn.fetchval(
            "SELECT count(*) FROM deliveries WHERE status = 'delivered'"
        )
        return count

    async def waiting(self) -> int:
        """Recipients without an outcome yet (queued, scheduled, deferred, being sent),
        counted on the queue's partial indexes: it costs what waits, not what was ever sent."""
        count: int = await self._conn.fetchval(_WAITING)
        self.waiting_seen = count
        return count

    async def progress(self) -> int:
        """The newest event's number (by index): it moves whenever anything is accepted or
        gets an outcome."""
        seq: int = await self._conn.fetchval("SELECT coalesce(max(seq), 0) FROM events")
        return seq

    async def statuses(self) -> dict[str, int]:
        rows = await self._conn.fetch("SELECT status, count(*) FROM deliveries GROUP BY status")
        return {row[0]: row[1] for row in rows}

    async def server_version(self) -> str:
        version: str = await self._conn.fetchval("SELECT version()")
        return version.partition(" on ")[0]

    async def wait_delivered(self, target: int, *, stall_seconds: float = 60.0) -> float:
        """Poll until ``target`` recipients are delivered; the perf_counter time of the poll
        that saw it. Raises when nothing was accepted or got an outcome for
        ``stall_seconds``.

        Polls every 100 ms what is still waiting (``waiting``, cheap whatever the table's
        size) and counts the delivered rows, a scan of the table, only when nothing waits.
        The pause after such a count is at least 20 times its duration, so that the poller
        takes under 5% of one core from the run it measures."""
        mark, moved = -1, time.monotonic()
        while True:
            pause = POLL_SECONDS
            if await self.waiting() == 0:
                started = time.perf_counter()
                if await self.delivered() >= target:
                    break
                pause = max(pause, POLL_COST_FACTOR * (time.perf_counter() - started))
            if (now := await self.progress()) != mark:
                mark, moved = now, time.monotonic()
            elif time.monotonic() - moved > stall_seconds:
                statuses = await self.statuses()
                msg = f"delivery stalled short of {target} delivered: {statuses}"
                raise RuntimeError(msg)
            await asyncio.sleep(pause)
        return time.perf_counter()


POLL_SECONDS = 0.1
POLL_COST_FACTOR = 20.0
# Two counts, each of rows that one of the queue's partial indexes holds (the planner uses an
# index whose predicate the condition matches), rather than one condition no index covers.
_WAITING = """
    SELECT (SELECT count(*) FROM deliveries
             WHERE status IN ('queued', 'scheduled', 'deferred'))
         + (SELECT count(*) FROM deliveries WHERE status = 'sending')
"""


_PROBLEMS = frozenset({"warning", "error", "critical"})


def log_problems(log: Path) -> Counter[str]:
    """Warnings and errors in Postyard's JSON log lines, by message (and the last line of
    the exception, if any)."""
    found: Counter[str] = Counter()
    try:
        lines = log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return found
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("level") not in {
            "warning",
            "error",
            "critical",
        }:
            continue
        exc = str(entry.get("exc") or "").strip().splitlines()
        detail = f" ({exc[-1][:160]})" if exc else ""
        message = str(entry.get("msg")).strip().splitlines()[0]
        found[f"{entry['level']}: {message}{detail}"] += 1
    return found
