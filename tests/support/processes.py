"""Run the real ``postyard`` command as a subprocess (CLI calls and long-running roles)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

POSTYARD = [sys.executable, "-m", "postyard"]
# Failure guards only: a healthy run finishes far sooner. Nothing asserts on durations.
START_GUARD_SECONDS = 90.0
STOP_GUARD_SECONDS = 60.0


def base_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTYARD_")}
    env.update({"POSTYARD_LOG_LEVEL": "WARNING", **extra})
    return env


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(args: list[str], env: Mapping[str, str]) -> CliResult:
    done = subprocess.run(
        [*POSTYARD, *args],
        env=base_env(env),
        capture_output=True,
        text=True,
        timeout=STOP_GUARD_SECONDS,
        check=False,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


async def arun_cli(args: list[str], env: Mapping[str, str]) -> CliResult:
    """run_cli without blocking the event loop (servers under test live in it)."""
    return await asyncio.to_thread(run_cli, args, env)


@dataclass
class Role:
    """A long-running ``postyard up`` / ``postyard api`` process."""

    args: list[str]
    env: Mapping[str, str]
    proc: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)
    base_url: str | None = None
    _seen_url: threading.Event = field(default_factory=threading.Event)
    _reader: threading.Thread | None = None

    def start(self) -> Role:
        self.proc = subprocess.Popen(
            [*POSTYARD, *self.args],
            env=base_env(self.env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            match = re.search(r"API:\s+(http://\S+)/v1", line)
            if match:
                self.base_url = match.group(1)
                self._seen_url.set()
        self._seen_url.set()

    def wait_for_line(self, fragment: str) -> None:
        """Block until the process printed a line containing ``fragment``."""
        deadline = time.monotonic() + START_GUARD_SECONDS
        while time.monotonic() < deadline:
            if any(fragment in line for line in list(self.lines)):
                return
            assert self.proc is not None and self.proc.poll() is None, self.output()
            time.sleep(0.05)
        raise AssertionError(f"never printed {fragment!r}:\n{self.output()}")

    def wait_ready(self) -> str:
        assert self._seen_url.wait(START_GUARD_SECONDS), self.output()
        assert self.base_url is not None, self.output()
        deadline = time.monotonic() + START_GUARD_SECONDS
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=5).status_code == 200:
                    return self.base_url
            except httpx.TransportError:
                pass
            assert self.proc is not None and self.proc.poll() is None, self.output()
            time.sleep(0.1)
        raise AssertionError(f"never ready:\n{self.output()}")

    def interrupt(self) -> int:
        """Ctrl-C, as a user would; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(STOP_GUARD_SECONDS)
        self._finish()
        return code

    def kill(self) -> None:
        """SIGKILL: no clean-up code runs in the process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_GUARD_SECONDS)
        self._finish()

    def _finish(self) -> None:
        if self._reader is not None:
            self._reader.join(STOP_GUARD_SECONDS)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def output(self) -> str:
        return "".join(self.lines)


def postmaster_pid(data_dir: Path) -> int | None:
    """The embedded server's pid if it is running."""
    pidfile = data_dir / "pg" / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid
