"""``postyard up`` with several API and SMTP processes on one port and several worker
processes: all of them serve, the workers deliver every message once between them, Ctrl-C
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
        "POSTYARD_MX__PORT": "0",  # another instance on this host may hold the default
        "POSTYARD_HTTP__WORKERS": "2",
        "POSTYARD_SMTP__WORKERS": "2",
        "POSTYARD_DELIVERY__WORKERS": "2",
    }


def _children(pid: int) -> list[tuple[str, psutil.Process]]:
    """The role (``api``, ``smtp``, ``worker``) of each child of ``pid``."""
    found = []
    for child in psutil.Process(pid).children():
        role = next(arg for arg in child.cmdline() if arg in {"api", "smtp", "worker"})
        found.append((role, child))
    return found


def _listening_ports(proc: psutil.Process) -> set[int]:
    return {c.laddr.port for c in proc.net_connections(kind="tcp") if c.status == "LISTEN"}


def _wait_listening(proc: psutil.Process, port: int) -> None:
    deadline = time.monotonic() + STOP_GUARD_SECONDS
    while port not in _listening_ports(proc):
        assert time.monotonic() < deadline, f"{proc.cmdline()} never listened on {port}"
        time.sleep(0.1)


def _wait_started(proc: psutil.Process, base_nice: int) -> None:
    """Until a worker has lowered its priority, the first thing its command does: the banner
    comes from the first worker, so another may still be starting when it is printed."""
    deadline = time.monotonic() + STOP_GUARD_SECONDS
    while proc.nice() == base_nice:
        assert time.monotonic() < deadline, f"{proc.cmdline()} never lowered its priority"
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
        assert "2 API and 2 SMTP sharing the ports, 2 workers" in up.output()
        assert up.proc is not None
        every = _children(up.proc.pid)
        assert sorted(role for role, _ in every) == ["api", "smtp", "worker", "worker"]
        children = dict(every)
        parent = psutil.Process(up.proc.pid)
        match = re.search(r"SMTP:\s+127\.0\.0\.1:(\d+)", up.output())
        assert match is not None, up.output()
        smtp_port = int(match.group(1))
        assert {http_port, smtp_port} <= _listening_ports(parent)
        _wait_listening(children["api"], http_port)
        _wait_listening(children["smtp"], smtp_port)
        assert http_port not in _listening_ports(children["smtp"])
        # Delivery yields the CPU to accepting mail (POSTYARD_DELIVERY__NICE, default 10).
        base_nice = parent.nice()
        for role, child in every:
            if role == "worker":
                _wait_started(child, base_nice)
        assert sorted((role, child.nice() - base_nice) for role, child in every) == [
            ("api", 0),
            ("smtp", 0),
            ("worker", 10),
            ("worker", 10),
        ]

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
        assert _gone([child for _, child in every]), "Ctrl-C left a child running"
        assert postmaster_pid(data) is None
    finally:
        up.kill()


def test_a_killed_parent_leaves_no_child(tmp_path: Path) -> None:
    data = tmp_path / "data"
    up = Role(["up"], _env(data)).start()
    try:
        up.wait_ready()
        assert up.proc is not None
        children = [child for _, child in _children(up.proc.pid)]
        assert len(children) == 4
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


def test_two_worker_processes_deliver_every_message_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**_env(data), "POSTYARD_HTTP__WORKERS": "1", "POSTYARD_SMTP__WORKERS": "1"}
    up = Role(["up"], env).start()
    try:
        base = up.wait_ready()
        assert up.proc is not None
        shares = sorted(
            child.cmdline()[-1] for role, child in _children(up.proc.pid) if role == "worker"
        )
        assert shares == ["0/2", "1/2"]
        assert run_cli(["orgs", "create", "acme"], env).code == 0
        key = run_cli(["keys", "create", "--org", "acme", "--name", "ci", "--json"], env)
        auth = {"Authorization": f"Bearer {key.json()['token']}"}
        emails = [
            {"from": "me@acme.test", "to": f"r{i}@example.com", "subject": f"n{i}", "text": "x"}
            for i in range(60)
        ]
        ids: list[str] = []
        for start in range(0, len(emails), 20):
            sent = httpx.post(
                f"{base}/v1/emails/batch", json=emails[start : start + 20], headers=auth
            )
            assert sent.status_code == 200, sent.text
            ids += [e["id"] for e in sent.json()["data"]]
        pending = set(ids)
        deadline = time.monotonic() + STOP_GUARD_SECONDS
        while pending:
            assert time.monotonic() < deadline, f"{len(pending)} never delivered: {up.output()}"
            for email_id in sorted(pending):
                email = httpx.get(f"{base}/v1/emails/{email_id}", headers=auth).json()
                if email["last_event"] == "delivered":
                    pending.discard(email_id)
            time.sleep(0.1)
        for email_id, email in zip(ids, emails, strict=True):
            content = httpx.get(f"{base}/v1/emails/{email_id}/content", headers=auth).json()
            [captured] = content["captured"]  # once: no message delivered twice
            assert captured["recipients"] == [email["to"]]
            assert f"Subject: {email['subject']}" in captured["raw"]
        assert up.interrupt() == 0, up.output()
    finally:
        up.kill()
