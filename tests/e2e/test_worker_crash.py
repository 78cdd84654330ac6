"""Crash test: the worker runs as a subprocess, is SIGKILLed while holding leases mid-batch,
and is restarted. Every accepted message reaches the sink at least once and the ledger shows
every recipient delivered."""

from __future__ import annotations

import asyncio
import email
import time
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from postyard.sending.models import Delivery
from postyard.tenancy import service as tenancy
from postyard.tenancy.types import Scope
from tests.conftest import APP_ROLE, SYSTEM_ROLE, TEST_SECRET, Isolated
from tests.support.processes import STOP_GUARD_SECONDS, Role
from tests.support.smtp_sink import SmtpSink

pytestmark = pytest.mark.e2e
MESSAGES = 150


async def _statuses(isolated: Isolated) -> dict[str, int]:
    async with isolated.db.system_tx(reason="test") as s:
        rows = await s.execute(select(Delivery.status, func.count()).group_by(Delivery.status))
        return {status: int(count) for status, count in rows}


async def test_sigkill_mid_batch_loses_nothing(isolated: Isolated) -> None:
    async with isolated.db.system_tx(reason="test") as s:
        org = await tenancy.create_organization(s, name="crash", slug=f"c-{uuid.uuid4().hex[:8]}")
    async with isolated.db.tenant_tx(org.id) as s:
        key = await tenancy.create_api_key(s, org.id, name="k", scope=Scope.FULL)
    auth = {"Authorization": f"Bearer {key.token}"}
    accepted: set[str] = set()
    async with httpx.AsyncClient(base_url=isolated.base_url) as http:
        for batch in range(MESSAGES // 50):
            body = [
                {
                    "from": "a@sender.test",
                    "to": f"r{batch}-{i}@rcpt.test",
                    "subject": "s",
                    "text": "t",
                }
                for i in range(50)
            ]
            response = await http.post("/v1/emails/batch", json=body, headers=auth)
            assert response.status_code == 200, response.text
            accepted |= {item["id"] for item in response.json()["data"]}
    assert len(accepted) == MESSAGES

    assert isolated.runtime.settings.database_url is not None
    async with SmtpSink() as sink:
        release = sink.hold_after(40)
        env = {
            "POSTYARD_DATABASE_URL": isolated.runtime.settings.database_url.get_secret_value(),
            "POSTYARD_SECRET_KEY": TEST_SECRET,
            "POSTYARD_DATA_DIR": str(isolated.runtime.settings.data_dir),
            "POSTYARD_DB__APP_ROLE": APP_ROLE,
            "POSTYARD_DB__SYSTEM_ROLE": SYSTEM_ROLE,
            "POSTYARD_DELIVERY__MODE": "relay",
            "POSTYARD_DELIVERY__RELAY_URL": f"smtp://127.0.0.1:{sink.port}",
            "POSTYARD_DELIVERY__RELAY_TLS": "none",
            "POSTYARD_DELIVERY__LEASE_SECONDS": "2",
            "POSTYARD_DELIVERY__BATCH_SIZE": "25",
        }
        first = Role(["worker"], env).start()
        try:
            await asyncio.to_thread(first.wait_for_line, "(worker) is up.")
            await sink.wait_for_messages(40, timeout=STOP_GUARD_SECONDS)
            # The worker now waits for a DATA reply with leases held: kill it there.
            held = await _statuses(isolated)
            assert held.get("sending", 0) > 0, held
            await asyncio.to_thread(first.kill)
        finally:
            first.kill()
        release.set()

        second = Role(["worker"], env).start()
        try:
            await asyncio.to_thread(second.wait_for_line, "(worker) is up.")
            deadline = time.monotonic() + STOP_GUARD_SECONDS
            while (await _statuses(isolated)).get("delivered", 0) < MESSAGES:
                assert time.monotonic() < deadline, (await _statuses(isolated), second.output())
                await asyncio.sleep(0.1)
            assert await asyncio.to_thread(second.interrupt) == 0, second.output()
        finally:
            second.kill()

    assert await _statuses(isolated) == {"delivered": MESSAGES}
    seen = {
        email.message_from_bytes(m.data)["Message-ID"].strip("<>").split("@")[0]
        for m in sink.messages
    }
    assert accepted <= seen, "every accepted message reached the sink at least once"
