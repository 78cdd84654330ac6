"""Shared helpers of the tracking tests: send through the API, read the stored message, pull
the tracking URLs out of it, count what was written."""

from __future__ import annotations

import email
import email.policy
import re
import uuid
from email.message import EmailMessage
from typing import Any

import httpx
from sqlalchemy import func, select

from postyard.core.db import Database
from postyard.events.models import Event
from postyard.sending.models import MessageContent
from postyard.suppression.models import Suppression
from postyard.tracking.models import TrackedMessage
from tests.conftest import TEST_TRACKING, Tenant

BASE = TEST_TRACKING.base_url
HUMAN_UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari"
HTML = (
    '<html><body><p>Hi <a href="https://shop.example/sale?x=1&amp;y=2">sale</a></p>'
    '<p><a href="mailto:help@acme.test">help</a> <a href="https://acme.test/about">about</a>'
    "</p></body></html>"
)


async def send(http: httpx.AsyncClient, tenant: Tenant, **fields: Any) -> str:
    body = {"from": "App <app@acme.test>", "to": "ann@one.test", "subject": "Hi", "html": HTML}
    body.update(fields)
    response = await http.post("/v1/emails", json=body, headers=tenant.auth)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


async def stored(db: Database, tenant: Tenant, email_id: str) -> EmailMessage:
    async with db.tenant_tx(tenant.org.id) as s:
        raw = await s.scalar(
            select(MessageContent.raw).where(MessageContent.message_id == uuid.UUID(email_id))
        )
    assert raw is not None
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content


def paths(html: str, kind: str) -> list[str]:
    """The tracking-host paths (``/t/o/...`` or ``/t/c/...``) in the HTML, in order."""
    return re.findall(rf'"{re.escape(BASE)}(/t/{kind}/[A-Za-z0-9_-]+)"', html)


async def counts(db: Database, tenant: Tenant) -> dict[str, int]:
    """Rows this tenant has of what tracking writes: events by type, suppressions and the
    tracked rows' counters, to show that a refused request wrote nothing."""
    async with db.tenant_tx(tenant.org.id) as s:
        grouped = await s.execute(select(Event.type, func.count()).group_by(Event.type))
        events = {str(t): int(n) for t, n in grouped}
        suppressions = await s.scalar(select(func.count()).select_from(Suppression))
        rows = list(await s.scalars(select(TrackedMessage)))
    out = {f"event:{k}": v for k, v in events.items()}
    out["suppressions"] = int(suppressions or 0)
    out["counters"] = sum(r.opens + r.machine_opens + r.clicks + r.machine_clicks for r in rows)
    out["unsubscribed"] = sum(1 for r in rows if r.unsubscribed_at is not None)
    return out


async def events_of(db: Database, tenant: Tenant, email_id: str, kind: str) -> list[Event]:
    async with db.tenant_tx(tenant.org.id) as s:
        return list(
            await s.scalars(
                select(Event)
                .where(Event.message_id == uuid.UUID(email_id), Event.type == kind)
                .order_by(Event.seq)
            )
        )
