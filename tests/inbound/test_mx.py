"""The inbound MX listener over real sockets: DSNs for messages sent through the API, forged
tokens, unknown addresses, malformed reports and the listener's limits."""

from __future__ import annotations

import asyncio
import smtplib
from pathlib import Path

import asyncpg
import httpx
import pytest

from postyard.core.db import Database
from postyard.delivery import verp
from postyard.mxd import MxRole
from postyard.runtime import Runtime
from postyard.settings import Settings
from tests.conftest import APP_ROLE, Tenant
from tests.inbound import (
    GUARD_SECONDS,
    deliver,
    delivery_row,
    drop_counts,
    dsn,
    event_types,
    running_mx,
    send,
    suppression_reason,
    talk,
)


async def test_dsn_for_a_sent_message_bounces_suppresses_and_records_the_event(
    mx: MxRole, db: Database, http: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    [sent] = await send(db, http, tenant, runtime)
    reply = await talk(mx, [sent.return_path], dsn(sent.return_path, sent.recipient))
    assert reply is not None
    assert reply[0] == 250
    row = await delivery_row(db, sent.delivery_id)
    assert (row.status, row.bounce_type) == ("bounced", "permanent")
    assert row.last_reply is not None
    assert "User unknown" in row.last_reply
    assert await suppression_reason(db, row) == "hard_bounce"
    events = await event_types(db, sent.email_id)
    [bounced] = [data for kind, data in events if kind == "email.bounced"]
    assert bounced["bounce"] == {
        "type": "Permanent",
        "subType": "NoEmail",
        "message": "550 5.1.1 <x>: Recipient address rejected: User unknown",
    }
    assert (bounced["status"], bounced["reporting_mta"]) == ("5.1.1", "mx.remote.example")
    got = await http.get(f"/v1/emails/{sent.email_id}", headers=tenant.auth)
    assert got.json()["last_event"] == "bounced"
    # The same report again (a remote MTA retrying): accepted, nothing changes.
    again = await talk(mx, [sent.return_path], dsn(sent.return_path, sent.recipient))
    assert again is not None
    assert again[0] == 250
    repeated = [kind for kind, _ in await event_types(db, sent.email_id)]
    assert repeated.count("email.bounced") == 1


async def test_transient_dsn_only_writes_delivery_delayed(
    mx: MxRole, db: Database, http: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    [sent] = await send(db, http, tenant, runtime)
    report = dsn(
        sent.return_path, sent.recipient, action="delayed", status="4.2.2", diagnostic="452 full"
    )
    reply = await talk(mx, [sent.return_path], report)
    assert reply is not None
    assert reply[0] == 250
    row = await delivery_row(db, sent.delivery_id)
    assert row.status == "delivered"
    assert await suppression_reason(db, row) is None
    kinds = [kind for kind, _ in await event_types(db, sent.email_id)]
    assert kinds == ["email.sent", "email.delivery_delayed"]
    # A delay reported after the message left is news, not a state: last_event stays.
    got = await http.get(f"/v1/emails/{sent.email_id}", headers=tenant.auth)
    assert got.json()["last_event"] == "sent"


async def test_policy_block_bounces_without_suppressing(
    mx: MxRole, db: Database, http: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    [sent] = await send(db, http, tenant, runtime)
    report = dsn(sent.return_path, sent.recipient, status="5.7.1", diagnostic="554 5.7.1 spam")
    reply = await talk(mx, [sent.return_path], report)
    assert reply is not None
    assert reply[0] == 250
    row = await delivery_row(db, sent.delivery_id)
    assert (row.status, row.bounce_type) == ("bounced", "block")
    assert await suppression_reason(db, row) is None


async def test_forged_token_is_dropped_and_counted_and_changes_nothing(
    mx: MxRole, db: Database, http: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    [sent] = await send(db, http, tenant, runtime)
    local, _, domain = sent.return_path.partition("@")
    token, _, mac = local.partition("-")
    forged = f"{token}-{'a' * len(mac)}@{domain}"
    other_key = verp.return_path(sent.delivery_id, sent.domain, b"not-the-key" * 3)
    before = await drop_counts(db)
    for address in (forged, other_key):
        reply = await talk(mx, [address], dsn(address, sent.recipient))
        assert reply is not None
        assert reply[0] == 250
    after = await drop_counts(db)
    assert after.get("forged_token", 0) == before.get("forged_token", 0) + 2
    row = await delivery_row(db, sent.delivery_id)
    assert row.status == "delivered"
    assert await suppression_reason(db, row) is None
    assert [kind for kind, _ in await event_types(db, sent.email_id)] == ["email.sent"]


async def test_unknown_addresses_are_refused_at_rcpt(
    mx: MxRole, db: Database, http: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    [sent] = await send(db, http, tenant, runtime)
    exchange = await asyncio.to_thread(
        deliver,
        mx.port,
        [f"postmaster@{sent.domain}", f"b+x.y@{sent.domain}", "b+abc@elsewhere.example"],
        b"Subject: hi\r\n\r\nhello\r\n",
    )
    assert exchange.rcpt[f"postmaster@{sent.domain}"] == (550, b"5.1.1 No such recipient here")
    assert exchange.rcpt[f"b+x.y@{sent.domain}"][0] == 550
    assert exchange.rcpt["b+abc@elsewhere.example"] == (550, b"5.7.1 Relaying denied")
    assert exchange.data is None


async def test_no_auth_and_limits_are_advertised(mx: MxRole) -> None:
    def ehlo() -> tuple[str, tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", mx.port, timeout=GUARD_SECONDS) as client:
            code, features = client.ehlo("remote.example")
            assert code == 250
            return features.decode(), client.docmd("AUTH", "PLAIN AGFiYwB4eXo=")

    features, auth = await asyncio.to_thread(ehlo)
    assert "AUTH" not in features
    assert "STARTTLS" in features
    assert "SIZE 26214400" in features
    assert auth[0] == 502


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"Subject: Out of office\r\n\r\nI am away until Monday.\r\n", "not_a_report"),
        (
            b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n"
            b"--x\r\nContent-Type: message/delivery-status\r\n\r\nGarbage here\r\n--x",
            "not_a_report",
        ),
        (b"\x00\xff\xfe binary \x80\x81\r\n", "not_a_report"),
    ],
)
async def test_malformed_reports_are_accepted_and_dropped(
    mx: MxRole,
    db: Database,
    http: httpx.AsyncClient,
    tenant: Tenant,
    runtime: Runtime,
    data: bytes,
    reason: str,
) -> None:
    [sent] = await send(db, http, tenant, runtime)
    before = await drop_counts(db)
    reply = await talk(mx, [sent.return_path], data)
    assert reply is not None
    assert reply[0] == 250
    assert (await drop_counts(db))[reason] == before.get(reason, 0) + 1
    row = await delivery_row(db, sent.delivery_id)
    assert row.status == "delivered"
    assert await suppression_reason(db, row) is None


async def test_report_for_a_message_never_sent_is_dropped(
    mx: MxRole, db: Database, http: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    [sent] = await send(db, http, tenant, runtime, status="queued")
    before = await drop_counts(db)
    reply = await talk(mx, [sent.return_path], dsn(sent.return_path, sent.recipient))
    assert reply is not None
    assert reply[0] == 250
    assert (await drop_counts(db))["not_sent"] == before.get("not_sent", 0) + 1
    row = await delivery_row(db, sent.delivery_id)
    assert row.status == "queued"
    assert await suppression_reason(db, row) is None


async def test_bare_line_endings_and_oversized_reports_are_refused(
    settings: Settings,
    db: Database,
    runtime: Runtime,
    tmp_path: Path,
    http: httpx.AsyncClient,
    tenant: Tenant,
) -> None:
    [sent] = await send(db, http, tenant, runtime)

    def raw_session(port: int, body: bytes) -> bytes:
        import socket

        with socket.create_connection(("127.0.0.1", port), timeout=GUARD_SECONDS) as conn:
            reader = conn.makefile("rb")
            reader.readline()
            conn.sendall(b"EHLO remote.example\r\n")
            while not reader.readline().startswith(b"250 "):
                pass
            conn.sendall(f"MAIL FROM:<>\r\nRCPT TO:<{sent.return_path}>\r\nDATA\r\n".encode())
            replies = [reader.readline() for _ in range(3)]
            assert replies[-1].startswith(b"354"), replies
            conn.sendall(body)
            return reader.readline()

    async with running_mx(
        settings, db, data_dir=tmp_path, secret=runtime.secret, max_message_bytes=2048
    ) as role:
        smuggled = b"Subject: x\r\n\r\nline\n.\nMAIL FROM:<a@b>\r\n.\r\n"
        reply = await asyncio.to_thread(raw_session, role.port, smuggled)
        assert reply.startswith(b"554 5.5.2"), reply
        big = b"Subject: x\r\n\r\n" + b"y" * 70 + (b"\r\n" + b"y" * 70) * 40 + b"\r\n.\r\n"
        reply = await asyncio.to_thread(raw_session, role.port, big)
        assert reply.startswith(b"552 5.3.4"), reply
    row = await delivery_row(db, sent.delivery_id)
    assert row.status == "delivered"


async def test_drop_counts_belong_to_the_system_role_only(owner_conn: asyncpg.Connection) -> None:
    await owner_conn.execute(f"SET LOCAL ROLE {APP_ROLE}")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await owner_conn.fetch("SELECT * FROM inbound_drops")
