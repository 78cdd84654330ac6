"""Contract test: the official `resend` SDK's webhook calls, unmodified, against us."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import resend

from tests.conftest import LiveServer, Tenant

T = TypeVar("T")


@pytest.fixture
def sdk(live: LiveServer, tenant: Tenant) -> Iterator[None]:
    previous = (resend.api_key, resend.api_url)
    resend.api_key = tenant.key.token
    resend.api_url = f"{live.base_url}/v1"
    yield
    resend.api_key, resend.api_url = previous


async def call(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(fn, *args)


@pytest.mark.usefixtures("sdk")
async def test_create_get_list_update_remove() -> None:
    created = await call(
        resend.Webhooks.create,
        {"endpoint": "https://hooks.example.com/sdk", "events": ["email.delivered"]},
    )
    assert created["signing_secret"].startswith("whsec_")
    webhook_id = created["id"]
    got = await call(resend.Webhooks.get, webhook_id)
    assert (got["endpoint"], got["events"], got["status"]) == (
        "https://hooks.example.com/sdk",
        ["email.delivered"],
        "enabled",
    )
    listed = await call(resend.Webhooks.list)
    assert [w["id"] for w in listed["data"]] == [webhook_id]
    updated = await call(
        resend.Webhooks.update,
        {"webhook_id": webhook_id, "status": "disabled", "events": ["email.bounced"]},
    )
    assert updated["id"] == webhook_id
    got = await call(resend.Webhooks.get, webhook_id)
    assert (got["status"], got["events"]) == ("disabled", ["email.bounced"])
    removed = await call(resend.Webhooks.remove, webhook_id)
    assert removed["deleted"] is True
