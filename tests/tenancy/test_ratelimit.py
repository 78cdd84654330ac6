"""Per-key request rate limit with the IETF-style headers, counted in PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx

from postyard.core.http import AppServices
from tests.conftest import AppFactory, Tenant, start_server, stop_server
from tests.tenancy.test_api_keys import assert_error


@dataclass
class ManualClock:
    current: datetime = field(default_factory=lambda: datetime(2031, 1, 1, 12, 0, tzinfo=UTC))

    def now(self) -> datetime:
        return self.current


async def test_limit_headers_429_and_the_next_window(
    services: AppServices, app_factory: AppFactory, tenant: Tenant, other_tenant: Tenant
) -> None:
    clock = ManualClock()
    limited = AppServices(
        db=services.db, clock=clock, schema_head=services.schema_head, rate_limit_per_second=2
    )
    server, task, base = await start_server(app_factory(limited))
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            first = await client.get("/v1/api-keys", headers=tenant.auth)
            assert first.status_code == 200
            assert first.headers["ratelimit-limit"] == "2"
            assert first.headers["ratelimit-remaining"] == "1"
            assert first.headers["ratelimit-reset"] == "1"
            second = await client.get("/v1/api-keys", headers=tenant.auth)
            assert second.headers["ratelimit-remaining"] == "0"
            third = await client.get("/v1/api-keys", headers=tenant.auth)
            assert_error(third, 429, "rate_limit_exceeded")
            assert third.headers["retry-after"] == "1"
            assert third.headers["ratelimit-remaining"] == "0"
            # another key has its own budget
            assert (await client.get("/v1/api-keys", headers=other_tenant.auth)).status_code == 200
            clock.current += timedelta(seconds=1)
            assert (await client.get("/v1/api-keys", headers=tenant.auth)).status_code == 200
    finally:
        await stop_server(server, task)
