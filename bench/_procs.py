"""Child processes of a benchmark: Postfix's reference tools (smtp-source, smtp-sink),
loopback ports, and stopping what was started."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # no inline types; types-psutil is not locked

LOOPBACK = "127.0.0.1"
# Debian installs the Postfix test tools in sbin, which is not on every PATH.
_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
_SINK_PROBE = Path("/usr/sbin/smtp-sink")
# Guards against a hung child only; healthy runs end far sooner.
START_GUARD_SECONDS = 120.0
STOP_GUARD_SECONDS = 60.0


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


def leftover_processes(markers: Sequence[str], *, children_of: int | None = None) -> list[str]:
    """Processes still alive that a run started: children of ``children_of`` and any process
    whose command line or environment mentions one of ``markers`` (temp dirs), each with
    why it matched."""
    found: dict[int, str] = {}
    mine = {os.getpid()}
    if children_of is not None:
        with contextlib.suppress(psutil.Error):
            for proc in psutil.Process(children_of).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    found[proc.pid] = f"{proc.pid} {' '.join(proc.cmdline())} [child]"
    for proc in psutil.process_iter():
        if proc.pid in mine or proc.pid in found:
            continue
        with contextlib.suppress(psutil.Error):
            cmdline = " ".join(proc.cmdline())
            environ = proc.environ()
            for marker in markers:
                if marker in cmdline:
                    found[proc.pid] = f"{proc.pid} {cmdline} [command line names {marker}]"
                elif hits := [k for k, v in environ.items() if marker in v]:
                    found[proc.pid] = f"{proc.pid} {cmdline} [{', '.join(hits)} names {marker}]"
    return list(found.values())


def lasting_leftovers(
    markers: Sequence[str], *, children_of: int | None = None, settle: float = 2.0
) -> list[str]:
    """``leftover_processes`` seen twice, ``settle`` seconds apart: a process that was
    just exiting is not a leftover."""
    first = leftover_processes(markers, children_of=children_of)
    if not first:
        return []
    time.sleep(settle)
    again = set(leftover_processes(markers, children_of=children_of))
    return [line for line in first if line in again]
