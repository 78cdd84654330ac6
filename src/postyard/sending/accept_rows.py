"""An accepted batch as the parameters of the accept statement (pure): rows per table for
``core.json_rows``, and every body (html, text, MIME) in one byte string, cut by offsets.

With one array parameter per column (some forty, the large bodies among them) asyncpg's
encoding was a quarter of the API's CPU per accepted message (see ``core.json_rows``). The
bodies go as one ``bytea`` that the statement cuts with ``substr`` (1-based offsets), so the
driver copies each once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from postyard.core.db import TenantId
from postyard.events.types import EventType, NewEvent
from postyard.sending.compose import ComposedMessage
from postyard.suppression import SuppressionReason
from postyard.tracking.service import NewTrackedMessage
from postyard.tracking.types import Stream


class Bodies:
    """Byte strings laid end to end, each answered with its (offset, length) in the whole
    (1-based, as ``substr`` counts); None stays None."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._next = 1

    def add(self, data: bytes | None) -> tuple[int | None, int | None]:
        if data is None:
            return None, None
        at = self._next
        self._parts.append(data)
        self._next += len(data)
        return at, len(data)

    def joined(self) -> bytes:
        return b"".join(self._parts)


def _encoded(value: str | None) -> bytes | None:
    # Strict UTF-8, as the driver encoded text parameters: a lone surrogate fails here too.
    return value.encode() if value is not None else None


def message_rows(messages: Sequence[ComposedMessage], bodies: Bodies) -> list[dict[str, Any]]:
    """The ``messages`` rows (and where each body is in ``bodies``)."""
    rows: list[dict[str, Any]] = []
    for m in messages:
        html_at, html_len = bodies.add(_encoded(m.html))
        text_at, text_len = bodies.add(_encoded(m.text))
        raw_at, raw_len = bodies.add(m.raw)
        rows.append(
            {
                "id": m.id,
                "stream": m.stream.value,
                "sender": m.sender,
                "from_domain": m.sender_domain,
                "envelope_from": m.envelope_from,
                "subject": m.subject,
                "to_addrs": m.to,
                "cc_addrs": m.cc,
                "bcc_addrs": m.bcc,
                "reply_to_addrs": m.reply_to,
                "tags": [{"name": t.name, "value": t.value} for t in m.tags],
                "message_id_header": m.message_id_header,
                "size": raw_len,
                "smtputf8": m.smtputf8,
                "scheduled_at": m.scheduled_at,
                "html_at": html_at,
                "html_len": html_len,
                "text_at": text_at,
                "text_len": text_len,
                "raw_at": raw_at,
                "raw_len": raw_len,
            }
        )
    return rows


def delivery_rows(
    messages: Sequence[ComposedMessage],
    suppressed: Mapping[str, SuppressionReason],
    *,
    now: datetime,
) -> list[dict[str, Any]]:
    """One ``deliveries`` row per recipient: queued (due now), scheduled, or suppressed (a
    row no worker claims, with the reason as its last reply)."""
    rows: list[dict[str, Any]] = []
    for m in messages:
        message_id = m.id
        due = m.scheduled_at or now
        waiting = "scheduled" if m.scheduled_at else "queued"
        bulk = m.stream is Stream.BULK
        for r in m.recipients:
            reason = suppressed.get(r.address)
            rows.append(
                {
                    "id": r.id,
                    "message_id": message_id,
                    "recipient": r.address,
                    "domain": r.domain,
                    "kind": r.kind,
                    "bulk": bulk,
                    "status": waiting if reason is None else "suppressed",
                    "next_attempt_at": due,
                    "last_reply": None if reason is None else f"suppressed ({reason})",
                }
            )
    return rows


def tracked_rows(tracked: Sequence[NewTrackedMessage]) -> list[dict[str, Any]]:
    """The ``tracked_messages`` rows of the recipients whose plan is recorded."""
    return [
        {
            "message_id": t.message_id,
            "delivery_id": t.delivery_id,
            "recipient": t.recipient,
            "open_tracking": t.plan.open_tracking,
            "click_tracking": t.plan.click_tracking,
            "unsubscribe": t.plan.unsubscribe,
            "links": list(t.plan.links),
        }
        for t in tracked
        if t.plan.recorded
    ]


def first_events(
    tenant: TenantId,
    messages: Sequence[ComposedMessage],
    suppressed: Mapping[str, SuppressionReason],
) -> list[NewEvent]:
    """Each message's ``email.sent`` (or ``email.scheduled``), and an ``email.suppressed`` per
    suppressed recipient, in the order that makes the last of each message's events its
    ``last_event`` (``sending/last_event.py``): ``suppressed`` when every recipient is."""
    events: list[NewEvent] = []
    for m in messages:
        accepted = NewEvent(
            tenant_id=tenant,
            type=EventType.EMAIL_SCHEDULED if m.scheduled_at else EventType.EMAIL_SENT,
            message_id=m.id,
            data={"scheduled_at": m.scheduled_at.isoformat()} if m.scheduled_at else {},
        )
        refused = [
            NewEvent(
                tenant_id=tenant,
                type=EventType.EMAIL_SUPPRESSED,
                message_id=m.id,
                recipient=r.address,
                data={"reason": suppressed[r.address].value},
            )
            for r in m.recipients
            if r.address in suppressed
        ]
        if len(refused) == len(m.recipients):
            events += [accepted, *refused]
        else:
            events += [*refused, accepted]
    return events
