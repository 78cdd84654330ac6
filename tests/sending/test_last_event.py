"""An email's last_event is its latest state event: engagement and a delay reported after
the message left do not move it, a later bounce or complaint does."""

from __future__ import annotations

import uuid
from typing import Any

from alembic import command
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from postyard.core.db import TenantId
from postyard.events.service import record_events
from postyard.events.types import EventType, NewEvent
from postyard.migrations.runner import _config
from postyard.sending.last_event import last_events
from postyard.sending.models import Message
from tests.delivery.test_worker import Env, env

__all__ = ["env"]


async def _shown(env: Env, email_id: str) -> str:
    response = await env.http.get(f"/v1/emails/{email_id}", headers=env.auth)
    assert response.status_code == 200, response.text
    return str(response.json()["last_event"])


async def _add(env: Env, email_id: str, kind: EventType, data: dict[str, Any]) -> None:
    message_id = uuid.UUID(email_id)
    async with env.db.system_tx(reason="test: the message's tenant") as s:
        found = await s.scalar(select(Message.tenant_id).where(Message.id == message_id))
    assert found is not None
    tenant = TenantId(found)
    async with env.db.tenant_tx(tenant) as s:
        await record_events(
            s, [NewEvent(tenant_id=tenant, type=kind, message_id=message_id, data=data)]
        )


async def test_only_state_events_move_the_last_event(env: Env) -> None:
    email_id = await env.send(to=["a@one.test"])
    assert await _shown(env, email_id) == "sent"
    await _add(env, email_id, EventType.EMAIL_DELIVERED, {})
    await _add(env, email_id, EventType.EMAIL_OPENED, {})
    await _add(env, email_id, EventType.EMAIL_CLICKED, {"link": "https://example.com"})
    await _add(env, email_id, EventType.EMAIL_UNSUBSCRIBED, {})
    await _add(env, email_id, EventType.EMAIL_DELIVERY_DELAYED, {"source": "dsn"})
    assert await _shown(env, email_id) == "delivered"
    await _add(env, email_id, EventType.EMAIL_COMPLAINED, {"source": "arf"})
    assert await _shown(env, email_id) == "complained"
    # A delay the worker met itself (a 4xx) is a state: the email waits for a retry.
    await _add(env, email_id, EventType.EMAIL_DELIVERY_DELAYED, {"reply": "451 later"})
    assert await _shown(env, email_id) == "delivery_delayed"


async def test_a_listing_shows_each_emails_own_last_event(env: Env) -> None:
    first, second = await env.send(to=["a@one.test"]), await env.send(to=["b@one.test"])
    await _add(env, first, EventType.EMAIL_BOUNCED, {})
    response = await env.http.get("/v1/emails", params={"limit": 10}, headers=env.auth)
    assert response.status_code == 200, response.text
    shown = {e["id"]: e["last_event"] for e in response.json()["data"]}
    assert (shown[first], shown[second]) == ("bounced", "sent")


async def test_no_emails_no_statement(env: Env) -> None:
    async with env.db.system_tx(reason="test") as s:
        assert await last_events(s, TenantId(uuid.uuid4()), []) == {}


async def test_downgrading_puts_the_column_back_with_the_same_values(env: Env) -> None:
    delivered, canceled = await env.send(to=["a@one.test"]), await env.send(to=["b@one.test"])
    await _add(env, delivered, EventType.EMAIL_DELIVERED, {})
    await _add(env, delivered, EventType.EMAIL_OPENED, {})
    await _add(env, canceled, EventType.EMAIL_CANCELED, {})
    runtime = env.iso.runtime
    engine = create_async_engine(runtime.urls.owner)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(lambda c: command.downgrade(_config(c, runtime.roles), "0014"))
            await conn.commit()
            rows = await conn.execute(text("SELECT id, last_event FROM messages"))
            stored = {str(r.id): r.last_event for r in rows}
            await conn.run_sync(lambda c: command.upgrade(_config(c, runtime.roles), "head"))
            await conn.commit()
    finally:
        await engine.dispose()
    assert (stored[delivered], stored[canceled]) == ("delivered", "canceled")
    assert await _shown(env, delivered) == "delivered"  # and back at head, read from events
