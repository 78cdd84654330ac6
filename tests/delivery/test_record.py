"""Recording a batch's outcomes in one statement: statuses, events and each message's last
event move only for rows still leased to the recording worker."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import text

from postyard.core.clock import SystemClock
from postyard.delivery.exchange import _parse
from postyard.delivery.record import record_results
from postyard.sending import ledger
from postyard.sending.last_event import last_events
from postyard.sending.ledger import DeliveryResult, Result
from tests.delivery.test_worker import Env, env

__all__ = ["env"]  # the fixture, shared with the worker's tests


async def test_only_rows_still_leased_are_recorded_with_their_events(env: Env) -> None:
    email_id = uuid.UUID(await env.send(to=["a@one.test", "b@one.test", "c@one.test"]))
    now = SystemClock().now()
    async with env.db.system_tx(reason="test: claim") as s:
        claimed, _ = await ledger.claim_due(
            s, owner="me", limit=1000, lease=timedelta(minutes=5), now=now
        )
    mine = sorted((c for c in claimed if c.message_id == email_id), key=lambda c: c.recipient)
    a, b, c = mine
    async with env.db.system_tx(reason="test: b's lease went to another worker") as s:
        await s.execute(
            text("UPDATE deliveries SET lease_owner = 'other' WHERE id = :id"), {"id": b.id}
        )
    results = [
        DeliveryResult(a, Result.DELIVERED, "250 ok"),
        DeliveryResult(b, Result.DELIVERED, "250 ok"),
        DeliveryResult(c, Result.DEFERRED, "451 later", now + timedelta(minutes=1)),
    ]
    async with env.db.system_tx(reason="test: record") as s:
        assert await record_results(s, results, owner="me", now=now) == 2
    async with env.db.system_tx(reason="test: read back") as s:
        events = (
            await s.execute(
                text(
                    "SELECT recipient, type, data->>'reply' FROM events"
                    " WHERE message_id = :m AND type <> 'email.sent' ORDER BY seq"
                ),
                {"m": email_id},
            )
        ).all()
        last = (await last_events(s, mine[0].tenant_id, [email_id]))[email_id]
    assert [tuple(e) for e in events] == [
        ("a@one.test", "email.delivered", "250 ok"),
        ("c@one.test", "email.delivery_delayed", "451 later"),
    ]
    assert last == "delivery_delayed"  # the batch's last result for the message
    assert await env.statuses(str(email_id)) == {
        "a@one.test": "delivered",
        "b@one.test": "sending",
        "c@one.test": "deferred",
    }


async def test_a_reply_that_is_not_utf8_is_recorded_with_replacement_characters(
    env: Env,
) -> None:
    # A server answering in Latin-1 (and with a NUL): the reader keeps the bytes it cannot
    # decode as surrogates, which PostgreSQL cannot store; the record must not fail on them.
    reply, _ = _parse(bytearray(b"550 5.1.1 Usu\xe1rio \x00desconhecido\r\n"))
    assert reply is not None
    email_id = uuid.UUID(await env.send(to=["latin@one.test"]))
    now = SystemClock().now()
    async with env.db.system_tx(reason="test: claim") as s:
        claimed, _ = await ledger.claim_due(
            s, owner="me", limit=1000, lease=timedelta(minutes=5), now=now
        )
    [mine] = [c for c in claimed if c.message_id == email_id]
    async with env.db.system_tx(reason="test: record") as s:
        assert (
            await record_results(
                s, [DeliveryResult(mine, Result.FAILED, str(reply))], owner="me", now=now
            )
            == 1
        )
    async with env.db.system_tx(reason="test: read back") as s:
        stored = (
            await s.execute(
                text(
                    "SELECT d.last_reply, e.data->>'reply' FROM deliveries d JOIN events e"
                    " ON e.message_id = d.message_id AND e.type = 'email.failed'"
                    " WHERE d.id = :d"
                ),
                {"d": mine.id},
            )
        ).one()
    assert tuple(stored) == ("550 5.1.1 Usu\ufffdrio \ufffddesconhecido",) * 2
