"""Accepting mail: the hottest path of the API and the SMTP relay, on a bare asyncpg
connection of the caller's tenant transaction (``Database.tenant_conn``).

Two statements whatever the batch size: one reads what acceptance depends on (the From
domains' status and tracking settings, the suppressed recipients), one writes the messages,
their contents, one delivery per recipient, the tracking rows and the first events. The
caller commits, then wakes the workers; until the commit nothing of the batch exists, and
after it nothing can be lost.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from postyard.core.db import DriverStatement, TenantId
from postyard.domains.senders import TrackingDefaults
from postyard.domains.types import DomainStatus
from postyard.events.service import INSERT_EVENTS_SQL, event_columns
from postyard.events.types import EventType, NewEvent
from postyard.sending.compose import ComposedMessage
from postyard.sending.errors import DomainNotVerified
from postyard.sending.tracked import apply_tracking
from postyard.suppression import SuppressionReason
from postyard.tenancy.types import Principal
from postyard.tracking.service import NewTrackedMessage
from postyard.tracking.types import Stream, TrackingConfig

# What acceptance depends on, in one round trip: the tenant's domains among the From domains
# and its active suppressions among the recipients.
_CONTEXT = DriverStatement.of(
    """
    SELECT 'domain' AS kind, d.name AS key, d.status, d.open_tracking, d.click_tracking,
           d.return_path, CAST(NULL AS text) AS reason
      FROM domains d
     WHERE d.tenant_id = CAST(:tenant AS uuid) AND d.name = ANY(CAST(:domains AS text[]))
    UNION ALL
    SELECT DISTINCT 'suppressed', x.address, CAST(NULL AS text), CAST(NULL AS boolean),
           CAST(NULL AS boolean), CAST(NULL AS text), s.reason
      FROM unnest(CAST(:emails AS text[])) AS x(address)
      JOIN suppressions s
        ON s.tenant_id = CAST(:tenant AS uuid) AND lower(s.email) = lower(x.address)
     WHERE s.expires_at IS NULL OR s.expires_at > CAST(:now AS timestamptz)
    """
)

# The whole accepted batch in one statement (one round trip whatever its size): the
# messages, their contents, one delivery per recipient, the tracking rows and the first
# event of each message. Foreign keys are checked at the end of the statement, so the CTEs'
# order does not matter, and every data-modifying CTE runs exactly once whether or not
# anything reads it.
_ACCEPT = DriverStatement.of(
    f"""
    WITH m AS (
        INSERT INTO messages (id, tenant_id, api_key_id, source, stream, sender, from_domain,
                              envelope_from, subject, to_addrs, cc_addrs, bcc_addrs,
                              reply_to_addrs, html, text, tags, message_id_header, size,
                              smtputf8, scheduled_at, last_event)
        SELECT v.id, CAST(:tenant_id AS uuid), CAST(:api_key_id AS uuid), CAST(:source AS text),
               v.stream, v.sender, v.from_domain, v.envelope_from, v.subject,
               ARRAY(SELECT jsonb_array_elements_text(CAST(v.to_addrs AS jsonb))),
               ARRAY(SELECT jsonb_array_elements_text(CAST(v.cc_addrs AS jsonb))),
               ARRAY(SELECT jsonb_array_elements_text(CAST(v.bcc_addrs AS jsonb))),
               ARRAY(SELECT jsonb_array_elements_text(CAST(v.reply_to_addrs AS jsonb))),
               v.html, v.text, CAST(v.tags AS jsonb), v.message_id_header, v.size,
               v.smtputf8, v.scheduled_at, v.last_event
          FROM unnest(CAST(:ids AS uuid[]), CAST(:streams AS text[]),
                      CAST(:senders AS text[]), CAST(:from_domains AS text[]),
                      CAST(:envelope_froms AS text[]),
                      CAST(:subjects AS text[]), CAST(:to_addrs AS text[]),
                      CAST(:cc_addrs AS text[]), CAST(:bcc_addrs AS text[]),
                      CAST(:reply_to_addrs AS text[]), CAST(:htmls AS text[]),
                      CAST(:texts AS text[]), CAST(:tags AS text[]),
                      CAST(:message_id_headers AS text[]), CAST(:sizes AS integer[]),
                      CAST(:smtputf8s AS boolean[]), CAST(:scheduled_ats AS timestamptz[]),
                      CAST(:last_events AS text[]))
               AS v(id, stream, sender, from_domain, envelope_from, subject, to_addrs,
                    cc_addrs, bcc_addrs, reply_to_addrs, html, text, tags, message_id_header,
                    size, smtputf8, scheduled_at, last_event)
    ), c AS (
        INSERT INTO message_contents (message_id, tenant_id, raw)
        SELECT c.message_id, CAST(:tenant_id AS uuid), c.raw
          FROM unnest(CAST(:ids AS uuid[]), CAST(:raws AS bytea[])) AS c(message_id, raw)
    ), d AS (
        INSERT INTO deliveries (id, tenant_id, message_id, recipient, domain, kind, bulk,
                                status, next_attempt_at, last_reply)
        SELECT d.id, CAST(:tenant_id AS uuid), d.message_id, d.recipient, d.domain, d.kind,
               d.bulk, d.status, d.next_attempt_at, d.last_reply
          FROM unnest(CAST(:delivery_ids AS uuid[]), CAST(:delivery_messages AS uuid[]),
                      CAST(:recipients AS text[]), CAST(:domains AS text[]),
                      CAST(:kinds AS text[]), CAST(:bulks AS boolean[]),
                      CAST(:statuses AS text[]), CAST(:next_attempt_ats AS timestamptz[]),
                      CAST(:last_replies AS text[]))
               AS d(id, message_id, recipient, domain, kind, bulk, status, next_attempt_at,
                    last_reply)
    ), t AS (
        INSERT INTO tracked_messages (message_id, tenant_id, delivery_id, recipient,
                                      open_tracking, click_tracking, unsubscribe, links)
        SELECT t.message_id, CAST(:tenant_id AS uuid), t.delivery_id, t.recipient,
               t.open_tracking, t.click_tracking, t.unsubscribe,
               ARRAY(SELECT jsonb_array_elements_text(CAST(t.links AS jsonb)))
          FROM unnest(CAST(:tracked_messages AS uuid[]), CAST(:tracked_deliveries AS uuid[]),
                      CAST(:tracked_recipients AS text[]), CAST(:tracked_opens AS boolean[]),
                      CAST(:tracked_clicks AS boolean[]),
                      CAST(:tracked_unsubscribes AS boolean[]), CAST(:tracked_links AS text[]))
               AS t(message_id, delivery_id, recipient, open_tracking, click_tracking,
                    unsubscribe, links)
    ){INSERT_EVENTS_SQL}"""  # noqa: S608 - a constant of the events module, no input
)


@dataclass(frozen=True, slots=True)
class AcceptContext:
    """What the tenant's data says about a batch before it is written."""

    domains: dict[str, TrackingDefaults]
    verified: frozenset[str]
    suppressed: dict[str, SuppressionReason]


async def read_context(
    conn: asyncpg.Connection,
    tenant: TenantId,
    messages: list[ComposedMessage],
    now: datetime,
) -> AcceptContext:
    """The From domains' settings and the suppressed recipients of ``messages`` (one
    statement)."""
    rows = await conn.fetch(
        _CONTEXT.sql,
        *_CONTEXT.arguments(
            {
                "tenant": tenant,
                "domains": sorted({m.sender_domain.lower() for m in messages}),
                "emails": sorted({r.address for m in messages for r in m.recipients}),
                "now": now,
            }
        ),
    )
    domains: dict[str, TrackingDefaults] = {}
    verified: set[str] = set()
    suppressed: dict[str, SuppressionReason] = {}
    for row in rows:
        if row["kind"] == "suppressed":
            suppressed[row["key"]] = SuppressionReason(row["reason"])
            continue
        name, is_verified = row["key"], row["status"] == DomainStatus.VERIFIED
        if is_verified:
            verified.add(name)
        domains[name] = TrackingDefaults(
            open_tracking=row["open_tracking"],
            click_tracking=row["click_tracking"],
            return_path_domain=f"{row['return_path']}.{name}" if is_verified else None,
        )
    return AcceptContext(domains=domains, verified=frozenset(verified), suppressed=suppressed)


def _not_verified(domain: str) -> DomainNotVerified:
    msg = (
        f"The {domain} domain is not verified. Add it with POST /v1/domains, publish "
        "its DNS records and verify it, or send from a verified domain."
    )
    return DomainNotVerified(msg)


def require_verified(messages: list[ComposedMessage], verified: frozenset[str]) -> None:
    """Raise DomainNotVerified unless every message's From domain is verified (the rule
    POSTYARD_SENDING__REQUIRE_VERIFIED_DOMAIN switches on)."""
    for domain in sorted({m.sender_domain.lower() for m in messages} - verified):
        raise _not_verified(domain)


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptOptions:
    source: str = "api"
    require_verified_domain: bool = False
    tracking: TrackingConfig | None = None


async def accept_messages(
    conn: asyncpg.Connection,
    principal: Principal,
    messages: list[ComposedMessage],
    *,
    now: datetime,
    options: AcceptOptions,
) -> None:
    """Write composed messages to the ledger, in the caller's tenant transaction: each
    message tracked as its domain and options ask (with ``options.tracking``), one delivery
    per recipient (due at ``now``, or when scheduled; a suppressed recipient gets a
    ``suppressed`` row no worker claims) and the events. Raises DomainNotVerified (before
    writing anything) when the rule is on and a From domain is not verified."""
    if not messages:
        return
    context = await read_context(conn, principal.tenant_id, messages, now)
    if options.require_verified_domain:
        require_verified(messages, context.verified)
    await _write(conn, principal, messages, context, now=now, options=options)


async def accept_each(
    conn: asyncpg.Connection,
    principal: Principal,
    messages: list[ComposedMessage],
    *,
    now: datetime,
    options: AcceptOptions,
) -> list[DomainNotVerified | None]:
    """``accept_messages`` for messages that are independent of each other (a group
    commit of single sends): each is judged on its own. Returns, in order, None for a
    message written, or the DomainNotVerified that refused it (nothing of it is written)
    when the rule is on and its From domain is not verified. Two statements, as for a
    batch."""
    if not messages:
        return []
    context = await read_context(conn, principal.tenant_id, messages, now)
    refusals: list[DomainNotVerified | None] = [
        _not_verified(m.sender_domain)
        if options.require_verified_domain and m.sender_domain not in context.verified
        else None
        for m in messages
    ]
    accepted = [m for m, refusal in zip(messages, refusals, strict=True) if refusal is None]
    if accepted:
        await _write(conn, principal, accepted, context, now=now, options=options)
    return refusals


async def _write(
    conn: asyncpg.Connection,
    principal: Principal,
    messages: list[ComposedMessage],
    context: AcceptContext,
    *,
    now: datetime,
    options: AcceptOptions,
) -> None:
    tracked: list[NewTrackedMessage] = []
    if options.tracking is not None:
        messages, tracked = apply_tracking(
            principal.tenant_id, messages, options.tracking, context.domains, now=now
        )
    params = _accept_parameters(
        principal, messages, tracked, context.suppressed, now=now, options=options
    )
    await conn.execute(_ACCEPT.sql, *_ACCEPT.arguments(params))


def _accept_parameters(
    principal: Principal,
    messages: list[ComposedMessage],
    tracked: list[NewTrackedMessage],
    suppressed: Mapping[str, SuppressionReason],
    *,
    now: datetime,
    options: AcceptOptions,
) -> dict[str, Any]:
    tenant = principal.tenant_id
    deliveries = [(m, r) for m in messages for r in m.recipients]
    events = [
        NewEvent(
            tenant_id=tenant,
            type=EventType.EMAIL_SCHEDULED if m.scheduled_at else EventType.EMAIL_SENT,
            message_id=m.id,
            data={"scheduled_at": m.scheduled_at.isoformat()} if m.scheduled_at else {},
        )
        for m in messages
    ] + [
        NewEvent(
            tenant_id=tenant,
            type=EventType.EMAIL_SUPPRESSED,
            message_id=m.id,
            recipient=r.address,
            data={"reason": suppressed[r.address].value},
        )
        for m, r in deliveries
        if r.address in suppressed
    ]
    recorded = [t for t in tracked if t.plan.recorded]
    return {
        "tenant_id": tenant,
        "api_key_id": principal.api_key_id,
        "source": options.source,
        "ids": [m.id for m in messages],
        "streams": [m.stream.value for m in messages],
        "senders": [m.sender for m in messages],
        "from_domains": [m.sender_domain for m in messages],
        "envelope_froms": [m.envelope_from for m in messages],
        "subjects": [m.subject for m in messages],
        "to_addrs": [_json_array(m.to) for m in messages],
        "cc_addrs": [_json_array(m.cc) for m in messages],
        "bcc_addrs": [_json_array(m.bcc) for m in messages],
        "reply_to_addrs": [_json_array(m.reply_to) for m in messages],
        "htmls": [m.html for m in messages],
        "texts": [m.text for m in messages],
        "tags": [
            _json_array([{"name": t.name, "value": t.value} for t in m.tags]) for m in messages
        ],
        "message_id_headers": [m.message_id_header for m in messages],
        "sizes": [len(m.raw) for m in messages],
        "smtputf8s": [m.smtputf8 for m in messages],
        "scheduled_ats": [m.scheduled_at for m in messages],
        "last_events": [_first_event(m, suppressed).short for m in messages],
        "raws": [m.raw for m in messages],
        "delivery_ids": [r.id for _, r in deliveries],
        "delivery_messages": [m.id for m, _ in deliveries],
        "recipients": [r.address for _, r in deliveries],
        "domains": [r.domain for _, r in deliveries],
        "kinds": [r.kind for _, r in deliveries],
        "bulks": [m.stream is Stream.BULK for m, _ in deliveries],
        "statuses": [
            "suppressed" if r.address in suppressed else "scheduled" if m.scheduled_at else "queued"
            for m, r in deliveries
        ],
        "next_attempt_ats": [m.scheduled_at or now for m, _ in deliveries],
        "last_replies": [
            f"suppressed ({suppressed[r.address]})" if r.address in suppressed else None
            for _, r in deliveries
        ],
        "tracked_messages": [t.message_id for t in recorded],
        "tracked_deliveries": [t.delivery_id for t in recorded],
        "tracked_recipients": [t.recipient for t in recorded],
        "tracked_opens": [t.plan.open_tracking for t in recorded],
        "tracked_clicks": [t.plan.click_tracking for t in recorded],
        "tracked_unsubscribes": [t.plan.unsubscribe for t in recorded],
        "tracked_links": [json.dumps(list(t.plan.links)) for t in recorded],
        **event_columns(events),
    }


def _json_array(values: Sequence[object]) -> str:
    """``json.dumps(values)``; most of these lists are empty (cc, bcc, reply_to, tags), and
    ``json.dumps`` costs microseconds even for those."""
    return json.dumps(values) if values else "[]"


def _first_event(message: ComposedMessage, suppressed: Mapping[str, object]) -> EventType:
    if all(r.address in suppressed for r in message.recipients):
        return EventType.EMAIL_SUPPRESSED
    return EventType.EMAIL_SCHEDULED if message.scheduled_at else EventType.EMAIL_SENT
