"""List-Unsubscribe headers at accept time, and the unsubscribe URL over real HTTP: a GET
shows a page and changes nothing, a one-click POST suppresses the recipient at once."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from postyard.core.db import Database, TenantId
from postyard.sending.models import Delivery
from postyard.suppression import suppressed_among
from postyard.suppression.models import Suppression
from postyard.tracking import tokens
from postyard.tracking.unsubscribe import ONE_CLICK_VALUE
from tests.conftest import TEST_TRACKING, AppFactory, Tenant
from tests.tracking.helpers import BASE, counts, events_of, send, stored
from tests.tracking.test_tracking_http import ManualClock, tracking_host

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def _unsubscribe_path(header: str) -> str:
    first = header.split(",", maxsplit=1)[0].strip()
    assert first.startswith(f"<{BASE}/u/") and first.endswith(">"), header
    return first[len(BASE) + 1 : -1]


async def _bulk(http: httpx.AsyncClient, db: Database, tenant: Tenant) -> tuple[str, str]:
    email_id = await send(http, tenant, stream="bulk", to="Ann <Ann@One.test>")
    message = await stored(db, tenant, email_id)
    return email_id, _unsubscribe_path(str(message["List-Unsubscribe"]))


async def test_bulk_mail_gets_one_click_headers(
    http: httpx.AsyncClient, db: Database, tenant: Tenant
) -> None:
    email_id = await send(http, tenant, stream="bulk")
    message = await stored(db, tenant, email_id)
    assert message["List-Unsubscribe"].startswith(f"<{BASE}/u/")
    assert message["List-Unsubscribe-Post"] == ONE_CLICK_VALUE
    # Unverified From domain: no return path of ours, so neither mailto nor CFBL.
    assert "mailto:" not in message["List-Unsubscribe"]
    assert message["CFBL-Address"] is None
    got = (await http.get(f"/v1/emails/{email_id}", headers=tenant.auth)).json()
    assert got["stream"] == "bulk"
    assert got["engagement"]["unsubscribed"] is False


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, False),
        ({"stream": "transactional"}, False),
        ({"list_unsubscribe": True}, True),
        ({"stream": "bulk", "list_unsubscribe": False}, False),
        ({"stream": "bulk", "text": "only text", "html": None}, True),
    ],
)
async def test_headers_follow_the_stream_and_the_option(
    http: httpx.AsyncClient,
    db: Database,
    tenant: Tenant,
    fields: dict[str, object],
    expected: bool,
) -> None:
    email_id = await send(http, tenant, **fields)
    message = await stored(db, tenant, email_id)
    assert (message["List-Unsubscribe"] is not None) is expected
    assert (message["List-Unsubscribe-Post"] is not None) is expected


async def test_the_senders_own_list_unsubscribe_wins(
    http: httpx.AsyncClient, db: Database, tenant: Tenant
) -> None:
    own = "<https://acme.test/unsub?u=1>"
    email_id = await send(http, tenant, stream="bulk", headers={"List-Unsubscribe": own})
    message = await stored(db, tenant, email_id)
    assert message.get_all("List-Unsubscribe") == [own]
    assert message["List-Unsubscribe-Post"] is None


async def test_get_shows_a_page_and_never_unsubscribes(
    http: httpx.AsyncClient, db: Database, tenant: Tenant
) -> None:
    _, path = await _bulk(http, db, tenant)
    before = await counts(db, tenant)
    for _ in range(2):
        page = await http.get(path)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<form method="post"' in page.text
        assert "Ann@one.test" in page.text
    assert (await http.head(path)).status_code in {200, 405}
    assert await counts(db, tenant) == before


async def test_one_click_post_suppresses_at_once(
    http: httpx.AsyncClient, db: Database, tenant: Tenant
) -> None:
    email_id, path = await _bulk(http, db, tenant)
    done = await http.post(path, data=ONE_CLICK)
    assert done.status_code == 200
    assert "location" not in done.headers
    assert "set-cookie" not in done.headers

    async with db.tenant_tx(tenant.org.id) as s:
        now = datetime.now(UTC)
        assert await suppressed_among(s, tenant.org.id, ["ann@one.test"], now) == {"ann@one.test"}
        entry = await s.scalar(select(Suppression))
    assert entry is not None
    assert entry.reason == "unsubscribe"
    assert entry.source_email_id == uuid.UUID(email_id)
    [event] = await events_of(db, tenant, email_id, "email.unsubscribed")
    assert event.recipient == "Ann@one.test"
    assert event.data["method"] == "one-click"
    got = (await http.get(f"/v1/emails/{email_id}", headers=tenant.auth)).json()
    assert got["engagement"]["unsubscribed"] is True

    # The next email to that address is suppressed, not delivered.
    next_id = await send(http, tenant, to="ann@ONE.test", subject="Next")
    [suppressed] = await events_of(db, tenant, next_id, "email.suppressed")
    assert suppressed.data["reason"] == "unsubscribe"
    async with db.tenant_tx(tenant.org.id) as s:
        status = await s.scalar(
            select(Delivery.status).where(Delivery.message_id == uuid.UUID(next_id))
        )
    assert status == "suppressed"

    # Again, and from the page: still 200, nothing new written.
    before = await counts(db, tenant)
    again = await http.post(path, data={**ONE_CLICK, "source": "page"})
    assert again.status_code == 200
    assert await counts(db, tenant) == before
    assert "already" in (await http.get(path)).text


async def test_multipart_one_click_and_the_confirmation_form(
    http: httpx.AsyncClient, db: Database, tenant: Tenant, other_tenant: Tenant
) -> None:
    email_id, path = await _bulk(http, db, tenant)
    done = await http.post(path, files={"List-Unsubscribe": (None, "One-Click")})
    assert done.status_code == 200
    [event] = await events_of(db, tenant, email_id, "email.unsubscribed")
    assert event.data["method"] == "one-click"

    email_id, path = await _bulk(http, db, other_tenant)
    done = await http.post(path, data={**ONE_CLICK, "source": "page"})
    assert done.status_code == 200
    [event] = await events_of(db, other_tenant, email_id, "email.unsubscribed")
    assert event.data["method"] == "page"


async def test_refused_unsubscribes_change_nothing(
    http: httpx.AsyncClient,
    db: Database,
    tenant: Tenant,
    other_tenant: Tenant,
    app_factory: AppFactory,
) -> None:
    email_id, path = await _bulk(http, db, tenant)
    token = path.rsplit("/", 1)[1]
    claim = tokens.verify_unsubscribe_token(
        TEST_TRACKING.key, token, now=ManualClock().now(), max_age=timedelta(days=1)
    )
    flipped = token[:12] + ("A" if token[12] != "A" else "B") + token[13:]

    def minted(**changes: object) -> str:
        return "/u/" + tokens.make_unsubscribe_token(TEST_TRACKING.key, replace(claim, **changes))  # type: ignore[arg-type] # dataclasses.replace takes field values

    before = await counts(db, tenant), await counts(db, other_tenant)
    refused = {
        "tampered": (f"/u/{flipped}", 404),
        "garbage": ("/u/xyz", 404),
        "foreign tenant": (minted(tenant_id=TenantId(other_tenant.org.id)), 404),
        "other address": (minted(address="eve@one.test"), 404),
        "unknown message": (minted(message_id=uuid.uuid4()), 404),
        "another key": (
            "/u/" + tokens.make_unsubscribe_token(b"another-instance-key-0123456789", claim),
            404,
        ),
    }
    for label, (target, status) in refused.items():
        response = await http.post(target, data=ONE_CLICK)
        assert response.status_code == status, label
        page = await http.get(target)
        assert page.status_code == status, label
    wrong_body = await http.post(path, data={"unsubscribe": "yes"})
    assert wrong_body.status_code == 400
    json_body = await http.post(path, json={"List-Unsubscribe": "One-Click"})
    assert json_body.status_code == 400

    clock = ManualClock(ManualClock().now() + timedelta(days=61))
    async with tracking_host(app_factory, db, clock, TEST_TRACKING) as later:
        assert (await later.post(path, data=ONE_CLICK)).status_code == 410
        assert (await later.get(path)).status_code == 410
    assert (await counts(db, tenant), await counts(db, other_tenant)) == before
    assert await events_of(db, tenant, email_id, "email.unsubscribed") == []
