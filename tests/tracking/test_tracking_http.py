"""Open pixel and click redirect over real HTTP against a real PostgreSQL: what is
rewritten at accept time, what the tracking host counts and writes, and what it refuses."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from postyard.core.db import Database, TenantId
from postyard.core.http import AppServices
from postyard.events.models import Event
from postyard.events.service import record_events
from postyard.events.types import EventType, NewEvent
from postyard.migrations.runner import schema_head
from postyard.tracking import tokens
from postyard.tracking.machine import MachineRules
from postyard.tracking.types import TrackingConfig
from tests.conftest import TEST_TRACKING, AppFactory, Tenant, start_server, stop_server
from tests.tracking.helpers import (
    BASE,
    HTML,
    HUMAN_UA,
    counts,
    events_of,
    html_of,
    paths,
    send,
    stored,
    text_of,
)

LOOPBACK_RULES = MachineRules(
    apple_proxy_networks=("127.0.0.0/8",), scanner_networks=("127.0.0.0/8",)
)


@dataclass
class ManualClock:
    current: datetime = field(default_factory=lambda: datetime.now(UTC))

    def now(self) -> datetime:
        return self.current


@contextlib.asynccontextmanager
async def tracking_host(
    app_factory: AppFactory, db: Database, clock: ManualClock, config: TrackingConfig
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app with a clock and tracking rules of the test's choosing."""
    services = AppServices(db=db, clock=clock, schema_head=schema_head())
    app = app_factory(services)
    app.state.tracking = config
    server, task, base = await start_server(app)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            yield client
    finally:
        await stop_server(server, task)


async def _engagement(http: httpx.AsyncClient, tenant: Tenant, email_id: str) -> dict[str, int]:
    got = await http.get(f"/v1/emails/{email_id}", headers=tenant.auth)
    assert got.status_code == 200, got.text
    engagement = got.json()["engagement"]
    assert isinstance(engagement, dict)
    return engagement


async def test_tracking_off_leaves_the_message_alone(
    http: httpx.AsyncClient, db: Database, tenant: Tenant
) -> None:
    email_id = await send(http, tenant)
    message = await stored(db, tenant, email_id)
    assert html_of(message).rstrip("\r\n") == HTML
    assert BASE not in message.as_string()
    assert message["List-Unsubscribe"] is None
    got = (await http.get(f"/v1/emails/{email_id}", headers=tenant.auth)).json()
    assert got["stream"] == "transactional"
    assert got["engagement"] is None


async def test_open_tracking_adds_a_pixel_and_counts_opens(
    http: httpx.AsyncClient, db: Database, tenant: Tenant
) -> None:
    email_id = await send(http, tenant, open_tracking=True)
    message = await stored(db, tenant, email_id)
    html = html_of(message)
    [pixel] = paths(html, "o")
    assert paths(html, "c") == []  # clicks not asked for: links untouched
    assert 'href="https://shop.example/sale?x=1&amp;y=2"' in html

    opened = await http.get(pixel, headers={"User-Agent": HUMAN_UA})
    assert opened.status_code == 200
    assert opened.headers["content-type"] == "image/gif"
    assert "no-store" in opened.headers["cache-control"]
    assert opened.content.startswith(b"GIF89a")
    head = await http.head(pixel, headers={"User-Agent": HUMAN_UA})
    assert head.status_code == 200
    scanner = await http.get(pixel, headers={"User-Agent": "python-requests/2.32"})
    assert scanner.status_code == 200
    gmail = await http.get(
        pixel, headers={"User-Agent": "Mozilla/5.0 (via ggpht.com GoogleImageProxy)"}
    )
    assert gmail.status_code == 200

    assert await _engagement(http, tenant, email_id) == {
        "opens": 2, "machine_opens": 2, "clicks": 0, "machine_clicks": 0, "unsubscribed": False,
    }  # fmt: skip
    opens = await events_of(db, tenant, email_id, "email.opened")
    reasons = [(e.data["machine"], e.data["machine_reason"]) for e in opens]
    assert reasons == [
        (False, None),
        (True, "head-request"),
        (True, "scanner-agent"),
        (False, "image-proxy"),  # Gmail's proxy fetches when the reader opens: human
    ]
    first = opens[0]
    assert first.recipient == "ann@one.test"
    assert first.data["open"]["userAgent"] == HUMAN_UA
    assert first.data["open"]["ipAddress"] == "127.0.0.1"


async def test_clicks_redirect_only_to_the_messages_links(
    http: httpx.AsyncClient, db: Database, tenant: Tenant
) -> None:
    email_id = await send(http, tenant, click_tracking=True)
    message = await stored(db, tenant, email_id)
    html = html_of(message)
    sale, about = paths(html, "c")  # the mailto link is not tracked
    assert 'href="mailto:help@acme.test"' in html
    assert paths(html, "o") == []
    assert BASE not in text_of(message)  # the text part names the real URLs

    went = await http.get(sale, headers={"User-Agent": HUMAN_UA})
    assert went.status_code == 302
    assert went.headers["location"] == "https://shop.example/sale?x=1&y=2"
    assert "set-cookie" not in went.headers
    went = await http.get(about, headers={"User-Agent": HUMAN_UA})
    assert went.headers["location"] == "https://acme.test/about"
    head = await http.head(sale, headers={"User-Agent": HUMAN_UA})
    assert head.status_code == 302  # scanners still get the redirect, flagged
    bot = await http.get(sale, headers={"User-Agent": "Mozilla/5.0 HeadlessChrome/120.0"})
    assert bot.status_code == 302

    clicks = await events_of(db, tenant, email_id, "email.clicked")
    assert [e.data["click"]["link"] for e in clicks] == [
        "https://shop.example/sale?x=1&y=2",
        "https://acme.test/about",
        "https://shop.example/sale?x=1&y=2",
        "https://shop.example/sale?x=1&y=2",
    ]
    assert [e.data["machine_reason"] for e in clicks] == [
        None, None, "head-request", "scanner-agent",
    ]  # fmt: skip
    assert clicks[0].data["click"]["userAgent"] == HUMAN_UA
    assert clicks[0].data["click"]["ipAddress"] == "127.0.0.1"
    engagement = await _engagement(http, tenant, email_id)
    assert (engagement["clicks"], engagement["machine_clicks"]) == (2, 2)


def _token_of(path: str) -> str:
    return path.rsplit("/", 1)[1]


async def test_bad_tokens_are_404_and_write_nothing(
    http: httpx.AsyncClient, db: Database, tenant: Tenant, other_tenant: Tenant
) -> None:
    email_id = await send(http, tenant, open_tracking=True, click_tracking=True)
    html = html_of(await stored(db, tenant, email_id))
    [pixel] = paths(html, "o")
    sale = paths(html, "c")[0]
    claim = tokens.verify_click_token(TEST_TRACKING.key, _token_of(sale))
    before = await counts(db, tenant), await counts(db, other_tenant)

    token = _token_of(sale)
    flipped = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    other_key = b"another-instance-key-0123456789"
    refused = {
        "tampered": f"/t/c/{flipped}",
        "truncated": f"/t/c/{token[:-4]}",
        "garbage": "/t/c/not-a-token",
        # Authentic, but for a link index the message never had: no open redirect.
        "unknown link": "/t/c/" + tokens.make_click_token(
            TEST_TRACKING.key, replace(claim, link_index=7)
        ),
        # Authentic, naming this message under another tenant: that tenant has no such row.
        "foreign tenant": "/t/c/" + tokens.make_click_token(
            TEST_TRACKING.key, replace(claim, tenant_id=TenantId(other_tenant.org.id))
        ),
        "other delivery": "/t/c/" + tokens.make_click_token(
            TEST_TRACKING.key, replace(claim, delivery_id=uuid.uuid4())
        ),
        "another key": "/t/c/" + tokens.make_click_token(other_key, claim),
        "open token as click": "/t/c/" + _token_of(pixel),
        "click token as open": "/t/o/" + token,
        "unknown message": "/t/o/" + tokens.make_open_token(
            TEST_TRACKING.key,
            tokens.OpenClaim(
                tenant_id=claim.tenant_id, message_id=uuid.uuid4(), delivery_id=claim.delivery_id
            ),
        ),
    }  # fmt: skip
    for label, path in refused.items():
        response = await http.get(path, headers={"User-Agent": HUMAN_UA})
        assert response.status_code == 404, label
        assert "location" not in response.headers, label
        assert response.headers["content-type"].startswith("text/html"), label
    assert (await counts(db, tenant), await counts(db, other_tenant)) == before


async def test_tracking_off_for_the_message_refuses_its_other_kind(
    http: httpx.AsyncClient, db: Database, tenant: Tenant
) -> None:
    """A message tracking clicks only has no pixel: an authentic open token for it is 404."""
    email_id = await send(http, tenant, click_tracking=True)
    sale = paths(html_of(await stored(db, tenant, email_id)), "c")[0]
    claim = tokens.verify_click_token(TEST_TRACKING.key, _token_of(sale))
    open_token = tokens.make_open_token(
        TEST_TRACKING.key,
        tokens.OpenClaim(
            tenant_id=claim.tenant_id, message_id=claim.message_id, delivery_id=claim.delivery_id
        ),
    )
    before = await counts(db, tenant)
    assert (await http.get(f"/t/o/{open_token}")).status_code == 404
    assert await counts(db, tenant) == before


async def _deliver(db: Database, tenant: Tenant, email_id: str, recipient: str) -> datetime:
    """Write the email.delivered event the worker writes, and return its time."""
    async with db.tenant_tx(tenant.org.id) as s:
        await record_events(
            s,
            [
                NewEvent(
                    tenant_id=tenant.org.id,
                    type=EventType.EMAIL_DELIVERED,
                    message_id=uuid.UUID(email_id),
                    recipient=recipient,
                )
            ],
        )
    async with db.tenant_tx(tenant.org.id) as s:
        at = await s.scalar(
            select(Event.created_at).where(
                Event.message_id == uuid.UUID(email_id), Event.type == "email.delivered"
            )
        )
    assert at is not None
    return at


async def test_clicks_and_opens_soon_after_delivery_are_machine(
    http: httpx.AsyncClient, db: Database, tenant: Tenant, app_factory: AppFactory
) -> None:
    email_id = await send(http, tenant, open_tracking=True, click_tracking=True)
    html = html_of(await stored(db, tenant, email_id))
    [pixel] = paths(html, "o")
    sale = paths(html, "c")[0]
    delivered = await _deliver(db, tenant, email_id, "ann@one.test")
    clock = ManualClock(delivered + timedelta(seconds=1))
    async with tracking_host(app_factory, db, clock, TEST_TRACKING) as host:
        assert (await host.get(sale, headers={"User-Agent": HUMAN_UA})).status_code == 302
        assert (await host.get(pixel, headers={"User-Agent": HUMAN_UA})).status_code == 200
        clock.current = delivered + timedelta(hours=1)
        assert (await host.get(sale, headers={"User-Agent": HUMAN_UA})).status_code == 302
        assert (await host.get(pixel, headers={"User-Agent": HUMAN_UA})).status_code == 200
    clicks = await events_of(db, tenant, email_id, "email.clicked")
    opens = await events_of(db, tenant, email_id, "email.opened")
    assert [e.data["machine_reason"] for e in clicks] == ["too-soon-after-delivery", None]
    assert [e.data["machine_reason"] for e in opens] == ["too-soon-after-delivery", None]
    assert clicks[0].data["click"]["timestamp"] == (delivered + timedelta(seconds=1)).isoformat()
    assert await _engagement(http, tenant, email_id) == {
        "opens": 1, "machine_opens": 1, "clicks": 1, "machine_clicks": 1, "unsubscribed": False,
    }  # fmt: skip


async def test_proxy_and_scanner_networks_are_machine(
    http: httpx.AsyncClient, db: Database, tenant: Tenant, app_factory: AppFactory
) -> None:
    """Loopback stands in for Apple's proxy range (opens) and a scanner range (clicks)."""
    email_id = await send(http, tenant, open_tracking=True, click_tracking=True)
    html = html_of(await stored(db, tenant, email_id))
    [pixel] = paths(html, "o")
    sale = paths(html, "c")[0]
    config = replace(TEST_TRACKING, rules=LOOPBACK_RULES)
    async with tracking_host(app_factory, db, ManualClock(), config) as host:
        assert (await host.get(pixel, headers={"User-Agent": "Mozilla/5.0"})).status_code == 200
        assert (await host.get(sale, headers={"User-Agent": HUMAN_UA})).status_code == 302
    [opened] = await events_of(db, tenant, email_id, "email.opened")
    [clicked] = await events_of(db, tenant, email_id, "email.clicked")
    assert (opened.data["machine"], opened.data["machine_reason"]) == (True, "apple-mpp")
    assert (clicked.data["machine"], clicked.data["machine_reason"]) == (True, "scanner-network")


async def test_image_proxy_opens_can_be_counted_as_machine(
    http: httpx.AsyncClient, db: Database, tenant: Tenant, app_factory: AppFactory
) -> None:
    email_id = await send(http, tenant, open_tracking=True)
    [pixel] = paths(html_of(await stored(db, tenant, email_id)), "o")
    config = replace(TEST_TRACKING, image_proxy_opens_are_machine=True)
    async with tracking_host(app_factory, db, ManualClock(), config) as host:
        response = await host.get(pixel, headers={"User-Agent": "YahooMailProxy; https://help"})
        assert response.status_code == 200
    [opened] = await events_of(db, tenant, email_id, "email.opened")
    assert (opened.data["machine"], opened.data["machine_reason"]) == (True, "image-proxy")


async def test_a_message_to_several_recipients_is_tracked_per_message(
    http: httpx.AsyncClient, db: Database, tenant: Tenant
) -> None:
    email_id = await send(
        http, tenant, to=["ann@one.test", "bob@two.test"], open_tracking=True, stream="bulk"
    )
    message = await stored(db, tenant, email_id)
    [pixel] = paths(html_of(message), "o")
    claim = tokens.verify_open_token(TEST_TRACKING.key, _token_of(pixel))
    assert claim.delivery_id == uuid.UUID(int=0)
    assert message["List-Unsubscribe"] is None  # one link cannot say which recipient asked
    assert (await http.get(pixel, headers={"User-Agent": HUMAN_UA})).status_code == 200
    [opened] = await events_of(db, tenant, email_id, "email.opened")
    assert opened.recipient is None


@pytest.mark.parametrize("bad", [{"open_tracking": "yes"}, {"stream": "marketing"}])
async def test_bad_extension_fields_are_422(
    http: httpx.AsyncClient, tenant: Tenant, bad: dict[str, object]
) -> None:
    body = {"from": "a@acme.test", "to": "b@one.test", "subject": "s", "html": "<p>x</p>", **bad}
    response = await http.post("/v1/emails", json=body, headers=tenant.auth)
    assert response.status_code == 422, response.text
    assert response.json()["name"] == "validation_error"


async def test_a_burst_of_clicks_is_machine(
    http: httpx.AsyncClient, db: Database, tenant: Tenant, app_factory: AppFactory
) -> None:
    """Scanners follow every link at once: the third click within a second is a burst."""
    email_id = await send(http, tenant, click_tracking=True)
    sale, about = paths(html_of(await stored(db, tenant, email_id)), "c")
    clock = ManualClock()
    async with tracking_host(app_factory, db, clock, TEST_TRACKING) as host:
        for path in (sale, about, sale):
            clock.current += timedelta(milliseconds=300)
            assert (await host.get(path, headers={"User-Agent": HUMAN_UA})).status_code == 302
        clock.current += timedelta(minutes=5)
        assert (await host.get(about, headers={"User-Agent": HUMAN_UA})).status_code == 302
    clicks = await events_of(db, tenant, email_id, "email.clicked")
    assert [e.data["machine_reason"] for e in clicks] == [None, None, "click-burst", None]
