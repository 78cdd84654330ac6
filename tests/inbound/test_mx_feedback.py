"""The inbound MX listener over real sockets: ARF complaints at the feedback address and
mailto unsubscribes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from postyard.core.db import Database
from postyard.mxd import MxRole, intake_config
from postyard.runtime import Runtime
from postyard.tracking import tokens
from postyard.tracking.unsubscribe import mailto_address
from tests.conftest import Tenant
from tests.inbound import (
    arf,
    deliver,
    delivery_row,
    drop_counts,
    event_types,
    send,
    suppression_reason,
    talk,
)


async def test_arf_complaint_suppresses_and_records_the_event(
    mx: MxRole, db: Database, http: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    [sent] = await send(db, http, tenant, runtime)
    feedback = f"fbl@{sent.domain}"
    reply = await talk(mx, [feedback], arf(feedback, sent.recipient, return_path=sent.return_path))
    assert reply is not None
    assert reply[0] == 250
    row = await delivery_row(db, sent.delivery_id)
    assert row.status == "delivered"
    assert await suppression_reason(db, row) == "complaint"
    events = await event_types(db, sent.email_id)
    [complained] = [data for kind, data in events if kind == "email.complained"]
    assert (complained["feedback_type"], complained["user_agent"]) == ("abuse", "TestFBL/1.0")
    got = await http.get(f"/v1/emails/{sent.email_id}", headers=tenant.auth)
    assert got.json()["last_event"] == "complained"


async def test_arf_by_message_id_only_for_a_one_recipient_message(
    mx: MxRole, db: Database, http: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    [single] = await send(db, http, tenant, runtime)
    pair = await send(db, http, tenant, runtime, to=("a@example.net", "b@example.net"))
    before = await drop_counts(db)
    for sent in (single, pair[0]):
        got = await http.get(f"/v1/emails/{sent.email_id}", headers=tenant.auth)
        assert got.status_code == 200
        header = await _message_id_header(db, sent.email_id)
        feedback = f"fbl@{sent.domain}"
        report = arf(feedback, sent.recipient, return_path=None, message_id=header)
        reply = await talk(mx, [feedback], report)
        assert reply is not None
        assert reply[0] == 250
    assert await suppression_reason(db, await delivery_row(db, single.delivery_id)) == "complaint"
    for sent in pair:  # either recipient could have named the Message-ID: no one is suppressed
        assert await suppression_reason(db, await delivery_row(db, sent.delivery_id)) is None
    after = await drop_counts(db)
    assert after["unknown_message"] == before.get("unknown_message", 0) + 1


async def _message_id_header(db: Database, email_id: uuid.UUID) -> str:
    from postyard.sending.models import Message

    async with db.system_tx(reason="test") as session:
        message = await session.get(Message, email_id)
        assert message is not None
        return message.message_id_header


async def test_not_spam_feedback_is_dropped(
    mx: MxRole, db: Database, http: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    [sent] = await send(db, http, tenant, runtime)
    feedback = f"fbl@{sent.domain}"
    report = arf(feedback, sent.recipient, return_path=sent.return_path, feedback_type="not-spam")
    before = await drop_counts(db)
    reply = await talk(mx, [feedback], report)
    assert reply is not None
    assert reply[0] == 250
    assert (await drop_counts(db))["not_a_complaint"] == before.get("not_a_complaint", 0) + 1
    assert await suppression_reason(db, await delivery_row(db, sent.delivery_id)) is None


async def test_mailto_unsubscribe_suppresses(
    mx: MxRole, db: Database, http: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    [sent] = await send(db, http, tenant, runtime)
    key = intake_config(runtime.settings, runtime.secret).unsubscribe_key
    claim = tokens.MailtoUnsubscribeClaim(delivery_id=sent.delivery_id, issued_at=datetime.now(UTC))
    address = mailto_address(tokens.make_mailto_unsubscribe_token(key, claim), sent.domain)
    message = f"From: {sent.recipient}\r\nTo: {address}\r\nSubject: unsubscribe\r\n\r\n\r\n"
    exchange = await asyncio.to_thread(
        deliver, mx.port, [address], message.encode(), sent.recipient
    )
    assert exchange.data is not None
    assert exchange.data[0] == 250
    row = await delivery_row(db, sent.delivery_id)
    assert await suppression_reason(db, row) == "unsubscribe"
    kinds = [kind for kind, _ in await event_types(db, sent.email_id)]
    assert "email.unsubscribed" in kinds


async def test_forged_and_expired_unsubscribe_tokens_are_dropped(
    mx: MxRole, db: Database, http: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    [sent] = await send(db, http, tenant, runtime)
    key = intake_config(runtime.settings, runtime.secret).unsubscribe_key
    old = tokens.MailtoUnsubscribeClaim(
        delivery_id=sent.delivery_id, issued_at=datetime.now(UTC) - timedelta(days=400)
    )
    expired = mailto_address(tokens.make_mailto_unsubscribe_token(key, old), sent.domain)
    fresh = tokens.MailtoUnsubscribeClaim(delivery_id=sent.delivery_id, issued_at=datetime.now(UTC))
    forged = mailto_address(tokens.make_mailto_unsubscribe_token(b"k" * 32, fresh), sent.domain)
    before = await drop_counts(db)
    for address in (expired, forged):
        reply = await talk(mx, [address], b"Subject: unsubscribe\r\n\r\n\r\n")
        assert reply is not None
        assert reply[0] == 250
    after = await drop_counts(db)
    assert after["expired_token"] == before.get("expired_token", 0) + 1
    assert after["forged_token"] == before.get("forged_token", 0) + 1
    assert await suppression_reason(db, await delivery_row(db, sent.delivery_id)) is None
