"""The suppression service other domains call: upsert and the recipient check."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from postyard.core.db import Database
from postyard.core.errors import ValidationFailed
from postyard.suppression import SuppressionReason, suppress, suppressed_among
from postyard.suppression.service import upsert_suppression
from tests.conftest import Tenant

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


async def test_suppress_is_idempotent_and_case_insensitive(db: Database, tenant: Tenant) -> None:
    org = tenant.org.id
    source = uuid.uuid4()
    async with db.tenant_tx(org) as session:
        first = await upsert_suppression(
            session, org, "Bob@Example.test", SuppressionReason.MANUAL, now=NOW
        )
        await suppress(
            session,
            org,
            "bob@example.TEST",
            SuppressionReason.HARD_BOUNCE,
            now=NOW + timedelta(minutes=1),
            source_email_id=source,
            detail="550 5.1.1 user unknown",
        )
        again = await upsert_suppression(
            session,
            org,
            "BOB@example.test",
            SuppressionReason.HARD_BOUNCE,
            now=NOW,
            source_email_id=source,
        )
        assert again.id == first.id
        assert again.created_at == first.created_at
        assert again.reason is SuppressionReason.HARD_BOUNCE
        assert again.source_email_id == source
        found = await suppressed_among(
            session, org, ["bob@example.test", "BOB@EXAMPLE.TEST", "carol@example.test"], NOW
        )
    assert found == {"bob@example.test", "BOB@EXAMPLE.TEST"}


async def test_expired_entries_no_longer_suppress(db: Database, tenant: Tenant) -> None:
    org = tenant.org.id
    async with db.tenant_tx(org) as session:
        await suppress(
            session,
            org,
            "temp@example.test",
            SuppressionReason.MANUAL,
            now=NOW,
            expires_at=NOW + timedelta(days=1),
        )
        before = await suppressed_among(session, org, ["temp@example.test"], NOW)
        after = await suppressed_among(session, org, ["temp@example.test"], NOW + timedelta(days=1))
    assert before == {"temp@example.test"}
    assert after == set()


async def test_another_tenant_does_not_see_the_entry(
    db: Database, tenant: Tenant, other_tenant: Tenant
) -> None:
    async with db.tenant_tx(tenant.org.id) as session:
        await suppress(
            session, tenant.org.id, "x@example.test", SuppressionReason.COMPLAINT, now=NOW
        )
    async with db.tenant_tx(other_tenant.org.id) as session:
        seen = await suppressed_among(session, other_tenant.org.id, ["x@example.test"], NOW)
    assert seen == set()


@pytest.mark.parametrize("bad", ["", "   ", "no-at-sign", "a@" + "x" * 320])
async def test_suppress_rejects_what_is_not_an_address(
    db: Database, tenant: Tenant, bad: str
) -> None:
    with pytest.raises(ValidationFailed):
        async with db.tenant_tx(tenant.org.id) as session:
            await suppress(session, tenant.org.id, bad, SuppressionReason.MANUAL, now=NOW)


async def test_nothing_to_check_costs_nothing(db: Database, tenant: Tenant) -> None:
    async with db.tenant_tx(tenant.org.id) as session:
        assert await suppressed_among(session, tenant.org.id, [], NOW) == set()
