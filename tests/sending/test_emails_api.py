"""/v1/emails over real HTTP against a real PostgreSQL (no worker running here)."""

from __future__ import annotations

import base64
import email
import email.policy
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from postyard.core.db import Database
from postyard.sending.models import Delivery, Message, MessageContent
from postyard.tenancy.types import Scope
from tests.conftest import KeyFactory, Tenant
from tests.tenancy.test_api_keys import assert_error

BASIC: dict[str, Any] = {
    "from": "Acme <hello@acme.test>",
    "to": ["ann@one.test", "bob@two.test"],
    "subject": "Hi",
    "text": "Hello there",
}


async def _counts(db: Database, tenant: Tenant) -> tuple[int, int]:
    async with db.tenant_tx(tenant.org.id) as s:
        messages = await s.scalar(select(func.count()).select_from(Message))
        deliveries = await s.scalar(select(func.count()).select_from(Delivery))
    return int(messages or 0), int(deliveries or 0)


async def _raw(db: Database, tenant: Tenant, email_id: str) -> bytes:
    async with db.tenant_tx(tenant.org.id) as s:
        raw = await s.scalar(
            select(MessageContent.raw).where(MessageContent.message_id == uuid.UUID(email_id))
        )
    assert raw is not None
    return raw


async def test_send_then_get(http: httpx.AsyncClient, db: Database, tenant: Tenant) -> None:
    body = {**BASIC, "cc": "carl@one.test", "bcc": ["dee@three.test"], "reply_to": "r@acme.test",
            "tags": [{"name": "category", "value": "welcome"}]}  # fmt: skip
    sent = await http.post("/v1/emails", json=body, headers=tenant.auth)
    assert sent.status_code == 200, sent.text
    email_id = sent.json()["id"]
    assert set(sent.json()) == {"id"}

    got = (await http.get(f"/v1/emails/{email_id}", headers=tenant.auth)).json()
    assert got["object"] == "email"
    assert got["id"] == email_id
    assert got["from"] == "Acme <hello@acme.test>"
    assert got["to"] == ["ann@one.test", "bob@two.test"]
    assert got["cc"] == ["carl@one.test"]
    assert got["bcc"] == ["dee@three.test"]
    assert got["reply_to"] == ["r@acme.test"]
    assert got["subject"] == "Hi"
    assert got["text"] == "Hello there"
    assert got["last_event"] == "sent"
    assert got["scheduled_at"] is None
    assert got["tags"] == [{"name": "category", "value": "welcome"}]
    assert got["message_id"] == f"<{email_id}@acme.test>"

    raw = await _raw(db, tenant, email_id)
    assert b"dee@three.test" not in raw
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Message-ID"] == f"<{email_id}@acme.test>"
    assert parsed["Bcc"] is None

    timeline = (await http.get(f"/v1/emails/{email_id}/events", headers=tenant.auth)).json()
    assert [r["email"] for r in timeline["recipients"]] == [
        "ann@one.test", "bob@two.test", "carl@one.test", "dee@three.test"
    ]  # fmt: skip
    assert {r["status"] for r in timeline["recipients"]} == {"queued"}
    assert [e["type"] for e in timeline["data"]] == ["email.sent"]


async def test_html_only_gets_a_generated_text_part(
    http: httpx.AsyncClient, db: Database, tenant: Tenant
) -> None:
    body = {**BASIC, "html": "<p>Hello <b>world</b></p>"}
    del body["text"]
    sent = await http.post("/v1/emails", json=body, headers=tenant.auth)
    assert sent.status_code == 200, sent.text
    parsed = email.message_from_bytes(
        await _raw(db, tenant, sent.json()["id"]), policy=email.policy.default
    )
    assert parsed.get_content_type() == "multipart/alternative"
    plain = parsed.get_body(preferencelist=("plain",))
    assert plain is not None
    assert "Hello world" in plain.get_content()


async def test_attachments_and_inline_images(
    http: httpx.AsyncClient, db: Database, tenant: Tenant
) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    body = {
        **BASIC,
        "html": '<img src="cid:logo">',
        "attachments": [
            {"filename": "report.pdf", "content": base64.b64encode(b"%PDF-1.4 x").decode()},
            {"filename": "logo.png", "content": list(png), "content_id": "logo"},
        ],
    }
    sent = await http.post("/v1/emails", json=body, headers=tenant.auth)
    assert sent.status_code == 200, sent.text
    parsed = email.message_from_bytes(
        await _raw(db, tenant, sent.json()["id"]), policy=email.policy.default
    )
    parts = {p.get_filename(): p for p in parsed.walk() if p.get_filename()}
    assert parts["report.pdf"].get_content() == b"%PDF-1.4 x"
    assert parts["logo.png"].get_content() == png
    assert parts["logo.png"]["Content-ID"] == "<logo>"


INVALID: list[tuple[str, dict[str, Any], int, str, str]] = [
    ("no from", {k: v for k, v in BASIC.items() if k != "from"}, 422, "validation_error", "`from`"),
    ("bad from", {**BASIC, "from": "not an address"}, 422, "invalid_from_address", "from"),
    ("bad to", {**BASIC, "to": ["ok@x.test", "nope"]}, 422, "validation_error", "`to`"),
    ("empty to", {**BASIC, "to": []}, 422, "missing_required_field", "`to`"),
    (
        "crlf subject",
        {**BASIC, "subject": "a\r\nBcc: x@evil.test"},
        422,
        "validation_error",
        "ubject",
    ),
    ("crlf name", {**BASIC, "from": "A\r\nB <a@x.test>"}, 422, "invalid_from_address", "from"),
    (
        "crlf header",
        {**BASIC, "headers": {"X-A": "1\r\nBcc: x@evil.test"}},
        422,
        "validation_error",
        "X-A",
    ),
    (
        "header override",
        {**BASIC, "headers": {"From": "x@evil.test"}},
        422,
        "validation_error",
        "From",
    ),
    (
        "no body",
        {k: v for k, v in BASIC.items() if k != "text"},
        422,
        "missing_required_field",
        "html",
    ),
    (
        "too many",
        {**BASIC, "to": [f"u{i}@x.test" for i in range(51)]},
        422,
        "validation_error",
        "50",
    ),
    (
        "path attachment",
        {**BASIC, "attachments": [{"filename": "a", "path": "https://x.test/a"}]},
        422,
        "invalid_attachment",
        "path",
    ),
    (
        "bad base64",
        {**BASIC, "attachments": [{"filename": "a", "content": "!!!"}]},
        422,
        "invalid_attachment",
        "base64",
    ),
    (
        "no filename",
        {**BASIC, "attachments": [{"content": "YQ=="}]},
        422,
        "invalid_attachment",
        "filename",
    ),
    ("past", {**BASIC, "scheduled_at": "2020-01-01T00:00:00Z"}, 422, "validation_error", "past"),
    ("far", {**BASIC, "scheduled_at": "in 31 days"}, 422, "validation_error", "30 days"),
    (
        "gibberish schedule",
        {**BASIC, "scheduled_at": "whenever"},
        422,
        "validation_error",
        "scheduled_at",
    ),
    (
        "bad tag",
        {**BASIC, "tags": [{"name": "a b", "value": "x"}]},
        422,
        "validation_error",
        "tags[0].name",
    ),
    ("unknown field", {**BASIC, "surprise": 1}, 422, "validation_error", "surprise"),
]


@pytest.mark.parametrize(
    ("label", "body", "status", "name", "fragment"), INVALID, ids=[i[0] for i in INVALID]
)
async def test_invalid_emails_are_refused_and_write_nothing(
    http: httpx.AsyncClient,
    db: Database,
    tenant: Tenant,
    label: str,
    body: dict[str, Any],
    status: int,
    name: str,
    fragment: str,
) -> None:
    before = await _counts(db, tenant)
    response = await http.post("/v1/emails", json=body, headers=tenant.auth)
    assert_error(response, status, name)
    assert fragment in response.json()["message"], response.json()
    assert await _counts(db, tenant) == before


async def test_oversize_content_is_refused(http: httpx.AsyncClient, tenant: Tenant) -> None:
    # The test server's body limit is 64 KiB: the HTTP layer refuses before reading.
    big = {**BASIC, "attachments": [{"filename": "a", "content": "QUFB" * 30000}]}
    assert_error(
        await http.post("/v1/emails", json=big, headers=tenant.auth), 413, "payload_too_large"
    )


async def test_schedule_reschedule_cancel(http: httpx.AsyncClient, tenant: Tenant) -> None:
    sent = await http.post(
        "/v1/emails", json={**BASIC, "scheduled_at": "in 2 hours"}, headers=tenant.auth
    )
    email_id = sent.json()["id"]
    got = (await http.get(f"/v1/emails/{email_id}", headers=tenant.auth)).json()
    assert got["last_event"] == "scheduled"
    assert got["scheduled_at"] is not None

    moved = await http.patch(
        f"/v1/emails/{email_id}", json={"scheduled_at": "2099-01-01T00:00:00Z"}, headers=tenant.auth
    )
    assert_error(moved, 422, "validation_error")
    moved = await http.patch(
        f"/v1/emails/{email_id}", json={"scheduled_at": "in 3 hours"}, headers=tenant.auth
    )
    assert moved.status_code == 200
    assert moved.json() == {"object": "email", "id": email_id}

    canceled = await http.post(f"/v1/emails/{email_id}/cancel", headers=tenant.auth)
    assert canceled.json() == {"object": "email", "id": email_id}
    got = (await http.get(f"/v1/emails/{email_id}", headers=tenant.auth)).json()
    assert got["last_event"] == "canceled"
    again = await http.post(f"/v1/emails/{email_id}/cancel", headers=tenant.auth)
    assert_error(again, 422, "validation_error")
    assert "cannot be canceled" in again.json()["message"]
    late = await http.patch(
        f"/v1/emails/{email_id}", json={"scheduled_at": "in 3 hours"}, headers=tenant.auth
    )
    assert_error(late, 422, "validation_error")
    timeline = (await http.get(f"/v1/emails/{email_id}/events", headers=tenant.auth)).json()
    assert [e["type"] for e in timeline["data"]] == [
        "email.scheduled", "email.scheduled", "email.canceled"
    ]  # fmt: skip
    assert {r["status"] for r in timeline["recipients"]} == {"canceled"}


async def test_batch_strict_and_permissive(
    http: httpx.AsyncClient, db: Database, tenant: Tenant
) -> None:
    good, bad = BASIC, {**BASIC, "to": "nope"}
    before = await _counts(db, tenant)
    strict = await http.post("/v1/emails/batch", json=[good, bad, good], headers=tenant.auth)
    assert_error(strict, 422, "validation_error")
    assert "Email 1" in strict.json()["message"]
    assert await _counts(db, tenant) == before

    permissive = await http.post(
        "/v1/emails/batch",
        json=[good, bad, good],
        headers={**tenant.auth, "x-batch-validation": "permissive"},
    )
    assert permissive.status_code == 200, permissive.text
    body = permissive.json()
    assert len(body["data"]) == 2
    assert [e["index"] for e in body["errors"]] == [1]
    assert await _counts(db, tenant) == (before[0] + 2, before[1] + 4)

    ok = await http.post("/v1/emails/batch", json=[good, good], headers=tenant.auth)
    assert set(ok.json()) == {"data"}
    too_many = await http.post("/v1/emails/batch", json=[good] * 101, headers=tenant.auth)
    assert_error(too_many, 422, "validation_error")
    empty = await http.post("/v1/emails/batch", json=[], headers=tenant.auth)
    assert_error(empty, 422, "validation_error")


async def test_idempotency(http: httpx.AsyncClient, db: Database, tenant: Tenant) -> None:
    key = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    first = await http.post("/v1/emails", json=BASIC, headers={**tenant.auth, **key})
    second = await http.post("/v1/emails", json=BASIC, headers={**tenant.auth, **key})
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    async with db.tenant_tx(tenant.org.id) as s:
        count = await s.scalar(select(func.count()).select_from(Message))
    assert count == 1

    changed = await http.post(
        "/v1/emails", json={**BASIC, "subject": "other"}, headers={**tenant.auth, **key}
    )
    assert_error(changed, 409, "invalid_idempotent_request")
    long_key = await http.post(
        "/v1/emails", json=BASIC, headers={**tenant.auth, "Idempotency-Key": "k" * 257}
    )
    assert_error(long_key, 400, "invalid_idempotency_key")

    batch_key = {"Idempotency-Key": f"batch-{uuid.uuid4()}"}
    b1 = await http.post(
        "/v1/emails/batch", json=[BASIC, BASIC], headers={**tenant.auth, **batch_key}
    )
    b2 = await http.post(
        "/v1/emails/batch", json=[BASIC, BASIC], headers={**tenant.auth, **batch_key}
    )
    assert b1.json() == b2.json()
    assert len(b1.json()["data"]) == 2


async def test_keys_are_scoped_to_their_tenant(
    http: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    key = {"Idempotency-Key": "shared-key"}
    mine = await http.post("/v1/emails", json=BASIC, headers={**tenant.auth, **key})
    theirs = await http.post("/v1/emails", json=BASIC, headers={**other_tenant.auth, **key})
    assert mine.status_code == theirs.status_code == 200
    assert mine.json() != theirs.json()


async def test_a_running_request_holds_its_key(
    http: httpx.AsyncClient, db: Database, tenant: Tenant
) -> None:
    from sqlalchemy import text

    key = f"busy-{uuid.uuid4()}"
    async with db.system_tx(reason="test: hold an idempotency key") as s:
        await s.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(CAST(:k AS text), 0))"),
            {"k": f"{tenant.org.id}:{key}"},
        )
        busy = await http.post(
            "/v1/emails", json=BASIC, headers={**tenant.auth, "Idempotency-Key": key}
        )
    assert_error(busy, 409, "concurrent_idempotent_requests")
    free = await http.post(
        "/v1/emails", json=BASIC, headers={**tenant.auth, "Idempotency-Key": key}
    )
    assert free.status_code == 200


async def test_sending_keys_send_but_do_not_read(
    http: httpx.AsyncClient, tenant: Tenant, make_key: KeyFactory
) -> None:
    sending = await make_key(tenant.org.id, Scope.SENDING)
    auth = {"Authorization": f"Bearer {sending.token}"}
    sent = await http.post("/v1/emails", json=BASIC, headers=auth)
    assert sent.status_code == 200
    assert_error(
        await http.get(f"/v1/emails/{sent.json()['id']}", headers=auth), 401, "restricted_api_key"
    )
    assert_error(await http.get("/v1/emails", headers=auth), 401, "restricted_api_key")


async def test_list_emails(http: httpx.AsyncClient, tenant: Tenant) -> None:
    ids = [
        (await http.post("/v1/emails", json=BASIC, headers=tenant.auth)).json()["id"]
        for _ in range(3)
    ]
    page = (await http.get("/v1/emails?limit=2", headers=tenant.auth)).json()
    assert [e["id"] for e in page["data"]] == ids[::-1][:2]
    assert page["has_more"] is True
    rest = (await http.get(f"/v1/emails?limit=2&after={ids[1]}", headers=tenant.auth)).json()
    assert [e["id"] for e in rest["data"]] == [ids[0]]
    assert rest["has_more"] is False
