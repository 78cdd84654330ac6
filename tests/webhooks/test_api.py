"""/v1/webhooks through real HTTP on the shared app, which allows no internal network (a
default install): endpoints, secrets shown once, rotation, validation, tenant isolation, and
the fan-out of events into deliveries in the transaction that writes them."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import text

from postyard.core.db import Database, TenantId
from postyard.events.service import record_events
from postyard.events.types import EventType, NewEvent
from tests.conftest import Tenant

HOOK = "https://hooks.example.com/postyard"
EMAIL = {
    "from": "Acme <hello@acme.test>",
    "to": ["ada@example.com", "bob@example.com"],
    "subject": "Hi",
    "text": "Hello",
}


async def create(
    http: httpx.AsyncClient, tenant: Tenant, url: str = HOOK, events: list[str] | None = None
) -> dict[str, str]:
    response = await http.post(
        "/v1/webhooks",
        json={"endpoint": url, "events": events or ["email.sent", "email.delivered"]},
        headers=tenant.auth,
    )
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


def refused(response: httpx.Response, status: int, name: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["name"] == name, body
    message: str = body["message"]
    return message


async def deliveries_of(db: Database, endpoint_id: str) -> list[str]:
    async with db.system_tx(reason="test") as s:
        rows = await s.execute(
            text(
                "SELECT e.type FROM webhook_deliveries d JOIN events e ON e.id = d.event_id"
                " WHERE d.endpoint_id = :id ORDER BY e.seq"
            ),
            {"id": uuid.UUID(endpoint_id)},
        )
        return [r[0] for r in rows]


async def test_create_shows_the_secret_once_and_reads_back(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await create(http, tenant)
    assert created["object"] == "webhook"
    assert created["signing_secret"].startswith("whsec_")
    got = (await http.get(f"/v1/webhooks/{created['id']}", headers=tenant.auth)).json()
    assert got["endpoint"] == HOOK
    assert got["events"] == ["email.sent", "email.delivered"]
    assert got["status"] == "enabled"
    assert "signing_secret" not in got
    listed = (await http.get("/v1/webhooks", headers=tenant.auth)).json()
    assert listed["object"] == "list"
    assert [w["id"] for w in listed["data"]] == [created["id"]]
    assert "signing_secret" not in listed["data"][0]


async def test_secret_is_stored_encrypted(
    http: httpx.AsyncClient, tenant: Tenant, db: Database
) -> None:
    created = await create(http, tenant)
    async with db.system_tx(reason="test") as s:
        blob = await s.scalar(
            text("SELECT secret FROM webhook_endpoints WHERE id = :id"),
            {"id": uuid.UUID(created["id"])},
        )
    secret = created["signing_secret"].encode()
    assert blob is not None and secret not in blob and secret[6:] not in blob


async def test_list_is_paginated_newest_first(http: httpx.AsyncClient, tenant: Tenant) -> None:
    ids = [(await create(http, tenant, f"{HOOK}/{n}"))["id"] for n in range(3)]
    first = (await http.get("/v1/webhooks?limit=2", headers=tenant.auth)).json()
    assert [w["id"] for w in first["data"]] == ids[::-1][:2]
    assert first["has_more"] is True
    rest = (await http.get(f"/v1/webhooks?limit=2&after={ids[1]}", headers=tenant.auth)).json()
    assert [w["id"] for w in rest["data"]] == [ids[0]]
    assert rest["has_more"] is False


async def test_patch_changes_events_status_and_url(http: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await create(http, tenant)
    url = f"/v1/webhooks/{created['id']}"
    patched = await http.patch(
        url,
        json={"events": ["email.bounced"], "status": "disabled", "endpoint": f"{HOOK}/v2"},
        headers=tenant.auth,
    )
    assert patched.json() == {"object": "webhook", "id": created["id"]}
    got = (await http.get(url, headers=tenant.auth)).json()
    assert (got["events"], got["status"], got["endpoint"]) == (
        ["email.bounced"],
        "disabled",
        f"{HOOK}/v2",
    )
    assert got["disabled_reason"] == "disabled through the API"
    await http.patch(url, json={"status": "enabled"}, headers=tenant.auth)
    got = (await http.get(url, headers=tenant.auth)).json()
    assert (got["status"], got["disabled_reason"]) == ("enabled", None)


async def test_delete(http: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await create(http, tenant)
    url = f"/v1/webhooks/{created['id']}"
    deleted = (await http.delete(url, headers=tenant.auth)).json()
    assert deleted == {"object": "webhook", "id": created["id"], "deleted": True}
    refused(await http.get(url, headers=tenant.auth), 404, "not_found")


async def test_rotation_returns_a_new_secret_and_an_overlap(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await create(http, tenant)
    rotated = (
        await http.post(f"/v1/webhooks/{created['id']}/rotate-secret", headers=tenant.auth)
    ).json()
    assert rotated["signing_secret"].startswith("whsec_")
    assert rotated["signing_secret"] != created["signing_secret"]
    assert rotated["previous_secret_expires_at"] is not None


@pytest.mark.parametrize(
    "events",
    [[], ["email.sent", "email.nope"], ["EMAIL.SENT"], ["*"], ["email.sent "]],
)
async def test_unknown_events_are_422_and_write_nothing(
    http: httpx.AsyncClient, tenant: Tenant, events: list[str]
) -> None:
    response = await http.post(
        "/v1/webhooks", json={"endpoint": HOOK, "events": events}, headers=tenant.auth
    )
    refused(response, 422, "invalid_webhook_event")
    assert (await http.get("/v1/webhooks", headers=tenant.auth)).json()["data"] == []


# Every spelling of an internal destination that the URL alone gives away.
SSRF_URLS = [
    "http://hooks.example.com/",  # plain http outside the allowed networks
    "https://127.0.0.1/",
    "https://2130706433/",  # decimal 127.0.0.1
    "https://0177.0.0.1/",  # octal
    "https://0x7f.0x0.0x0.0x1/",  # hex
    "https://0x7f000001/",
    "https://127.1/",
    "https://[::1]/",
    "https://[::ffff:127.0.0.1]/",  # IPv4-mapped IPv6
    "https://[::ffff:a00:1]/",
    "https://localhost/",
    "https://LOCALHOST./",
    "https://anything.localhost/",
    "https://ip6-localhost/",
    "https://10.0.0.1/",
    "https://169.254.169.254/latest/meta-data/",
    "https://metadata.google.internal/",
    "https://[fd00:ec2::254]/",
    "https://100.100.100.200/",
    "https://0.0.0.0/",
    "https://user:pass@hooks.example.com/",
    "ftp://hooks.example.com/",
    "https:///nohost",
    "not a url",
]


@pytest.mark.parametrize("url", SSRF_URLS)
async def test_internal_or_bad_urls_are_422(
    http: httpx.AsyncClient, tenant: Tenant, url: str
) -> None:
    response = await http.post(
        "/v1/webhooks", json={"endpoint": url, "events": ["email.sent"]}, headers=tenant.auth
    )
    assert "not allowed" in refused(response, 422, "invalid_webhook_url")
    created = await create(http, tenant)
    patch = await http.patch(
        f"/v1/webhooks/{created['id']}", json={"endpoint": url}, headers=tenant.auth
    )
    refused(patch, 422, "invalid_webhook_url")
    got = (await http.get(f"/v1/webhooks/{created['id']}", headers=tenant.auth)).json()
    assert got["endpoint"] == HOOK


async def test_replay_since_needs_a_timezone(http: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await create(http, tenant)
    response = await http.post(
        f"/v1/webhooks/{created['id']}/replay",
        json={"since": "2026-01-01T00:00:00"},
        headers=tenant.auth,
    )
    refused(response, 422, "validation_error")
    ok = await http.post(
        f"/v1/webhooks/{created['id']}/replay",
        json={"since": "2026-01-01T00:00:00Z"},
        headers=tenant.auth,
    )
    assert ok.json() == {"object": "webhook_replay", "webhook_id": created["id"], "replayed": 0}


async def test_another_tenant_cannot_see_change_or_replay(
    http: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    created = await create(http, tenant)
    base = f"/v1/webhooks/{created['id']}"
    them = other_tenant.auth
    refused(await http.get(base, headers=them), 404, "not_found")
    refused(await http.patch(base, json={"status": "disabled"}, headers=them), 404, "not_found")
    refused(await http.post(f"{base}/rotate-secret", headers=them), 404, "not_found")
    refused(await http.get(f"{base}/deliveries", headers=them), 404, "not_found")
    since = {"since": "2026-01-01T00:00:00Z"}
    refused(await http.post(f"{base}/replay", json=since, headers=them), 404, "not_found")
    replay_one = f"{base}/deliveries/{uuid.uuid4()}/replay"
    refused(await http.post(replay_one, headers=them), 404, "not_found")
    refused(await http.delete(base, headers=them), 404, "not_found")
    assert (await http.get("/v1/webhooks", headers=them)).json()["data"] == []
    assert (await http.get(base, headers=tenant.auth)).json()["status"] == "enabled"


async def test_an_accepted_email_fans_out_in_its_transaction(
    http: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, db: Database
) -> None:
    wanted = await create(http, tenant, events=["email.sent"])
    other_events = await create(http, tenant, f"{HOOK}/b", events=["email.bounced"])
    disabled = await create(http, tenant, f"{HOOK}/c", events=["email.sent"])
    await http.patch(
        f"/v1/webhooks/{disabled['id']}", json={"status": "disabled"}, headers=tenant.auth
    )
    elsewhere = await create(http, other_tenant, events=["email.sent"])
    sent = await http.post("/v1/emails", json=EMAIL, headers=tenant.auth)
    assert sent.status_code == 200, sent.text
    # The response went out after the commit, so the delivery rows are there already.
    assert await deliveries_of(db, wanted["id"]) == ["email.sent"]
    assert await deliveries_of(db, other_events["id"]) == []
    assert await deliveries_of(db, disabled["id"]) == []
    assert await deliveries_of(db, elsewhere["id"]) == []


async def test_fan_out_works_in_tenant_and_system_transactions(
    http: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, db: Database
) -> None:
    mine = await create(http, tenant, events=["domain.created"])
    theirs = await create(http, other_tenant, events=["domain.created"])
    ours, others = TenantId(tenant.org.id), TenantId(other_tenant.org.id)
    async with db.tenant_tx(ours) as s:
        await record_events(s, [NewEvent(ours, EventType.DOMAIN_CREATED) for _ in range(3)])
    async with db.system_tx(reason="test: a worker writes events of two tenants") as s:
        await record_events(
            s,
            [NewEvent(ours, EventType.DOMAIN_CREATED), NewEvent(others, EventType.DOMAIN_CREATED)],
        )
    assert len(await deliveries_of(db, mine["id"])) == 4
    assert len(await deliveries_of(db, theirs["id"])) == 1


async def test_a_rolled_back_event_leaves_no_delivery(
    http: httpx.AsyncClient, tenant: Tenant, db: Database
) -> None:
    mine = await create(http, tenant, events=["domain.created"])
    ours = TenantId(tenant.org.id)

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with db.tenant_tx(ours) as s:
            await record_events(s, [NewEvent(ours, EventType.DOMAIN_CREATED)])
            raise Abort
    assert await deliveries_of(db, mine["id"]) == []


async def test_patch_body_id_must_match_the_path(http: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await create(http, tenant)
    url = f"/v1/webhooks/{created['id']}"
    other = {"webhook_id": str(uuid.uuid4()), "status": "disabled"}
    refused(await http.patch(url, json=other, headers=tenant.auth), 422, "validation_error")
    assert (await http.get(url, headers=tenant.auth)).json()["status"] == "enabled"
    same = {"webhook_id": created["id"], "status": "disabled"}
    assert (await http.patch(url, json=same, headers=tenant.auth)).status_code == 200
