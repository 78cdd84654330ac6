"""What every benchmark shares: reference tools, child processes, a lean HTTP load client,
memory sampling, machine facts and the section of docs/performance.md a benchmark owns.

Benchmarks print ratios against a reference measured in the same run on the same machine;
nothing here asserts on time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psutil  # type: ignore[import-untyped]  # no inline types; types-psutil is not locked

LOOPBACK = "127.0.0.1"
# Debian installs the Postfix test tools in sbin, which is not on every PATH.
_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
_SINK_PROBE = Path("/usr/sbin/smtp-sink")
# Guards against a hung child only; healthy runs end far sooner.
START_GUARD_SECONDS = 120.0
STOP_GUARD_SECONDS = 60.0
REQUEST_GUARD_SECONDS = 120.0


# --- reference tools -----------------------------------------------------------------------


def ensure_postfix_tools() -> None:
    """Install Debian's postfix package (smtp-source, smtp-sink) unless it is there."""
    if _SINK_PROBE.exists() or shutil.which("smtp-sink", path=_SBIN_PATH):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "postfix"]
    print("installing postfix (smtp-source, smtp-sink) with apt-get ...")
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
        subprocess.run(install, env=env, check=True)


def postfix_tool(name: str) -> str:
    found = shutil.which(name, path=_SBIN_PATH)
    if found is None:
        msg = f"{name} not found: install Debian's postfix package"
        raise RuntimeError(msg)
    return found


def postfix_version() -> str:
    postconf = shutil.which("postconf", path=_SBIN_PATH)
    if postconf is None:
        return "unknown"
    done = subprocess.run(
        [postconf, "-d", "-h", "mail_version"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or "unknown"


def free_port() -> int:
    """A loopback port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_GUARD_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"{proc.args!r} exited with {proc.returncode} before listening"
            raise RuntimeError(msg)
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 1.0):
            return
        time.sleep(0.05)
    msg = f"nothing listens on port {port} after {START_GUARD_SECONDS:.0f} s"
    raise RuntimeError(msg)


@contextlib.contextmanager
def smtp_sink(port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Postfix's smtp-sink on a loopback port: accepts every message and discards it."""
    privileges = ["-u", "nobody"] if os.geteuid() == 0 else []
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [postfix_tool("smtp-sink"), *privileges, f"{LOOPBACK}:{port}", "1024"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, proc)
        yield proc
    finally:
        stop_process(proc, signal.SIGTERM)


def smtp_source_rate(port: int, *, messages: int, sessions: int, size: int) -> float:
    """Messages per second smtp-source sends to ``port`` over reused sessions (``-d``)."""
    args = [
        postfix_tool("smtp-source"),
        *("-d", "-s", str(sessions), "-l", str(size), "-m", str(messages)),
        *("-f", "source@bench.example", "-t", "sink@bench.example"),
        f"{LOOPBACK}:{port}",
    ]
    started = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, timeout=max(600, messages / 100))
    return messages / (time.perf_counter() - started)


def stop_process(proc: subprocess.Popen[bytes], sig: signal.Signals) -> int:
    """Send ``sig``, wait; SIGKILL after the guard. Returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(STOP_GUARD_SECONDS)
        except subprocess.TimeoutExpired:
            print(f"{proc.args!r} ignored {sig.name} for {STOP_GUARD_SECONDS:.0f} s: killing it")
            proc.kill()
            proc.wait()
    return proc.returncode


# --- HTTP load ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpTarget:
    port: int
    path: str
    bearer: str

    def request(self, body: bytes) -> bytes:
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {LOOPBACK}:{self.port}\r\n"
            f"Authorization: Bearer {self.bearer}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body


@dataclass(slots=True)
class LoadResult:
    accepted: int = 0
    issued: int = 0
    started: float = 0.0
    finished: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def elapsed(self) -> float:
        return self.finished - self.started


class TooManyErrors(RuntimeError):
    pass


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length: int | None = None
    close = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            close = value.strip().lower() == b"close"
    if length is None:
        msg = "response without Content-Length (chunked answers are not expected here)"
        raise ValueError(msg)
    return status, await reader.readexactly(length), close


async def _connection(
    target: HttpTarget,
    body_of: Callable[[int], bytes],
    result: LoadResult,
    *,
    requests: int,
    max_errors: int,
) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    try:
        while result.issued < requests:
            index = result.issued
            result.issued += 1
            if writer is None:
                reader, writer = await asyncio.open_connection(LOOPBACK, target.port)
            assert reader is not None
            sent = time.perf_counter()
            try:
                async with asyncio.timeout(REQUEST_GUARD_SECONDS):
                    writer.write(target.request(body_of(index)))
                    status, body, close = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                status, body, close = 0, repr(exc).encode(), True
            if status == 200:
                result.accepted += 1
                result.latencies.append(time.perf_counter() - sent)
            else:
                result.issued -= 1  # someone sends it again: the run ends at `requests` accepted
                result.errors[f"{status} {body[:200].decode(errors='replace')}"] += 1
                if sum(result.errors.values()) > max_errors:
                    raise TooManyErrors(f"more than {max_errors} failed requests")
            if close:
                writer.close()
                reader = writer = None
    finally:
        if writer is not None:
            writer.close()


async def post_until_accepted(
    target: HttpTarget,
    body_of: Callable[[int], bytes],
    *,
    requests: int,
    concurrency: int,
    max_errors: int,
) -> LoadResult:
    """POST ``body_of(i)`` over ``concurrency`` keep-alive connections until ``requests``
    answers were 200; other answers are counted (and the request sent again)."""
    result = LoadResult(started=time.perf_counter())
    await asyncio.gather(
        *(
            _connection(target, body_of, result, requests=requests, max_errors=max_errors)
            for _ in range(min(concurrency, requests))
        )
    )
    result.finished = time.perf_counter()
    return result


def percentile_ms(samples: Sequence[float], percent: int) -> float:
    """The ``percent``-th percentile of durations in seconds, in milliseconds."""
    if len(samples) < 2:
        return samples[0] * 1000 if samples else float("nan")
    return statistics.quantiles(samples, n=100, method="inclusive")[percent - 1] * 1000


# --- Postyard under test -------------------------------------------------------------------

POSTYARD = (sys.executable, "-m", "postyard")


def postyard_env(data_dir: Path, http_port: int, settings: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any POSTYARD_ variable, plus the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTYARD_")}
    env["POSTYARD_DATA_DIR"] = str(data_dir)
    env["POSTYARD_HTTP__PORT"] = str(http_port)
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
        status, _, _ = await _read_response(reader)
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
                msg = f"postyard {role} did not become ready; its output is in {log}"
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


class Ledger:
    """A superuser connection to the embedded database (row-level security does not apply)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.latest = 0
        """The last count ``delivered`` saw (one connection runs one query at a time)."""

    @classmethod
    async def open(cls, data_dir: Path) -> Ledger:
        server = Postmaster.of(data_dir)
        if server is None:
            msg = f"no embedded PostgreSQL runs in {data_dir}"
            raise RuntimeError(msg)
        conn = await asyncpg.connect(
            host=server.socket_dir, port=server.port, user="postgres", database="postyard"
        )
        return cls(conn)

    async def close(self) -> None:
        await self._conn.close()

    async def delivered(self) -> int:
        count: int = await self._conn.fetchval(
            "SELECT count(*) FROM deliveries WHERE status = 'delivered'"
        )
        self.latest = count
        return count

    async def statuses(self) -> dict[str, int]:
        rows = await self._conn.fetch("SELECT status, count(*) FROM deliveries GROUP BY status")
        return {row[0]: row[1] for row in rows}

    async def server_version(self) -> str:
        version: str = await self._conn.fetchval("SELECT version()")
        return version.partition(" on ")[0]

    async def wait_delivered(self, target: int, *, stall_seconds: float = 60.0) -> float:
        """Poll every 100 ms until ``target`` recipients are delivered; the perf_counter time
        of the poll that saw it. Raises when the count stops moving for ``stall_seconds``."""
        last, moved = -1, time.monotonic()
        while (count := await self.delivered()) < target:
            if count != last:
                last, moved = count, time.monotonic()
            elif time.monotonic() - moved > stall_seconds:
                msg = f"delivery stalled at {count}/{target}: {await self.statuses()}"
                raise RuntimeError(msg)
            await asyncio.sleep(0.1)
        return time.perf_counter()


# --- memory --------------------------------------------------------------------------------


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@dataclass(slots=True)
class PeakMemory:
    """Peak memory of a process tree (``app``) and of the database server's processes."""

    app_pid: int
    db_pid: int
    app_rss: int = 0
    db_rss: int = 0
    db_pss: int = 0

    def sample(self) -> None:
        db = _tree(self.db_pid)
        db_pids = {p.pid for p in db}
        app_rss = db_rss = db_pss = 0
        for proc in _tree(self.app_pid):
            if proc.pid not in db_pids:
                with contextlib.suppress(psutil.Error):
                    app_rss += int(proc.memory_info().rss)
        for proc in db:
            with contextlib.suppress(psutil.Error):
                # PSS shares each page among the processes mapping it: summed RSS counts the
                # shared buffers once per backend.
                full = proc.memory_full_info()
                db_rss += int(full.rss)
                db_pss += int(full.pss)
        self.app_rss = max(self.app_rss, app_rss)
        self.db_rss = max(self.db_rss, db_rss)
        self.db_pss = max(self.db_pss, db_pss)


async def sample_memory(peak: PeakMemory, interval: float = 0.5) -> None:
    """Sample until cancelled."""
    while True:
        peak.sample()
        await asyncio.sleep(interval)


# --- reporting -----------------------------------------------------------------------------


def busy_percent(seconds: float = 2.0) -> float:
    """How busy the machine's CPUs are over ``seconds`` (all of them, 0-100): taken when the
    benchmark runs nothing, it shows load from elsewhere that skews the figures."""
    return float(psutil.cpu_percent(interval=seconds))


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def git_revision(repo: Path) -> str:
    """``git describe --always --dirty`` of ``repo`` (``-dirty``: uncommitted changes ran)."""
    git = shutil.which("git")
    if git is None:
        return "unknown"
    done = subprocess.run(
        [git, "-C", str(repo), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def today_utc() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def replace_section(path: Path, name: str, body: str) -> None:
    """Put ``body`` between this benchmark's markers in ``path`` (appended the first time);
    everything outside the markers stays as it is."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text(encoding="utf-8")
    head, found, rest = text.partition(start)
    if found and end in rest:
        text = head + block + rest.partition(end)[2]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")
