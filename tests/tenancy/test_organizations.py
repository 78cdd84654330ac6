"""Organisation lifecycle through the service, observed through the API."""

from __future__ import annotations

import httpx
import pytest

from postyard.core.db import Database
from postyard.core.errors import NotFound, ValidationFailed
from postyard.tenancy import service
from postyard.tenancy.errors import SlugTaken
from postyard.tenancy.types import OrgStatus
from tests.conftest import Tenant
from tests.tenancy.test_api_keys import assert_error


async def test_suspended_organization_keys_are_refused(
    http: httpx.AsyncClient, db: Database, tenant: Tenant
) -> None:
    assert (await http.get("/v1/api-keys", headers=tenant.auth)).status_code == 200
    async with db.system_tx(reason="test") as s:
        await service.set_organization_status(s, tenant.org.slug, OrgStatus.SUSPENDED)
    response = await http.get("/v1/api-keys", headers=tenant.auth)
    assert_error(response, 403, "organization_suspended")
    assert "suspended" in response.json()["message"]
    async with db.system_tx(reason="test") as s:
        await service.set_organization_status(s, str(tenant.org.id), OrgStatus.ACTIVE)
    assert (await http.get("/v1/api-keys", headers=tenant.auth)).status_code == 200


async def test_deleted_organization_keys_are_invalid(
    http: httpx.AsyncClient, db: Database, tenant: Tenant
) -> None:
    async with db.system_tx(reason="test") as s:
        await service.set_organization_status(s, tenant.org.slug, OrgStatus.DELETED)
    assert_error(await http.get("/v1/api-keys", headers=tenant.auth), 401, "invalid_api_key")
    async with db.system_tx(reason="test") as s:
        assert await service.get_organization(s, tenant.org.slug) is not None
        with pytest.raises(NotFound):
            await service.require_organization(s, tenant.org.slug)


async def test_slug_rules(db: Database, tenant: Tenant) -> None:
    async with db.system_tx(reason="test") as s:
        with pytest.raises(SlugTaken):
            await service.create_organization(s, name="Dup", slug=tenant.org.slug)
    async with db.system_tx(reason="test") as s:
        with pytest.raises(ValidationFailed):
            await service.create_organization(s, name="Bad", slug="Bad Slug")
        with pytest.raises(ValidationFailed):
            await service.create_organization(s, name="   ")
        with pytest.raises(ValidationFailed):
            await service.create_organization(s, name="!!!")
    async with db.system_tx(reason="test") as s:
        assert await service.get_organization(s, "bad-slug") is None


async def test_failed_create_leaves_the_transaction_usable(db: Database, tenant: Tenant) -> None:
    async with db.system_tx(reason="test") as s:
        with pytest.raises(SlugTaken):
            await service.create_organization(s, name="Dup", slug=tenant.org.slug)
        # the savepoint rolled back alone: the same transaction still works
        assert await service.get_organization(s, tenant.org.slug) is not None
