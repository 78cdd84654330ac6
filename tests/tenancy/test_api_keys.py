"""/v1/api-keys over real HTTP against a real PostgreSQL."""

from __future__ import annotations

import httpx

from postyard.tenancy.types import Scope
from tests.conftest import KeyFactory, OrgFactory, Tenant


def assert_error(response: httpx.Response, status: int, name: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["statusCode"] == status
    assert body["name"] == name
    assert isinstance(body["message"], str)
    assert body["message"]


async def test_create_list_delete_round_trip(http: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await http.post(
        "/v1/api-keys", json={"name": "deploy", "permission": "sending_access"}, headers=tenant.auth
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == {"id", "token"}
    assert body["token"].startswith("py_")

    listed = await http.get("/v1/api-keys", headers=tenant.auth)
    assert listed.status_code == 200
    page = listed.json()
    assert page["object"] == "list"
    assert page["has_more"] is False
    by_id = {item["id"]: item for item in page["data"]}
    assert by_id[body["id"]]["name"] == "deploy"
    assert by_id[body["id"]]["permission"] == "sending_access"
    assert "token" not in by_id[body["id"]]
    assert body["token"].startswith(by_id[body["id"]]["token_prefix"])
    # The key used for this request records its use.
    assert by_id[str(tenant.key.id)]["last_used_at"] is not None

    deleted = await http.delete(f"/v1/api-keys/{body['id']}", headers=tenant.auth)
    assert deleted.status_code == 200
    assert deleted.json() == {"object": "api_key", "id": body["id"], "deleted": True}
    again = await http.delete(f"/v1/api-keys/{body['id']}", headers=tenant.auth)
    assert_error(again, 404, "not_found")
    revoked = await http.get("/v1/api-keys", headers={"Authorization": f"Bearer {body['token']}"})
    assert_error(revoked, 401, "invalid_api_key")


async def test_revoking_the_calling_key_stops_it_at_once(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await http.delete(f"/v1/api-keys/{tenant.key.id}", headers=tenant.auth)
    assert response.status_code == 200
    assert_error(await http.get("/v1/api-keys", headers=tenant.auth), 401, "invalid_api_key")


async def test_pagination_with_cursors(
    http: httpx.AsyncClient, make_org: OrgFactory, make_key: KeyFactory
) -> None:
    org = await make_org()
    keys = [await make_key(org.id) for _ in range(5)]
    auth = {"Authorization": f"Bearer {keys[0].token}"}
    newest_first = [str(k.id) for k in reversed(keys)]

    first = (await http.get("/v1/api-keys?limit=2", headers=auth)).json()
    assert [k["id"] for k in first["data"]] == newest_first[:2]
    assert first["has_more"] is True
    second = (await http.get(f"/v1/api-keys?limit=2&after={newest_first[1]}", headers=auth)).json()
    assert [k["id"] for k in second["data"]] == newest_first[2:4]
    last = (await http.get(f"/v1/api-keys?limit=2&after={newest_first[3]}", headers=auth)).json()
    assert [k["id"] for k in last["data"]] == newest_first[4:]
    assert last["has_more"] is False
    back = (await http.get(f"/v1/api-keys?limit=2&before={newest_first[4]}", headers=auth)).json()
    assert [k["id"] for k in back["data"]] == newest_first[2:4]
    assert back["has_more"] is True

    assert_error(await http.get("/v1/api-keys?limit=0", headers=auth), 422, "validation_error")
    assert_error(await http.get("/v1/api-keys?limit=101", headers=auth), 422, "validation_error")
    assert_error(await http.get("/v1/api-keys?after=x", headers=auth), 422, "validation_error")
    both = await http.get(
        f"/v1/api-keys?after={newest_first[0]}&before={newest_first[1]}", headers=auth
    )
    assert_error(both, 422, "validation_error")


async def test_sending_key_cannot_manage_keys(
    http: httpx.AsyncClient, make_org: OrgFactory, make_key: KeyFactory
) -> None:
    org = await make_org()
    sending = await make_key(org.id, Scope.SENDING)
    auth = {"Authorization": f"Bearer {sending.token}"}
    assert_error(await http.get("/v1/api-keys", headers=auth), 401, "restricted_api_key")
    created = await http.post("/v1/api-keys", json={"name": "x"}, headers=auth)
    assert_error(created, 401, "restricted_api_key")
    deleted = await http.delete(f"/v1/api-keys/{sending.id}", headers=auth)
    assert_error(deleted, 401, "restricted_api_key")


async def test_missing_and_invalid_keys(http: httpx.AsyncClient, tenant: Tenant) -> None:
    assert_error(await http.get("/v1/api-keys"), 401, "missing_api_key")
    assert_error(
        await http.get("/v1/api-keys", headers={"Authorization": "Basic abc"}),
        401,
        "missing_api_key",
    )
    forged = tenant.key.token[:-1] + ("A" if tenant.key.token[-1] != "A" else "B")
    for token in ["nope", "py_short", forged]:
        response = await http.get("/v1/api-keys", headers={"Authorization": f"Bearer {token}"})
        assert_error(response, 401, "invalid_api_key")


async def test_domain_restriction_needs_an_existing_domain(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await http.post(
        "/v1/api-keys",
        json={"name": "x", "permission": "sending_access", "domain_id": "d-1"},
        headers=tenant.auth,
    )
    assert_error(response, 404, "not_found")
