"""Webhooks from ``postyard up``: the worker process dispatches what the API's events fan
out, signed, to a receiver on loopback (allowed by the operator's setting)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import standardwebhooks

from tests.support.http_receiver import HttpReceiver
from tests.support.processes import Role, run_cli

pytestmark = pytest.mark.e2e


async def test_an_email_s_events_reach_a_signed_webhook(tmp_path: Path) -> None:
    env = {
        "POSTYARD_DATA_DIR": str(tmp_path / "data"),
        "POSTYARD_HTTP__PORT": "0",
        "POSTYARD_SMTP__PORT": "0",
        "POSTYARD_MX__PORT": "0",  # another instance on this host may hold the default
        "POSTYARD_WEBHOOKS__ALLOWED_NETWORKS": "127.0.0.0/8",
    }
    async with HttpReceiver() as receiver:
        up = Role(["up"], env).start()
        try:
            base = await asyncio.to_thread(up.wait_ready)
            await asyncio.to_thread(run_cli, ["orgs", "create", "acme"], env)
            key = await asyncio.to_thread(
                run_cli, ["keys", "create", "--org", "acme", "--name", "k", "--json"], env
            )
            auth = {"Authorization": f"Bearer {key.json()['token']}"}
            async with httpx.AsyncClient(base_url=base) as http:
                hook = await http.post(
                    "/v1/webhooks",
                    json={
                        "endpoint": receiver.url("/hook"),
                        "events": ["email.sent", "email.delivered"],
                    },
                    headers=auth,
                )
                assert hook.status_code == 200, hook.text
                secret = hook.json()["signing_secret"]
                sent = await http.post(
                    "/v1/emails",
                    json={
                        "from": "me@acme.test",
                        "to": "you@example.com",
                        "subject": "Hi",
                        "text": "x",
                    },
                    headers=auth,
                )
                assert sent.status_code == 200, sent.text
                requests = await receiver.wait_for_requests(2, timeout=60)
                types = sorted(json.loads(r.body)["type"] for r in requests)
                assert types == ["email.delivered", "email.sent"], up.output()
                for request in requests:
                    body = standardwebhooks.Webhook(secret).verify(request.body, request.headers)
                    assert body["data"]["email_id"] == sent.json()["id"]
                # The attempts are recorded after the answers: poll the log (as in test_up).
                url, deadline = f"/v1/webhooks/{hook.json()['id']}/deliveries", 600
                while len(log := (await http.get(url, headers=auth)).json()["data"]) < 2:
                    deadline -= 1
                    assert deadline, up.output()
                    await asyncio.sleep(0.05)
                assert {(a["status_code"], a["success"]) for a in log} == {(200, True)}
            assert await asyncio.to_thread(up.interrupt) == 0, up.output()
        finally:
            up.kill()
