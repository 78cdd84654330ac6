"""Webhook bodies in Resend's shapes (pure)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from postyard.core.db import TenantId
from postyard.events.types import StoredEvent
from postyard.sending.summaries import MessageSummary
from postyard.webhooks.payloads import iso, message_id_header, payload

AT = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)
MESSAGE = MessageSummary(
    id=uuid.UUID("0195f0e8-0000-7000-8000-000000000001"),
    sender="Acme <hello@acme.test>",
    subject="Your receipt",
    to=["ada@example.com", "bob@example.com"],
    tags={"category": "receipt"},
    created_at=AT,
)


def event(type_: str, *, recipient: str | None = None, **data: object) -> StoredEvent:
    return StoredEvent(
        id=uuid.uuid4(),
        tenant_id=TenantId(uuid.uuid4()),
        type=type_,
        message_id=MESSAGE.id,
        recipient=recipient,
        data=dict(data),
        created_at=AT,
    )


def test_timestamps_are_utc_with_milliseconds() -> None:
    assert iso(AT) == "2026-12-01T12:00:00.123Z"


def test_email_sent_lists_every_recipient() -> None:
    body = json.loads(payload(event("email.sent"), MESSAGE))
    assert body == {
        "type": "email.sent",
        "created_at": "2026-12-01T12:00:00.123Z",
        "data": {
            "email_id": str(MESSAGE.id),
            "created_at": "2026-12-01T12:00:00.123Z",
            "from": "Acme <hello@acme.test>",
            "to": ["ada@example.com", "bob@example.com"],
            "subject": "Your receipt",
            "tags": {"category": "receipt"},
        },
    }


def test_a_bounce_names_its_recipient_and_the_reply() -> None:
    reply = "550 5.1.1 user unknown"
    body = json.loads(
        payload(event("email.bounced", recipient="bob@example.com", reply=reply), MESSAGE)
    )
    assert body["data"]["to"] == ["bob@example.com"]
    assert body["data"]["bounce"] == {
        "type": "Permanent",
        "subType": "General",
        "message": reply,
        "diagnosticCode": [f"smtp; {reply}"],
    }


def test_failed_and_a_vanished_message() -> None:
    failed = event("email.failed", recipient="ada@example.com", reply="gave up after retries")
    body = json.loads(payload(failed, None))
    assert body["data"] == {
        "email_id": str(MESSAGE.id),
        "to": ["ada@example.com"],
        "failed": {"reason": "gave up after retries"},
    }


def test_other_events_carry_their_data_and_ids_are_stable() -> None:
    domain = StoredEvent(
        id=uuid.uuid4(),
        tenant_id=TenantId(uuid.uuid4()),
        type="domain.created",
        message_id=None,
        recipient=None,
        data={"id": "d1", "name": "acme.test", "status": "pending"},
        created_at=AT,
    )
    body = json.loads(payload(domain, None))
    assert body["data"] == {"id": "d1", "name": "acme.test", "status": "pending"}
    assert message_id_header(domain) == f"msg_{domain.id.hex}"


def test_a_classified_bounce_and_tracking_details_pass_through() -> None:
    bounce = {"type": "Transient", "subType": "MailboxFull", "message": "452 4.2.2 full"}
    written = event(
        "email.bounced",
        recipient="bob@example.com",
        reply="452 4.2.2 full",
        bounce=bounce,
        bounce_type="transient",
        attempt=3,
    )
    data = json.loads(payload(written, MESSAGE))["data"]
    assert data["bounce"] == {**bounce, "diagnosticCode": ["smtp; 452 4.2.2 full"]}
    assert data["bounce_type"] == "transient"
    assert "attempt" not in data and "reply" not in data
    click = {"link": "https://x.test/", "ipAddress": "192.0.2.1", "userAgent": "UA"}
    clicked = json.loads(payload(event("email.clicked", click=click, machine=False), MESSAGE))
    assert (clicked["data"]["click"], clicked["data"]["machine"]) == (click, False)
