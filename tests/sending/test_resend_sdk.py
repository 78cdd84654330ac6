"""Contract test: the official `resend` Python SDK, unmodified, with its base URL set to us.

The SDK is synchronous (requests), so each call runs in a thread while the server under test
keeps running in this event loop.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import resend
import resend.exceptions

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


PARAMS: dict[str, Any] = {
    "from": "Acme <onboarding@acme.test>",
    "to": ["delivered@rcpt.test"],
    "subject": "Hello from the SDK",
    "html": "<strong>it works</strong>",
    "tags": [{"name": "category", "value": "confirm_email"}],
}


@pytest.mark.usefixtures("sdk")
async def test_send_get_list() -> None:
    attachment = {"filename": "hi.txt", "content": list(b"hello")}
    sent = await call(resend.Emails.send, {**PARAMS, "attachments": [attachment]})
    email_id = sent["id"]
    uuid.UUID(email_id)
    got = await call(resend.Emails.get, email_id)
    assert got["id"] == email_id
    assert got["subject"] == "Hello from the SDK"
    assert got["to"] == ["delivered@rcpt.test"]
    assert got["last_event"] == "sent"
    listed = await call(resend.Emails.list)
    assert email_id in [e["id"] for e in listed["data"]]
    b64 = {"filename": "b.txt", "content": base64.b64encode(b"x").decode()}
    assert (await call(resend.Emails.send, {**PARAMS, "attachments": [b64]}))["id"]


@pytest.mark.usefixtures("sdk")
async def test_batch_strict_and_permissive() -> None:
    batch = await call(resend.Batch.send, [PARAMS, {**PARAMS, "subject": "second"}])
    assert len(batch["data"]) == 2
    bad = {**PARAMS, "to": ["not-an-address"]}
    with pytest.raises(resend.exceptions.ResendError) as caught:
        await call(resend.Batch.send, [PARAMS, bad])
    assert "Email 1" in str(caught.value)
    permissive = await call(
        resend.Batch.send, [PARAMS, bad, PARAMS], {"batch_validation": "permissive"}
    )
    assert len(permissive["data"]) == 2
    assert [e["index"] for e in permissive["errors"]] == [1]


@pytest.mark.usefixtures("sdk")
async def test_schedule_reschedule_cancel() -> None:
    sent = await call(resend.Emails.send, {**PARAMS, "scheduled_at": "in 1 hour"})
    email_id = sent["id"]
    assert (await call(resend.Emails.get, email_id))["last_event"] == "scheduled"
    updated = await call(resend.Emails.update, {"id": email_id, "scheduled_at": "in 2 hours"})
    assert updated["id"] == email_id
    canceled = await call(resend.Emails.cancel, email_id)
    assert canceled["id"] == email_id
    assert (await call(resend.Emails.get, email_id))["last_event"] == "canceled"
    with pytest.raises(resend.exceptions.ResendError):
        await call(resend.Emails.cancel, email_id)


@pytest.mark.usefixtures("sdk")
async def test_idempotent_retry() -> None:
    options = {"idempotency_key": f"welcome-{uuid.uuid4()}"}
    first = await call(resend.Emails.send, PARAMS, options)
    again = await call(resend.Emails.send, PARAMS, options)
    assert first["id"] == again["id"]
    with pytest.raises(resend.exceptions.ResendError) as caught:
        await call(resend.Emails.send, {**PARAMS, "subject": "changed"}, options)
    assert "different request body" in str(caught.value)
    batch_options = {"idempotency_key": f"batch-{uuid.uuid4()}"}
    b1 = await call(resend.Batch.send, [PARAMS, PARAMS], batch_options)
    b2 = await call(resend.Batch.send, [PARAMS, PARAMS], batch_options)
    assert b1["data"] == b2["data"]


@pytest.mark.usefixtures("sdk")
async def test_api_keys_and_errors() -> None:
    created = await call(resend.ApiKeys.create, {"name": "from-sdk"})
    assert created["token"].startswith("py_")
    listed = await call(resend.ApiKeys.list)
    assert created["id"] in [k["id"] for k in listed["data"]]
    await call(resend.ApiKeys.remove, created["id"])
    with pytest.raises(resend.exceptions.ResendError) as caught:
        await call(resend.Emails.get, str(uuid.uuid4()))
    assert "not found" in str(caught.value).lower()
