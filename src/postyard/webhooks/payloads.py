"""Webhook bodies in Resend's shapes: ``{"type", "created_at", "data"}`` (pure).

For ``email.*`` events ``data`` is Resend's outbound email object (``email_id``, ``from``,
``to``, ``subject``, ``created_at``, ``tags``) plus the part the event type adds (``bounce``,
``failed``, ``suppressed``); ``to`` names the recipient the event is about when there is one;
``open``, ``click``, ``machine``, ``bounce_type`` and the like pass through as written. Other
events carry the data they were written with.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from postyard.events.types import StoredEvent
from postyard.sending.summaries import MessageSummary

# What events carry besides the reply that Resend's payloads (or our extensions) show as is:
# the open and click details, machine activity, the class of a bounce.
_PASSED = ("open", "click", "machine", "machine_reason", "bounce_type", "bounce_category")


# Built once: json.dumps with options builds an encoder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def iso(moment: datetime) -> str:
    """Resend's timestamp form: ISO 8601 in UTC with milliseconds and a Z."""
    utc = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def message_id_header(event: StoredEvent) -> str:
    """The ``webhook-id``: one per event, the same for every endpoint, retry and replay, so
    receivers can deduplicate on it."""
    return f"msg_{event.id.hex}"


def payload(event: StoredEvent, message: MessageSummary | None) -> bytes:
    """The request body for ``event`` (``message``: the email it is about, if any)."""
    data: dict[str, Any]
    if event.type.startswith("email.") and event.message_id is not None:
        data = _email_data(event, message)
    else:
        data = dict(event.data)
    body = {"type": event.type, "created_at": iso(event.created_at), "data": data}
    return _ENCODER.encode(body).encode()


def _email_data(event: StoredEvent, message: MessageSummary | None) -> dict[str, Any]:
    data: dict[str, Any] = {"email_id": str(event.message_id)}
    if message is not None:
        data.update(
            {
                "created_at": iso(message.created_at),
                "from": message.sender,
                "to": [event.recipient] if event.recipient else message.to,
                "subject": message.subject,
                "tags": message.tags,
            }
        )
    elif event.recipient:
        data["to"] = [event.recipient]
    reply = str(event.data.get("reply") or "")
    data.update({key: event.data[key] for key in _PASSED if key in event.data})
    if event.type == "email.bounced":
        written = event.data.get("bounce")
        bounce = dict(written) if isinstance(written, dict) else {}
        data["bounce"] = {
            "type": bounce.get("type", "Permanent"),
            "subType": bounce.get("subType", "General"),
            "message": bounce.get("message", reply),
            "diagnosticCode": [f"smtp; {reply}"] if reply else [],
        }
    elif event.type == "email.failed":
        data["failed"] = {"reason": reply or str(event.data.get("reason") or "failed")}
    elif event.type == "email.suppressed":
        data["suppressed"] = {
            "type": "OnAccountSuppressionList",
            "reason": str(event.data.get("reason") or ""),
            "message": "The recipient is on the suppression list.",
            "diagnosticCode": [],
        }
    elif event.type == "email.scheduled" and "scheduled_at" in event.data:
        data["scheduled_at"] = event.data["scheduled_at"]
    return data
