"""Lanes woken together claim one at a time, and a lane skips its claim when one that began
after it asked took every due row; a claim that left rows behind lets the next one claim.

Four lanes woken at once: the first claims; the other three asked while it ran, so they
cannot know what it saw, and the first of them claims again for all three."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncSession

from postyard.core.clock import SystemClock
from postyard.core.db import Database, TenantId
from postyard.delivery.routing import RelayDeliverer
from postyard.delivery.worker import DeliveryWorker, WorkerConfig
from postyard.sending import ledger
from tests.delivery.test_worker import Env, _relay, _transport, env
from tests.support.smtp_sink import SmtpSink

__all__ = ["env"]  # the fixture, shared with the worker's tests


class CountingDatabase:
    """The test database, counting the worker's claim transactions."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.claims = 0

    def system_tx(
        self, *, reason: str, **options: Any
    ) -> AbstractAsyncContextManager[AsyncSession]:
        if reason == "delivery worker: claim":
            self.claims += 1
        return self._db.system_tx(reason=reason, **options)


async def _lanes(env: Env, *, lanes: int, batch_size: int) -> tuple[list[int], int]:
    """``lanes`` batches started together: what each handled, and the claims they ran."""
    counting = CountingDatabase(env.db)
    transport = _transport()
    async with SmtpSink() as sink:
        worker = DeliveryWorker(
            cast(Database, counting),
            RelayDeliverer(transport, _relay(sink)),
            WorkerConfig(owner=f"test-{uuid.uuid4().hex[:6]}", batch_size=batch_size),
            SystemClock(),
        )
        handled = await asyncio.gather(*(worker.run_once() for _ in range(lanes)))
    await transport.aclose()
    return list(handled), counting.claims


async def test_lanes_woken_together_share_claims_that_take_everything(env: Env) -> None:
    await env.send(to="a@one.test")
    handled, claims = await _lanes(env, lanes=4, batch_size=200)
    assert sorted(handled) == [0, 0, 0, 1]
    assert claims == 2  # not 4


async def test_a_claim_that_left_rows_behind_lets_the_next_lane_claim(env: Env) -> None:
    await env.send(to="a@one.test")
    await env.send(to="b@one.test")
    handled, claims = await _lanes(env, lanes=2, batch_size=1)
    assert handled == [1, 1]
    assert claims == 2


def test_a_claim_took_all_due_rows_unless_a_tenant_or_the_limit_was_reached() -> None:
    def rows(*tenants: int) -> list[ledger.Candidate]:
        at = datetime(2026, 1, 1, tzinfo=UTC)
        return [
            ledger.Candidate(
                uuid.uuid4(),
                TenantId(uuid.UUID(int=t)),
                uuid.uuid4(),
                "r@x.test",
                "x.test",
                "s.test",
                0,
                at,
            )
            for t in tenants
        ]

    assert ledger.took_all_due([], share=200, limit=200)
    assert ledger.took_all_due(rows(1, 1, 2), share=3, limit=6)
    assert not ledger.took_all_due(rows(1, 1, 1, 2), share=3, limit=6)  # tenant 1 capped
    assert not ledger.took_all_due(rows(1, 2, 3), share=1, limit=3)  # the limit
