"""/v1/domains with a local DNS server: records, verification statuses, events, rules."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, select

from postyard.core.crypto import SecretDecryptionError, decrypt_secret, derive_kek
from postyard.core.db import Database
from postyard.core.http import AppServices
from postyard.delivery.mx import make_resolver
from postyard.domains import service as domains
from postyard.domains.models import DkimKey, Domain
from postyard.domains.verification import verify_domain, verify_due_domains
from postyard.events.models import Event
from tests.conftest import TEST_KEK, TEST_POLICY, AppFactory, Tenant, start_server, stop_server
from tests.support.dns_server import CNAME, MX, TXT, DnsServer
from tests.tenancy.test_api_keys import assert_error


@dataclass
class ManualClock:
    current: datetime = field(default_factory=lambda: datetime.now(UTC))

    def now(self) -> datetime:
        return self.current


@dataclass
class Api:
    http: httpx.AsyncClient
    auth: dict[str, str]
    clock: ManualClock
    services: AppServices
    tenant: Tenant


@pytest_asyncio.fixture
async def api(services: AppServices, app_factory: AppFactory, tenant: Tenant) -> AsyncIterator[Api]:
    clock = ManualClock()
    strict = AppServices(
        db=services.db,
        clock=clock,
        schema_head=services.schema_head,
        require_verified_domain=True,
    )
    server, task, base = await start_server(app_factory(strict))
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            yield Api(client, tenant.auth, clock, strict, tenant)
    finally:
        await stop_server(server, task)


def _name() -> str:
    return f"d{uuid.uuid4().hex[:12]}.test"


def publish(dns: DnsServer, body: dict[str, Any], *, skip: tuple[str, ...] = ()) -> None:
    """Publish every record the API listed (as a careful user would)."""
    domain = body["name"]
    for record in body["records"]:
        fqdn = f"{record['name']}.{domain}"
        if record["record"] in skip or record["type"] in skip:
            continue
        if record["type"] == "TXT":
            dns.add(fqdn, TXT(record["value"]))
        elif record["type"] == "MX":
            dns.add(fqdn, MX(record["priority"], record["value"]))
        else:
            dns.add(fqdn, CNAME(record["value"]))


async def create(api: Api, name: str, **extra: Any) -> dict[str, Any]:
    response = await api.http.post("/v1/domains", json={"name": name, **extra}, headers=api.auth)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_create_lists_every_record(api: Api) -> None:
    body = await create(api, _name(), tracking_subdomain="links")
    assert body["status"] == "not_started"
    kinds = [(r["record"], r["type"], r["name"]) for r in body["records"]]
    assert kinds[0][0:2] == ("DKIM", "TXT") and kinds[1][0:2] == ("DKIM", "TXT")
    assert "k=ed25519" in body["records"][0]["value"]
    assert "k=rsa" in body["records"][1]["value"]
    assert ("SPF", "TXT", "send") in kinds
    assert ("SPF", "MX", "send") in kinds
    assert ("DMARC", "TXT", "_dmarc") in kinds
    assert ("Tracking", "CNAME", "links") in kinds
    spf = next(r for r in body["records"] if r["type"] == "TXT" and r["record"] == "SPF")
    assert spf["value"] == "v=spf1 ip4:192.0.2.10 ~all"
    mx = next(r for r in body["records"] if r["type"] == "MX")
    assert (mx["value"], mx["priority"]) == ("mx.postyard.test", 10)
    assert {r["status"] for r in body["records"]} == {"not_started"}
    got = (await api.http.get(f"/v1/domains/{body['id']}", headers=api.auth)).json()
    assert got["records"] == body["records"]
    listed = (await api.http.get("/v1/domains", headers=api.auth)).json()
    assert body["id"] in [d["id"] for d in listed["data"]]


async def _rows(db: Database, tenant: Tenant) -> tuple[int, int]:
    async with db.tenant_tx(tenant.org.id) as s:
        domains_count = await s.scalar(select(func.count()).select_from(Domain))
        keys = await s.scalar(select(func.count()).select_from(DkimKey))
    return int(domains_count or 0), int(keys or 0)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("co.uk", "public suffix"), ("localhost", "not a"), ("a..b", "not a"),
     ("-bad.example", "not a"), ("has space.example", "not a"), ("x" * 300, "")],
)  # fmt: skip
async def test_bad_names_are_refused_and_write_nothing(
    api: Api, db: Database, tenant: Tenant, name: str, fragment: str
) -> None:
    before = await _rows(db, tenant)
    response = await api.http.post("/v1/domains", json={"name": name}, headers=api.auth)
    assert_error(response, 422, "validation_error")
    assert fragment in response.json()["message"]
    assert await _rows(db, tenant) == before


async def test_idn_duplicates_and_missing_ids(api: Api, db: Database, tenant: Tenant) -> None:
    body = await create(api, f"bücher-{uuid.uuid4().hex[:6]}.test")
    assert body["name"].startswith("xn--")
    before = await _rows(db, tenant)
    again = await api.http.post("/v1/domains", json={"name": body["name"]}, headers=api.auth)
    assert_error(again, 422, "validation_error")
    assert "already" in again.json()["message"]
    assert await _rows(db, tenant) == before
    for method, path in [
        ("GET", f"/v1/domains/{uuid.uuid4()}"),
        ("POST", f"/v1/domains/{uuid.uuid4()}/verify"),
        ("DELETE", "/v1/domains/nope"),
    ]:
        assert_error(await api.http.request(method, path, headers=api.auth), 404, "not_found")


async def _events(db: Database, tenant: Tenant, domain_id: str) -> list[str]:
    async with db.tenant_tx(tenant.org.id) as s:
        rows = await s.scalars(
            select(Event).where(Event.data["id"].astext == domain_id).order_by(Event.seq)
        )
        return [f"{e.type}:{e.data['status']}" for e in rows]


async def verify(api: Api, domain_id: str) -> str:
    response = await api.http.post(f"/v1/domains/{domain_id}/verify", headers=api.auth)
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


async def test_verification_statuses_and_events(
    api: Api, dns_server: DnsServer, db: Database, tenant: Tenant
) -> None:
    body = await create(api, _name())
    domain_id = body["id"]
    assert await verify(api, domain_id) == "pending"

    publish(dns_server, body, skip=("SPF",))
    assert await verify(api, domain_id) == "partially_verified"
    statuses = {
        (r["record"], r["type"]): r["status"]
        for r in (await api.http.get(f"/v1/domains/{domain_id}", headers=api.auth)).json()[
            "records"
        ]
    }
    assert statuses[("DKIM", "TXT")] == "verified"
    assert statuses[("SPF", "TXT")] == "pending"

    publish(dns_server, body, skip=("DKIM",))
    assert await verify(api, domain_id) == "verified"
    assert await _events(db, tenant, domain_id) == [
        "domain.created:not_started",
        "domain.updated:pending",
        "domain.updated:partially_verified",
        "domain.updated:verified",
    ]
    # Verifying again with nothing changed writes no event.
    assert await verify(api, domain_id) == "verified"
    assert len(await _events(db, tenant, domain_id)) == 4


async def test_wrong_records_fail_and_dns_trouble_is_temporary(
    api: Api, dns_server: DnsServer
) -> None:
    body = await create(api, _name())
    publish(dns_server, body)
    dkim = body["records"][1]
    dns_server.set(f"{dkim['name']}.{body['name']}", TXT("v=DKIM1; k=rsa; p=AAAAnotthekey"))
    assert await verify(api, body["id"]) == "failed"
    dns_server.fail(f"{dkim['name']}.{body['name']}")
    assert await verify(api, body["id"]) == "temporary_failure"


async def test_pending_turns_failed_after_72_hours_and_the_job_rechecks(
    api: Api, dns_server: DnsServer
) -> None:
    body = await create(api, _name())
    start = api.clock.now()
    assert await verify(api, body["id"]) == "pending"
    dns = make_resolver([dns_server.nameserver], timeout=2.0, lifetime=4.0, cache=False)
    later = start + timedelta(minutes=2)
    assert await verify_due_domains(api.services.db, dns, policy=TEST_POLICY, now=later) >= 1
    view = await verify_domain(
        api.services.db,
        dns,
        api.tenant.org.id,
        body["id"],
        policy=TEST_POLICY,
        now=start + timedelta(hours=73),
        restart=False,
    )
    assert view.status.value == "failed"
    publish(dns_server, body)
    assert await verify(api, body["id"]) == "verified", "a user's verify opens a new window"


async def test_sending_needs_a_verified_domain(api: Api, dns_server: DnsServer) -> None:
    name = _name()
    email = {"from": f"hi@{name}", "to": "x@rcpt.test", "subject": "s", "text": "t"}
    refused = await api.http.post("/v1/emails", json=email, headers=api.auth)
    assert_error(refused, 403, "validation_error")
    assert "not verified" in refused.json()["message"]
    body = await create(api, name)
    publish(dns_server, body)
    assert await verify(api, body["id"]) == "verified"
    accepted = await api.http.post("/v1/emails", json=email, headers=api.auth)
    assert accepted.status_code == 200, accepted.text
    batch = await api.http.post(
        "/v1/emails/batch",
        json=[email, {**email, "from": "hi@unverified.test"}],
        headers=api.auth,
    )
    assert_error(batch, 403, "validation_error")


async def test_private_keys_are_useless_without_the_kek(
    api: Api, db: Database, tenant: Tenant
) -> None:
    body = await create(api, _name())
    async with db.tenant_tx(tenant.org.id) as s:
        keys = list(
            await s.scalars(select(DkimKey).where(DkimKey.domain_id == uuid.UUID(body["id"])))
        )
    assert len(keys) == 2
    for key in keys:
        assert b"PRIVATE KEY" not in key.private_key
        pem = decrypt_secret(
            TEST_KEK, key.private_key, tenant_id=tenant.org.id, purpose=domains.dkim_purpose(key.id)
        )
        assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
        with pytest.raises(SecretDecryptionError):
            decrypt_secret(derive_kek(b"another secret"), key.private_key, tenant_id=tenant.org.id,
                           purpose=domains.dkim_purpose(key.id))  # fmt: skip
        with pytest.raises(SecretDecryptionError):
            decrypt_secret(
                TEST_KEK,
                key.private_key,
                tenant_id=uuid.uuid4(),
                purpose=domains.dkim_purpose(key.id),
            )


async def test_update_rotate_and_delete(api: Api, dns_server: DnsServer) -> None:
    body = await create(api, _name())
    patched = await api.http.patch(
        f"/v1/domains/{body['id']}",
        json={"open_tracking": True, "tls": "enforced"},
        headers=api.auth,
    )
    assert patched.json() == {"object": "domain", "id": body["id"], "status": None}
    got = (await api.http.get(f"/v1/domains/{body['id']}", headers=api.auth)).json()
    assert (got["open_tracking"], got["tls"]) == (True, "enforced")
    publish(dns_server, body)
    assert await verify(api, body["id"]) == "verified"

    rotated = (
        await api.http.post(f"/v1/domains/{body['id']}/rotate-dkim", headers=api.auth)
    ).json()
    dkim = [r for r in rotated["records"] if r["record"] == "DKIM"]
    assert len(dkim) == 4, "new selectors are published beside the current ones"
    assert await verify(api, body["id"]) == "verified", "a pending new key keeps it verified"
    publish(
        dns_server,
        {"name": body["name"], "records": [r for r in dkim if r["status"] != "verified"]},
    )
    assert await verify(api, body["id"]) == "verified"
    after = (await api.http.get(f"/v1/domains/{body['id']}", headers=api.auth)).json()
    assert len([r for r in after["records"] if r["record"] == "DKIM"]) == 2, "old keys retired"
    assert {r["status"] for r in after["records"] if r["record"] == "DKIM"} == {"verified"}

    deleted = await api.http.delete(f"/v1/domains/{body['id']}", headers=api.auth)
    assert deleted.json() == {"object": "domain", "id": body["id"], "deleted": True}
    assert_error(
        await api.http.get(f"/v1/domains/{body['id']}", headers=api.auth), 404, "not_found"
    )
