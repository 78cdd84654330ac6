"""The domain re-check runs in one worker process at a time: the lock it takes is held by
one transaction only, and free again after it."""

from __future__ import annotations

from postyard.worker import DOMAIN_CHECKS_LOCK
from tests.conftest import Isolated


async def test_one_transaction_at_a_time_holds_the_domain_check_lock(isolated: Isolated) -> None:
    async with isolated.db.system_tx(reason="test: one worker") as first:
        assert await first.scalar(DOMAIN_CHECKS_LOCK) is True
        async with isolated.db.system_tx(reason="test: another worker") as second:
            assert await second.scalar(DOMAIN_CHECKS_LOCK) is False
    async with isolated.db.system_tx(reason="test: the next round") as later:
        assert await later.scalar(DOMAIN_CHECKS_LOCK) is True
