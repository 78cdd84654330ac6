"""``postyard up`` as a newcomer runs it: a fresh data dir, the embedded PostgreSQL, Ctrl-C.

These start real processes (and a real embedded PostgreSQL of their own), so they are marked
e2e; they still run in ``make test``.
"""

from __future__ import annotations

import re
import smtplib
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import Role, postmaster_pid, run_cli

pytestmark = pytest.mark.e2e


def _env(data_dir: Path) -> dict[str, str]:
    return {
        "POSTYARD_DATA_DIR": str(data_dir),
        "POSTYARD_HTTP__PORT": "0",
        "POSTYARD_SMTP__PORT": "0",
        "POSTYARD_MX__PORT": "0",
    }


def test_first_run_keys_ctrl_c_and_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = _env(data)
    up = Role(["up"], env).start()
    try:
        base = up.wait_ready()
        assert "orgs create acme --json" in up.output()
        assert "keys create --org acme --name dev --json" in up.output()
        assert f"{base}/v1/docs" in up.output()
        assert "/metrics" not in up.output()  # no metrics token, no metrics path
        pg_pid = postmaster_pid(data)
        assert pg_pid is not None
        _mx_refuses_strangers(up.output())

        org = run_cli(["orgs", "create", "acme", "--json"], env)
        assert org.code == 0, org.stderr
        assert org.json()["slug"] == "acme"
        key = run_cli(["keys", "create", "--org", "acme", "--name", "ci", "--json"], env)
        assert key.code == 0, key.stderr
        auth = {"Authorization": f"Bearer {key.json()['token']}"}
        listed = httpx.get(f"{base}/v1/api-keys", headers=auth)
        assert listed.status_code == 200
        assert listed.json()["data"][0]["name"] == "ci"

        # A newcomer's first email is delivered into the capture server, content and all.
        sent = httpx.post(
            f"{base}/v1/emails",
            json={
                "from": "me@acme.test",
                "to": "you@example.com",
                "subject": "First",
                "html": "<p>It works</p>",
            },
            headers=auth,
        )
        assert sent.status_code == 200, sent.text
        email_id = sent.json()["id"]
        deadline = time.monotonic() + 60
        while httpx.get(f"{base}/v1/emails/{email_id}", headers=auth).json()["last_event"] != (
            "delivered"
        ):
            assert time.monotonic() < deadline, up.output()
            time.sleep(0.05)
        content = httpx.get(f"{base}/v1/emails/{email_id}/content", headers=auth).json()
        [captured] = content["captured"]
        assert captured["recipients"] == ["you@example.com"]
        assert "Subject: First" in captured["raw"]
        assert "It works" in captured["raw"]

        revoke = run_cli(["keys", "revoke", key.json()["id"], "--org", "acme"], env)
        assert revoke.code == 0, revoke.stderr
        refused = httpx.get(f"{base}/v1/api-keys", headers=auth)
        assert refused.status_code == 401
        assert refused.json() == {
            "statusCode": 401,
            "name": "invalid_api_key",
            "message": "API key is invalid.",
        }

        assert up.interrupt() == 0, up.output()
        assert postmaster_pid(data) is None, "Ctrl-C left the embedded PostgreSQL running"
    finally:
        up.kill()

    again = Role(["up"], env).start()
    try:
        again.wait_ready()
        orgs = run_cli(["orgs", "list", "--json"], env)
        assert [o["slug"] for o in orgs.json()] == ["acme"], "a second `up` must reuse the data"
        assert again.interrupt() == 0
    finally:
        again.kill()
    assert postmaster_pid(data) is None


def _mx_refuses_strangers(banner: str) -> None:
    """``up`` runs the inbound MX too: it answers, and only for return-path domains."""
    match = re.search(r"MX: +127\.0\.0\.1:(\d+)", banner)
    assert match is not None, banner
    with smtplib.SMTP("127.0.0.1", int(match.group(1)), timeout=30) as client:
        assert client.ehlo("remote.example")[0] == 250
        assert client.mail("")[0] == 250
        assert client.rcpt("someone@example.com") == (550, b"5.7.1 Relaying denied")


def test_two_processes_share_one_embedded_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = _env(data)
    token = "metrics-token-of-the-api-process"
    first = Role(["up"], env).start()
    second = Role(["api"], {**env, "POSTYARD_HTTP__METRICS_TOKEN": token})
    try:
        first_base = first.wait_ready()
        pg_pid = postmaster_pid(data)
        second.start()
        base = second.wait_ready()
        assert postmaster_pid(data) == pg_pid, "the second process must join, not start another"
        # The setting reaches the app: only the process that has a token serves /metrics.
        assert httpx.get(f"{first_base}/metrics").status_code == 404
        metrics = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"})
        assert metrics.status_code == 200, metrics.text
        assert 'postyard_organizations{status="active"} 0' in metrics.text
        assert f"Metrics:   {base}/metrics" in second.output()
        assert first.interrupt() == 0
        # the server stays up for the process still holding it
        assert postmaster_pid(data) == pg_pid
        assert httpx.get(f"{base}/readyz").status_code == 200
        assert second.interrupt() == 0
        assert postmaster_pid(data) is None
    finally:
        first.kill()
        second.kill()


def test_bad_settings_exit_with_one_readable_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    bad_port = run_cli(["up"], {**_env(data), "POSTYARD_HTTP__PORT": "abc"})
    assert bad_port.code == 1
    assert bad_port.stderr.strip().splitlines() == [
        "postyard: error: invalid setting POSTYARD_HTTP__PORT: Input should be a valid integer,"
        " unable to parse string as an integer"
    ]

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    unwritable = run_cli(["up"], {**_env(data), "POSTYARD_DATA_DIR": str(blocker / "sub")})
    assert unwritable.code == 1
    assert "is not writable" in unwritable.stderr
    assert len(unwritable.stderr.strip().splitlines()) == 1

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        in_use = run_cli(["up"], {**_env(data), "POSTYARD_HTTP__PORT": str(port)})
    assert in_use.code == 1
    assert in_use.stderr.strip() == (
        f"postyard: error: cannot listen on 127.0.0.1:{port}: address already in use"
    )

    api_first = run_cli(["api"], _env(tmp_path / "fresh"))
    assert api_first.code == 1
    assert "run `postyard migrate`" in api_first.stderr
