"""The ``postyard`` CLI as a user runs it: a subprocess against the test database."""

from __future__ import annotations

import uuid

import httpx
import pytest

from postyard.migrations.runner import schema_head
from postyard.runtime import Runtime
from tests.conftest import APP_ROLE, SYSTEM_ROLE, TEST_SECRET, LiveServer
from tests.domains.test_domains_api import publish
from tests.support.dns_server import DnsServer
from tests.support.processes import arun_cli


@pytest.fixture
def cli_env(runtime: Runtime) -> dict[str, str]:
    assert runtime.settings.database_url is not None
    return {
        "POSTYARD_DATABASE_URL": runtime.settings.database_url.get_secret_value(),
        "POSTYARD_SECRET_KEY": TEST_SECRET,
        "POSTYARD_DATA_DIR": str(runtime.settings.data_dir),
        "POSTYARD_DB__APP_ROLE": APP_ROLE,
        "POSTYARD_DB__SYSTEM_ROLE": SYSTEM_ROLE,
    }


async def test_orgs_and_keys_lifecycle(cli_env: dict[str, str], live: LiveServer) -> None:
    org = await arun_cli(["orgs", "create", "CLI Test Org", "--json"], cli_env)
    assert org.code == 0, org.stderr
    created = org.json()
    assert set(created) == {"id", "slug"}
    slug = created["slug"]
    assert slug.startswith("cli-test-org")

    key = await arun_cli(["keys", "create", "--org", slug, "--name", "ci", "--json"], cli_env)
    assert key.code == 0, key.stderr
    token = key.json()["token"]
    assert set(key.json()) == {"id", "token"}
    auth = {"Authorization": f"Bearer {token}"}
    http = httpx.AsyncClient(base_url=live.base_url)
    listed = await http.get("/v1/api-keys", headers=auth)
    assert listed.status_code == 200
    assert [k["id"] for k in listed.json()["data"]] == [key.json()["id"]]

    keys = await arun_cli(["keys", "list", "--org", created["id"], "--json"], cli_env)
    assert [k["id"] for k in keys.json()] == [key.json()["id"]]
    assert token not in keys.stdout

    assert (await arun_cli(["orgs", "suspend", slug, "--json"], cli_env)).json()[
        "status"
    ] == "suspended"
    suspended = await http.get("/v1/api-keys", headers=auth)
    assert suspended.status_code == 403
    assert suspended.json()["name"] == "organization_suspended"
    assert (await arun_cli(["orgs", "activate", slug], cli_env)).code == 0
    assert (await http.get("/v1/api-keys", headers=auth)).status_code == 200

    orgs = (await arun_cli(["orgs", "list", "--json"], cli_env)).json()
    assert slug in {o["slug"] for o in orgs}

    revoked = await arun_cli(["keys", "revoke", key.json()["id"], "--org", slug, "--json"], cli_env)
    assert revoked.code == 0, revoked.stderr
    assert revoked.json() == {"object": "api_key", "id": key.json()["id"], "deleted": True}
    after = await http.get("/v1/api-keys", headers=auth)
    assert after.status_code == 401
    assert after.json()["name"] == "invalid_api_key"
    await http.aclose()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["keys", "create", "--org", "no-such-org", "--name", "x"], "not found"),
        (["keys", "revoke", "not-an-id", "--org", "no-such-org"], "not found"),
        (["orgs", "create", "!!!"], "slug"),
        (["orgs", "suspend", "no-such-org"], "not found"),
    ],
)
async def test_errors_are_one_line_on_stderr_with_exit_1(
    cli_env: dict[str, str], args: list[str], fragment: str
) -> None:
    result = await arun_cli(args, cli_env)
    assert result.code == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("postyard: error: ")
    assert fragment in result.stderr
    as_json = await arun_cli([*args, "--json"], cli_env)
    assert as_json.code == 1
    assert fragment in as_json.stderr
    assert as_json.stderr.startswith('{"error": {"code": ')


async def test_duplicate_slug_and_usage_errors(cli_env: dict[str, str]) -> None:
    first = await arun_cli(["orgs", "create", "Dup Co", "--slug", "dup-co-cli", "--json"], cli_env)
    assert first.code == 0
    again = await arun_cli(["orgs", "create", "Dup Co", "--slug", "dup-co-cli"], cli_env)
    assert again.code == 1
    assert "already exists" in again.stderr
    usage = await arun_cli(
        ["keys", "create", "--org", "x", "--name", "y", "--scope", "root"], cli_env
    )
    assert usage.code == 2
    assert "Traceback" not in usage.stderr


async def test_migrate_is_idempotent(cli_env: dict[str, str]) -> None:
    for _ in range(2):
        result = await arun_cli(["migrate", "--json"], cli_env)
        assert result.code == 0, result.stderr
        assert result.json() == {"revision": schema_head()}


async def test_commands_refuse_an_unreachable_database(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "POSTYARD_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    result = await arun_cli(["orgs", "list"], env)
    assert result.code == 1
    assert result.stderr.startswith("postyard: error: cannot reach PostgreSQL")
    assert "Traceback" not in result.stderr


async def test_domains_commands(cli_env: dict[str, str], dns_server: DnsServer) -> None:
    env = {**cli_env, "POSTYARD_DNS__NAMESERVERS": dns_server.nameserver}
    org = (await arun_cli(["orgs", "create", "Domain CLI", "--json"], env)).json()["slug"]
    name = f"cli{uuid.uuid4().hex[:8]}.test"
    added = await arun_cli(["domains", "add", name, "--org", org, "--json"], env)
    assert added.code == 0, added.stderr
    body = added.json()
    assert body["name"] == name
    assert body["status"] == "not_started"
    assert [r["record"] for r in body["records"]][:2] == ["DKIM", "DKIM"]
    listed = (await arun_cli(["domains", "list", "--org", org, "--json"], env)).json()
    assert [d["id"] for d in listed] == [body["id"]]
    publish(dns_server, body)
    verified = await arun_cli(["domains", "verify", body["id"], "--org", org, "--json"], env)
    assert verified.code == 0, verified.stderr
    assert verified.json()["status"] == "verified"
    again = await arun_cli(["domains", "add", name, "--org", org], env)
    assert again.code == 1
    assert "already" in again.stderr
    bad = await arun_cli(["domains", "add", "co.uk", "--org", org], env)
    assert bad.code == 1
    assert "public suffix" in bad.stderr
    removed = await arun_cli(["domains", "remove", body["id"], "--org", org, "--json"], env)
    assert removed.json() == {"object": "domain", "id": body["id"], "deleted": True}
    missing = await arun_cli(["domains", "verify", body["id"], "--org", org], env)
    assert missing.code == 1
    assert "not found" in missing.stderr


async def test_webhooks_commands(cli_env: dict[str, str]) -> None:
    org = (await arun_cli(["orgs", "create", "Webhook CLI", "--json"], cli_env)).json()["slug"]
    url = "https://hooks.example.com/cli"
    events = "email.delivered,email.bounced"
    created = await arun_cli(
        ["webhooks", "create", url, "--org", org, "--events", events, "--json"], cli_env
    )
    assert created.code == 0, created.stderr
    body = created.json()
    assert body["signing_secret"].startswith("whsec_")
    assert (body["endpoint"], body["events"]) == (url, ["email.delivered", "email.bounced"])
    listed = (await arun_cli(["webhooks", "list", "--org", org, "--json"], cli_env)).json()
    assert [w["id"] for w in listed] == [body["id"]]
    assert "signing_secret" not in listed[0]
    internal = await arun_cli(
        ["webhooks", "create", "https://10.0.0.1/", "--org", org, "--events", "email.sent"], cli_env
    )
    assert internal.code == 1
    assert "not allowed" in internal.stderr
    unknown = await arun_cli(
        ["webhooks", "create", url, "--org", org, "--events", "email.nope"], cli_env
    )
    assert unknown.code == 1
    assert "Unknown event" in unknown.stderr
    removed = await arun_cli(["webhooks", "delete", body["id"], "--org", org, "--json"], cli_env)
    assert removed.json() == {"object": "webhook", "id": body["id"], "deleted": True}
    missing = await arun_cli(["webhooks", "delete", body["id"], "--org", org], cli_env)
    assert missing.code == 1
    assert "not found" in missing.stderr


async def test_holds_commands(cli_env: dict[str, str]) -> None:
    org = (await arun_cli(["orgs", "create", "Hold CLI", "--json"], cli_env)).json()["slug"]
    added = await arun_cli(
        ["holds", "add", "--org", org, "--domain", "News.Example", "--reason", "audit", "--json"],
        cli_env,
    )
    assert added.code == 0, added.stderr
    hold = added.json()
    assert (hold["kind"], hold["value"], hold["origin"], hold["held"]) == (
        "domain", "news.example", "operator", 0,
    )  # fmt: skip
    site = await arun_cli(["holds", "add", "--destination", "yahoo", "--json"], cli_env)
    assert site.code == 0, site.stderr
    assert site.json()["tenant_id"] is None
    listed = (await arun_cli(["holds", "list", "--org", org, "--json"], cli_env)).json()
    assert [h["id"] for h in listed] == [hold["id"]]
    everything = (await arun_cli(["holds", "list", "--json"], cli_env)).json()
    assert {hold["id"], site.json()["id"]} <= {h["id"] for h in everything}
    for hold_id in (hold["id"], site.json()["id"]):
        released = await arun_cli(["holds", "release", hold_id, "--json"], cli_env)
        assert released.code == 0, released.stderr
        assert released.json()["released_at"] is not None
    bad = await arun_cli(["holds", "add", "--domain", "x.example"], cli_env)
    assert bad.code == 1
    assert "every tenant" in bad.stderr
    unknown = await arun_cli(["holds", "release", str(uuid.uuid4())], cli_env)
    assert unknown.code == 1
    assert "not found" in unknown.stderr.lower()


async def test_warmup_commands(cli_env: dict[str, str]) -> None:
    org = (await arun_cli(["orgs", "create", "Warm CLI", "--json"], cli_env)).json()["slug"]
    started = await arun_cli(
        ["warmup", "set", "mail.example", "--org", org, "--schedule", "10,20",
         "--start", "2020-01-01", "--json"],
        cli_env,
    )  # fmt: skip
    assert started.code == 0, started.stderr
    assert started.json()["schedule"] == [10, 20]
    assert started.json()["allowance_today"] is None, "the ramp ended long ago"
    today = await arun_cli(["warmup", "set", "mail.example", "--org", org, "--json"], cli_env)
    assert today.json()["allowance_today"] == 50, "the settings' ramp, day 1"
    listed = (await arun_cli(["warmup", "list", "--org", org, "--json"], cli_env)).json()
    assert [w["domain"] for w in listed] == ["mail.example"]
    bad = await arun_cli(
        ["warmup", "set", "mail.example", "--org", org, "--schedule", "0"], cli_env
    )
    assert bad.code == 1
    assert "positive" in bad.stderr
    stopped = await arun_cli(["warmup", "stop", "mail.example", "--org", org, "--json"], cli_env)
    assert stopped.json() == {"domain": "mail.example", "stopped": True}


async def test_ip_warmup_commands(cli_env: dict[str, str]) -> None:
    address = "192.0.2.77"
    started = await arun_cli(["warmup", "set-ip", address, "--schedule", "5,10", "--json"], cli_env)
    assert started.code == 0, started.stderr
    assert (started.json()["schedule"], started.json()["allowance_today"]) == ([5, 10], 5)
    default = await arun_cli(["warmup", "set-ip", address, "--json"], cli_env)
    assert default.json()["allowance_today"] == 200, "the settings' IP ramp, day 1"
    listed = (await arun_cli(["warmup", "list-ips", "--json"], cli_env)).json()
    assert address in [w["address"] for w in listed]
    bad = await arun_cli(["warmup", "set-ip", "mail.example"], cli_env)
    assert bad.code == 1
    assert "not an IP address" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    stopped = await arun_cli(["warmup", "stop-ip", address, "--json"], cli_env)
    assert stopped.json() == {"address": address, "stopped": True}
    again = await arun_cli(["warmup", "stop-ip", address, "--json"], cli_env)
    assert again.json() == {"address": address, "stopped": False}


async def test_destinations_list_shows_policies_with_settings_applied(
    cli_env: dict[str, str],
) -> None:
    env = {
        **cli_env,
        "POSTYARD_SHAPING__POLICIES": '{"yahoo": {"max_connections": 2,'
        ' "messages_per_connection": 10, "messages_per_minute": 60}}',
    }
    listed = await arun_cli(["destinations", "list", "--json"], env)
    assert listed.code == 0, listed.stderr
    sites = {d["site"]: d for d in listed.json()}
    assert {"google", "microsoft", "yahoo", "apple", "default"} <= set(sites)
    assert (sites["yahoo"]["max_connections"], sites["yahoo"]["current_rate"]) == (2, 60.0)


async def test_suppressions_commands(cli_env: dict[str, str]) -> None:
    org = (await arun_cli(["orgs", "create", "Suppress CLI", "--json"], cli_env)).json()["slug"]
    added = await arun_cli(
        ["suppressions", "add", "Bob@Example.test", "--org", org, "--json"], cli_env
    )
    assert added.code == 0, added.stderr
    assert (added.json()["email"], added.json()["reason"]) == ("Bob@example.test", "manual")
    timed = await arun_cli(
        [
            *("suppressions", "add", "carol@example.test", "--org", org),
            *("--reason", "unsubscribe", "--expires-at", "2099-01-01T00:00:00Z", "--json"),
        ],
        cli_env,
    )
    assert timed.code == 0, timed.stderr
    assert timed.json()["expires_at"] == "2099-01-01T00:00:00+00:00"
    listed = (await arun_cli(["suppressions", "list", "--org", org, "--json"], cli_env)).json()
    assert [e["email"] for e in listed] == ["carol@example.test", "Bob@example.test"]
    only = await arun_cli(
        ["suppressions", "list", "--org", org, "--reason", "unsubscribe", "--json"], cli_env
    )
    assert [e["email"] for e in only.json()] == ["carol@example.test"]

    removed = await arun_cli(
        ["suppressions", "remove", "bob@example.test", "--org", org, "--json"], cli_env
    )
    assert removed.json() == {
        "object": "suppression",
        "id": added.json()["id"],
        "email": "Bob@example.test",
        "deleted": True,
    }
    for args, fragment in [
        (["suppressions", "add", "nope", "--org", org], "not a valid email"),
        (["suppressions", "add", "d@example.test", "--org", org, "--reason", "x"], "reason"),
        (["suppressions", "add", "d@example.test", "--org", org, "--expires-at", "soon"], "ISO"),
        (["suppressions", "remove", "bob@example.test", "--org", org], "not found"),
    ]:
        failed = await arun_cli(args, cli_env)
        assert failed.code == 1
        assert failed.stderr.startswith("postyard: error: ")
        assert fragment in failed.stderr


async def test_pools_commands(cli_env: dict[str, str]) -> None:
    env = {
        **cli_env,
        "POSTYARD_IP_POOLS__ADDRESSES": '{"127.0.0.2": "tx.mta.test", "127.0.0.3": "b.mta.test"}',
        "POSTYARD_IP_POOLS__POOLS": '{"tx": ["127.0.0.2"], "bulk": ["127.0.0.3"]}',
        "POSTYARD_IP_POOLS__DEFAULT_POOL": "tx",
    }
    org = (await arun_cli(["orgs", "create", "Pool CLI", "--json"], env)).json()["slug"]
    assigned = await arun_cli(
        ["pools", "assign", "bulk", "--org", org, "--stream", "bulk", "--json"], env
    )
    assert assigned.code == 0, assigned.stderr
    listed = (await arun_cli(["pools", "list", "--org", org, "--json"], env)).json()
    assert listed["assignments"] == {"bulk": "bulk"}
    assert listed["pools"]["tx"] == [{"address": "127.0.0.2", "ehlo_name": "tx.mta.test"}]
    unknown = await arun_cli(["pools", "assign", "nope", "--org", org, "--stream", "bulk"], env)
    assert unknown.code == 1
    assert "unknown IP pool" in unknown.stderr
    removed = await arun_cli(["pools", "unassign", "--org", org, "--stream", "bulk", "--json"], env)
    assert removed.json() == {"stream": "bulk", "removed": True}


async def test_inbound_drops_lists_counts_by_reason(
    cli_env: dict[str, str], runtime: Runtime
) -> None:
    from datetime import UTC, datetime

    from postyard.core.db import Database
    from postyard.inbound.drops import DropReason, count_drop

    db = Database.connect(runtime.urls, pool_size=1, name="test-cli")
    try:
        before = await arun_cli(["inbound", "drops", "--json"], cli_env)
        assert before.code == 0, before.stderr
        start = {r["reason"]: r["count"] for r in before.json()["data"]}
        for _ in range(2):
            async with db.system_tx(reason="test") as session:
                await count_drop(session, DropReason.UNPARSABLE, now=datetime.now(UTC))
    finally:
        await db.dispose()
    after = await arun_cli(["inbound", "drops", "--json"], cli_env)
    counts = {r["reason"]: r["count"] for r in after.json()["data"]}
    assert counts["unparsable"] == start.get("unparsable", 0) + 2
    human = await arun_cli(["inbound", "drops"], cli_env)
    assert "unparsable" in human.stdout
