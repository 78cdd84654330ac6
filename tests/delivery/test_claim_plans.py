"""A claim reads its rows by key, however many messages the instance holds.

Messages and their recipients are kept for the API, so those tables only grow, and a claim
whose plan scans one costs more with every message ever sent. On a database of this
module's own, filled with 20,000 due messages and analyzed, the planner must reach
``messages``, ``message_contents`` and ``deliveries`` through their keys in both claim
statements: as joins, the messages were hashed whole, and at the planner's default price of
a random read the 200 look-ups of a lease were priced above a scan of 20,000 deliveries.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from postyard.core.db import driver_connection
from postyard.sending import ledger
from tests.conftest import Isolated, pg_connect
from tests.support.tenants import tenant_with_key

FILLER = 20_000


async def _fill(conn: asyncpg.Connection, copies: int) -> None:
    """``copies`` copies of the one message there is (new ids), each with its content and
    one due recipient."""
    replaced = {
        "messages": {"id": "ids.mid"},
        "message_contents": {"message_id": "ids.mid"},
        "deliveries": {"id": "ids.did", "message_id": "ids.mid"},
    }
    parts = []
    for table, new in replaced.items():
        columns = await conn.fetchval(
            "SELECT array_agg(column_name::text ORDER BY ordinal_position)"
            " FROM information_schema.columns WHERE table_name = $1",
            table,
        )
        values = ", ".join(new.get(c, f"src.{c}") for c in columns)
        parts.append(
            f"INSERT INTO {table} ({', '.join(columns)})"
            f" SELECT {values} FROM (SELECT * FROM {table} LIMIT 1) src, ids"
        )
    await conn.execute(
        "WITH ids AS (SELECT gen_random_uuid() AS mid, gen_random_uuid() AS did"
        "             FROM generate_series(1, $1)),"
        f" m AS ({parts[0]}), c AS ({parts[1]}) {parts[2]}",
        copies,
    )


def _scanned(plan: str) -> set[str]:
    return set(re.findall(r'"Node Type": "Seq Scan",[^}]*?"Relation Name": "(\w+)"', plan))


async def test_claims_read_messages_by_key_in_a_large_table(isolated: Isolated) -> None:
    _, auth = await tenant_with_key(isolated.db, "plans")
    async with httpx.AsyncClient(base_url=isolated.base_url) as http:
        body = {"from": "a@sender.test", "to": "r@one.test", "subject": "s", "text": "t"}
        response = await http.post("/v1/emails", json=body, headers=auth)
    assert response.status_code == 200, response.text
    now = datetime.now(UTC)
    async with isolated.db.system_conn(reason="test") as conn, conn.transaction():
        await _fill(conn, FILLER)
        assert await conn.fetchval("SELECT count(*) FROM messages") == FILLER + 1
    owner = await pg_connect(str(isolated.runtime.urls.owner))  # ANALYZE is the owner's
    try:
        await owner.execute("ANALYZE messages, message_contents, deliveries")
    finally:
        await owner.close()
    async with isolated.db.system_tx(reason="test") as session:
        candidates, _ = await ledger.lock_due(session, limit=200, now=now)
        conn = await driver_connection(session)  # both statements are the driver's
        lock_plan = await conn.fetchval(
            "EXPLAIN (FORMAT JSON) " + ledger._LOCK_DUE.sql,
            *ledger._LOCK_DUE.arguments({"limit": 200, "now": now}),
        )
        params = {
            "owner": "test",
            "lease": timedelta(minutes=5),
            "now": now,
            "ids": [c.id for c in candidates],
        }
        start_plan = await conn.fetchval(
            "EXPLAIN (FORMAT JSON) " + ledger._START.sql, *ledger._START.arguments(params)
        )
        await session.rollback()
    assert len(candidates) == 200
    assert all(c.from_domain == "sender.test" for c in candidates)
    for plan in (lock_plan, start_plan):
        shown = json.dumps(plan)
        assert "messages" in shown  # the plan reads them at all
        assert _scanned(shown) & {"messages", "message_contents", "deliveries"} == set()
