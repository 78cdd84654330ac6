"""``postyard up`` with several API and SMTP processes on one port: all of them serve, Ctrl-C
stops every one, and a parent killed with SIGKILL leaves no child behind."""

from __future__ import annotations

import re
import signal
import smtplib
import time
from pathlib import Path

import httpx
import psutil  # type: ignore[import-untyped]  # no inline types; types-psutil is not locked
import pytest

from tests.support.processes import STOP_GUARD_SECONDS, Role, postmaster_pid, run_cli

pytestmark = pytest.mark.e2e


def _env(data_dir: Path) -> dict[str, str]:
    return {
        "POSTYARD_DATA_DIR": str(data_dir),
        "POSTYARD_HTTP__PORT": "0",
        "POSTYARD_SMTP__PORT": "0",
        "POSTYARD_HTTP__WORKERS": "2",
        "POSTYARD_SMTP__WORKERS": "2",
    }


def _children(pid: int) -> dict[str, psutil.Process]:
    """The role (``api``, ``smtp``, ``worker``) of each child of ``pid``."""
    found = {}
    for child in psutil.Process(pid).children():
        role = next(arg for arg in child.cmdline() if arg in {"api", "smtp", "worker"})
        found[role] = child
    return found


def _listening_ports(proc: psutil.Process) -> set[int]:
    return {c.laddr.port for c in proc.net_connections(kind="tcp") if c.status == "LISTEN"}


def _wait_listening(proc: psutil.Process, port: int) -> None:
    deadline = time.monotonic() + STOP_GUARD_SECONDS
    while port not in _listening_ports(proc):
        assert time.monotonic() < deadline, f"{proc.cmdline()} never listened on {port}"
        time.sleep(0.1)


def _gone(procs: list[psutil.Process]) -> bool:
    _, alive = psutil.wait_procs(procs, timeout=STOP_GUARD_SECONDS)
    return not alive


def test_api_and_smtp_processes_share_the_ports_and_stop_together(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = _env(data)
    up = Role(["up"], env).start()
    try:
        base = up.wait_ready()
        http_port = int(base.rsplit(":", 1)[1])
        assert "2 API and 2 SMTP sharing the ports" in up.output()
        assert up.proc is not None
        children = _children(up.proc.pid)
        assert set(children) == {"api", "smtp", "worker"}
        parent = psutil.Process(up.proc.pid)
        match = re.search(r"SMTP:\s+127\.0\.0\.1:(\d+)", up.output())
        assert match is not None, up.output()
        smtp_port = int(match.group(1))
        assert {http_port, smtp_port} <= _listening_ports(parent)
        _wait_listening(children["api"], http_port)
        _wait_listening(children["smtp"], smtp_port)
        assert http_port not in _listening_ports(children["smtp"])

        # Whichever process the kernel hands a connection to, it answers.
        key = run_cli(["keys", "create", "--org", "acme", "--name", "ci", "--json"], env)
        assert key.code != 0  # no organisation yet: the CLI shares the database
        assert run_cli(["orgs", "create", "acme"], env).code == 0
        key = run_cli(["keys", "create", "--org", "acme", "--name", "ci", "--json"], env)
        token = key.json()["token"]
        for _ in range(20):
            with httpx.Client() as client:  # a new connection each time
                listed = client.get(
                    f"{base}/v1/api-keys", headers={"Authorization": f"Bearer {token}"}
                )
            assert listed.status_code == 200
        for _ in range(10):
            with smtplib.SMTP("127.0.0.1", smtp_port) as client:
                assert client.noop()[0] == 250

        assert up.interrupt() == 0, up.output()
        assert _gone(list(children.values())), "Ctrl-C left a child running"
        assert postmaster_pid(data) is None
    finally:
        up.kill()


def test_a_killed_parent_leaves_no_child(tmp_path: Path) -> None:
    data = tmp_path / "data"
    up = Role(["up"], _env(data)).start()
    try:
        up.wait_ready()
        assert up.proc is not None
        children = list(_children(up.proc.pid).values())
        assert len(children) == 3
        up.proc.send_signal(signal.SIGKILL)
        up.proc.wait(STOP_GUARD_SECONDS)
        assert _gone(children), "children outlived a parent killed with SIGKILL"
        # The last holder gone, the embedded server stops too.
        deadline = time.monotonic() + STOP_GUARD_SECONDS
        while postmaster_pid(data) is not None:
            assert time.monotonic() < deadline, "the embedded PostgreSQL outlived every role"
            time.sleep(0.1)
    finally:
        up.kill()
