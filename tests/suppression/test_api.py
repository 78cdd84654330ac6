"""/v1/suppressions through the live API: create (upsert), list with filters and cursors,
read and delete by id or address, validation, and another tenant's entries invisible."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from postyard.core.db import Database
from postyard.suppression.models import Suppression
from postyard.tenancy.types import Scope
from tests.conftest import KeyFactory, Tenant
from tests.tenancy.test_api_keys import assert_error


def _address() -> str:
    return f"user-{uuid.uuid4().hex[:8]}@example.test"


async def _add(http: httpx.AsyncClient, tenant: Tenant, **body: object) -> dict[str, object]:
    response = await http.post("/v1/suppressions", json=body, headers=tenant.auth)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _count(db: Database, tenant: Tenant) -> int:
    async with db.tenant_tx(tenant.org.id) as session:
        return int(await session.scalar(select(func.count()).select_from(Suppression)) or 0)


async def test_create_read_and_delete(http: httpx.AsyncClient, tenant: Tenant) -> None:
    address = _address()
    created = await _add(http, tenant, email=address)
    assert created["object"] == "suppression"
    assert created["email"] == address
    assert created["reason"] == "manual"
    assert created["expires_at"] is None
    assert created["source_email_id"] is None

    by_id = await http.get(f"/v1/suppressions/{created['id']}", headers=tenant.auth)
    by_address = await http.get(f"/v1/suppressions/{address.upper()}", headers=tenant.auth)
    assert by_id.json() == created
    assert by_address.json() == created

    deleted = await http.delete(f"/v1/suppressions/{created['id']}", headers=tenant.auth)
    assert deleted.json() == {
        "object": "suppression",
        "id": created["id"],
        "email": address,
        "deleted": True,
    }
    gone = await http.get(f"/v1/suppressions/{created['id']}", headers=tenant.auth)
    assert_error(gone, 404, "not_found")


async def test_adding_a_listed_address_again_updates_its_entry(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    address = _address()
    first = await _add(http, tenant, email=address)
    expires = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    second = await _add(
        http, tenant, email=address.upper(), reason="unsubscribe", expires_at=expires.isoformat()
    )
    assert second["id"] == first["id"]
    assert second["reason"] == "unsubscribe"
    assert datetime.fromisoformat(str(second["expires_at"])) == expires
    assert second["created_at"] == first["created_at"]


async def test_delete_by_address(http: httpx.AsyncClient, db: Database, tenant: Tenant) -> None:
    address = _address()
    created = await _add(http, tenant, email=address)
    response = await http.delete(f"/v1/suppressions/{address.title()}", headers=tenant.auth)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == created["id"]
    assert await _count(db, tenant) == 0
    again = await http.delete(f"/v1/suppressions/{address}", headers=tenant.auth)
    assert_error(again, 404, "not_found")


async def test_an_internationalised_domain_is_kept_in_its_ascii_form(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await _add(http, tenant, email="anna@bücher.test")
    assert created["email"] == "anna@xn--bcher-kva.test"
    found = await http.get("/v1/suppressions/anna@bücher.test", headers=tenant.auth)
    assert found.json()["id"] == created["id"]


async def test_list_filters_by_reason_and_pages_with_cursors(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    ids = [str((await _add(http, tenant, email=_address()))["id"]) for _ in range(3)]
    complaint = await _add(http, tenant, email=_address(), reason="complaint")

    everything = (await http.get("/v1/suppressions", headers=tenant.auth)).json()
    assert everything["object"] == "list"
    assert [e["id"] for e in everything["data"]] == [complaint["id"], *reversed(ids)]

    only = await http.get("/v1/suppressions?reason=complaint", headers=tenant.auth)
    assert [e["id"] for e in only.json()["data"]] == [complaint["id"]]

    first = (await http.get("/v1/suppressions?limit=2", headers=tenant.auth)).json()
    assert first["has_more"] is True
    after = first["data"][-1]["id"]
    rest = (await http.get(f"/v1/suppressions?limit=2&after={after}", headers=tenant.auth)).json()
    assert [e["id"] for e in rest["data"]] == [ids[1], ids[0]]
    assert rest["has_more"] is False


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"email": "not an address"}, 422),
        ({"email": "two@example.test, three@example.test"}, 422),
        ({"email": ""}, 422),
        ({"email": "someone@localhost"}, 422),
        ({"email": "someone@example.test", "reason": "hard-bounce"}, 422),
        ({"email": "someone@example.test", "reason": "bored"}, 422),
        ({"email": "someone@example.test", "expires_at": "2001-01-01T00:00:00Z"}, 422),
        ({"email": "someone@example.test", "expires_at": "next tuesday"}, 422),
        ({"email": "someone@example.test", "extra": 1}, 422),
        ({"reason": "manual"}, 422),
    ],
)
async def test_bad_input_is_a_typed_error_and_writes_nothing(
    http: httpx.AsyncClient, db: Database, tenant: Tenant, body: dict[str, object], status: int
) -> None:
    response = await http.post("/v1/suppressions", json=body, headers=tenant.auth)
    assert_error(response, status, "validation_error")
    assert await _count(db, tenant) == 0


async def test_bad_query_values_are_validation_errors(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    bad_reason = await http.get("/v1/suppressions?reason=bored", headers=tenant.auth)
    assert_error(bad_reason, 422, "validation_error")
    bad_cursor = await http.get("/v1/suppressions?after=nope", headers=tenant.auth)
    assert_error(bad_cursor, 422, "validation_error")
    not_an_id = await http.get("/v1/suppressions/nope", headers=tenant.auth)
    assert_error(not_an_id, 404, "not_found")


async def test_another_tenant_sees_and_removes_nothing(
    http: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    address = _address()
    created = await _add(http, tenant, email=address)
    for path in (f"/v1/suppressions/{created['id']}", f"/v1/suppressions/{address}"):
        assert_error(await http.get(path, headers=other_tenant.auth), 404, "not_found")
        assert_error(await http.delete(path, headers=other_tenant.auth), 404, "not_found")
    listed = (await http.get("/v1/suppressions", headers=other_tenant.auth)).json()
    assert listed["data"] == []
    still = await http.get(f"/v1/suppressions/{created['id']}", headers=tenant.auth)
    assert still.status_code == 200


async def test_a_sending_key_cannot_manage_the_list(
    http: httpx.AsyncClient, tenant: Tenant, make_key: KeyFactory
) -> None:
    sending = await make_key(tenant.org.id, Scope.SENDING)
    headers = {"Authorization": f"Bearer {sending.token}"}
    response = await http.post("/v1/suppressions", json={"email": _address()}, headers=headers)
    assert_error(response, 401, "restricted_api_key")
