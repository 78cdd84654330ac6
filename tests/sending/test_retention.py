"""Retention of built messages: a message's MIME goes once every recipient has an outcome
and the retention time has passed; the message itself stays readable, and mail still on
its way keeps what it needs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from postyard.core.ids import uuid7, uuid7_floor
from postyard.sending import retention
from postyard.sending.models import MessageContent
from tests.conftest import Isolated
from tests.support.tenants import tenant_with_key


@dataclass
class ManualClock:
    current: datetime

    def now(self) -> datetime:
        return self.current


def test_the_floor_of_a_millisecond_sorts_between_earlier_and_later_ids() -> None:
    at = datetime(2031, 5, 1, 12, 0, 0, 500_000, tzinfo=UTC)
    ms = int(at.timestamp() * 1000)
    assert uuid7(ms - 1) < uuid7_floor(at) <= uuid7(ms) < uuid7(ms + 1)
    assert uuid7_floor(at).version == 7


@pytest_asyncio.fixture
async def http(isolated: Isolated) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=isolated.base_url) as client:
        yield client


async def _send(http: httpx.AsyncClient, auth: dict[str, str], to: str | list[str]) -> str:
    body = {"from": "app@sender.test", "to": to, "subject": "Hi", "text": f"text for {to}"}
    response = await http.post("/v1/emails", json=body, headers=auth)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


async def _kept(isolated: Isolated, ids: list[str]) -> set[str]:
    async with isolated.db.system_tx(reason="test") as s:
        rows = await s.scalars(
            select(MessageContent.message_id).where(
                MessageContent.message_id.in_([uuid.UUID(i) for i in ids])
            )
        )
        return {str(r) for r in rows}


async def test_contents_go_once_every_recipient_has_an_outcome_and_time_has_passed(
    isolated: Isolated, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, auth = await tenant_with_key(isolated.db, "r")
    done = [await _send(http, auth, f"done{i}@example.test") for i in range(3)]
    waiting = await _send(http, auth, "waiting@example.test")
    for email_id in done:
        canceled = await http.post(f"/v1/emails/{email_id}/cancel", headers=auth)
        assert canceled.status_code == 200, canceled.text
    every = [*done, waiting]
    now = datetime.now(UTC)

    # Not old enough yet: nothing goes.
    async with isolated.db.system_tx(reason="test") as s:
        early = await retention.prune_contents(
            s, accepted_before=now - timedelta(days=30), limit=100
        )
    assert early == 0
    assert await _kept(isolated, every) == set(every)

    # 31 days on, in batches of one: every finished message's content goes, one per batch.
    monkeypatch.setattr(retention, "BATCH", 1)
    prune = retention.content_pruner(isolated.db, ManualClock(now + timedelta(days=31)), days=30)
    assert await prune() >= len(done)  # the module's other finished messages may go too
    assert await _kept(isolated, every) == {waiting}  # on its way: it keeps its MIME

    # The message itself stays readable.
    shown = await http.get(f"/v1/emails/{done[0]}", headers=auth)
    assert shown.status_code == 200
    assert shown.json()["text"] == "text for done0@example.test"
    assert shown.json()["last_event"] == "canceled"
    assert await prune() == 0  # nothing left to prune
