"""Tracking at accept time: each message's HTML rewritten (links through the click URL, the
open pixel) and its unsubscribe and CFBL headers added, as its domain and its own options
ask, from the domains' settings read in the accepting transaction, before the ledger rows
are written; the bytes stored are the bytes delivered and signed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from postyard.core.db import TenantId
from postyard.domains import senders
from postyard.sending.compose import ComposedMessage
from postyard.sending.html_text import html_to_text
from postyard.sending.mime import build_message
from postyard.tracking.plan import (
    TrackingInput,
    TrackingPlan,
    plan_tracking,
    prepend_headers,
)
from postyard.tracking.service import NewTrackedMessage
from postyard.tracking.types import Stream, TrackingConfig

_NO_DOMAIN = senders.TrackingDefaults(
    open_tracking=False, click_tracking=False, return_path_domain=None
)


def _tracked_bytes(message: ComposedMessage, plan: TrackingPlan) -> bytes:
    raw = message.raw
    if plan.html is not None and message.spec is not None:
        spec = message.spec
        # The text part is made from the original HTML: tracking URLs in plain text look
        # like phishing (see tracking.rewrite).
        text = spec.text if spec.text is not None else html_to_text(spec.html or "")
        raw = build_message(replace(spec, html=plan.html, text=text))
    return prepend_headers(raw, plan.headers)


def _track_one(
    config: TrackingConfig,
    tenant_id: TenantId,
    message: ComposedMessage,
    defaults: senders.TrackingDefaults,
    now: datetime,
) -> tuple[ComposedMessage, NewTrackedMessage | None]:
    options = message.tracking
    bulk = message.stream is Stream.BULK
    wants_unsubscribe = options.list_unsubscribe if options.list_unsubscribe is not None else bulk
    sole = message.recipients[0] if len(message.recipients) == 1 else None
    # The HTML can only be rewritten where the message was built here (API); SMTP bytes
    # are kept as sent, apart from the headers added on top.
    html = message.html if message.spec is not None else None
    item = TrackingInput(
        tenant_id=tenant_id,
        message_id=message.id,
        delivery_id=sole.id if sole is not None else None,
        recipient=sole.address if sole is not None else None,
        html=html,
        open_tracking=_choose(options.open_tracking, defaults.open_tracking),
        click_tracking=_choose(options.click_tracking, defaults.click_tracking),
        unsubscribe=wants_unsubscribe and not message.has_list_unsubscribe,
        bulk=bulk,
        return_path_domain=defaults.return_path_domain,
        issued_at=now,
    )
    plan = plan_tracking(config, item)
    if plan.html is None and not plan.headers:
        return message, None
    raw = _tracked_bytes(message, plan)
    tracked = NewTrackedMessage(
        message_id=message.id, delivery_id=item.delivery_id, recipient=item.recipient, plan=plan
    )
    return replace(message, raw=raw), tracked


def _choose(override: bool | None, default: bool) -> bool:
    return default if override is None else override


def apply_tracking(
    tenant_id: TenantId,
    messages: list[ComposedMessage],
    config: TrackingConfig,
    defaults: Mapping[str, senders.TrackingDefaults],
    *,
    now: datetime,
) -> tuple[list[ComposedMessage], list[NewTrackedMessage]]:
    """The messages as they will be stored and sent, and the tracking rows to write, given
    the tracking settings of the tenant's From domains (``defaults``, by domain name)."""
    out: list[ComposedMessage] = []
    tracked: list[NewTrackedMessage] = []
    for message in messages:
        final, row = _track_one(
            config, tenant_id, message, defaults.get(message.sender_domain, _NO_DOMAIN), now
        )
        out.append(final)
        if row is not None:
            tracked.append(row)
    return out, tracked
