"""Accepting mail: the hottest path of the API and the SMTP relay, on a bare asyncpg
connection of the caller's tenant transaction (``Database.tenant_conn``).

Two statements whatever the batch size: one reads what acceptance depends on (the From
domains' status and tracking settings, the suppressed recipients), one writes the messages,
their contents, one delivery per recipient, the tracking rows and the first events. The
caller commits, then wakes the workers; until the commit nothing of the batch exists, and
after it nothing can be lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from postyard.core.db import DriverStatement, TenantId
from postyard.core.json_rows import json_rows
from postyard.domains.senders import TrackingDefaults
from postyard.domains.types import DomainStatus
from postyard.events.service import INSERT_EVENTS_SQL, event_rows
from postyard.sending import accept_rows as rows
from postyard.sending.accept_rows import Bodies
from postyard.sending.compose import ComposedMessage
from postyard.sending.errors import DomainNotVerified
from postyard.sending.tracked import apply_tracking
from postyard.suppression import SuppressionReason
from postyard.tenancy.types import Principal
from postyard.tracking.service import NewTrackedMessage
from postyard.tracking.types import TrackingConfig

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
# event of each message. Rows come as JSON documents (``accept_rows``) and the bodies as one
# ``bytea`` cut by offsets. Foreign keys are checked at the end of the statement, so the
# CTEs' order does not matter, and every data-modifying CTE runs exactly once whether or
# not anything reads it.
_ACCEPT = DriverStatement.of(
    f"""
    WITH v AS (
        SELECT *
          FROM json_to_recordset(CAST(:messages AS json))
               AS v(id uuid, stream text, sender text, from_domain text, envelope_from text,
                    subject text, to_addrs text[], cc_addrs text[], bcc_addrs text[],
                    reply_to_addrs text[], tags jsonb, message_id_header text, size integer,
                    smtputf8 boolean, scheduled_at timestamptz, html_at integer,
                    html_len integer, text_at integer, text_len integer, raw_at integer,
                    raw_len integer)
    ), m AS (
        INSERT INTO messages (id, tenant_id, api_key_id, source, stream, sender, from_domain,
                              envelope_from, subject, to_addrs, cc_addrs, bcc_addrs,
                              reply_to_addrs, html, text, tags, message_id_header, size,
                              smtputf8, scheduled_at)
        SELECT v.id, CAST(:tenant_id AS uuid), CAST(:api_key_id AS uuid), CAST(:source AS text),
               v.stream, v.sender, v.from_domain, v.envelope_from, v.subject, v.to_addrs,
               v.cc_addrs, v.bcc_addrs, v.reply_to_addrs,
               convert_from(substr(CAST(:bodies AS bytea), v.html_at, v.html_len), 'UTF8'),
               convert_from(substr(CAST(:bodies AS bytea), v.text_at, v.text_len), 'UTF8'),
               v.tags, v.message_id_header, v.size, v.smtputf8, v.scheduled_at
          FROM v
    ), c AS (
        INSERT INTO message_contents (message_id, tenant_id, raw)
        SELECT v.id, CAST(:tenant_id AS uuid), substr(CAST(:bodies AS bytea), v.raw_at, v.raw_len)
          FROM v
    ), d AS (
        INSERT INTO deliveries (id, tenant_id, message_id, recipient, domain, kind, bulk,
                                status, next_attempt_at, last_reply)
        SELECT d.id, CAST(:tenant_id AS uuid), d.message_id, d.recipient, d.domain, d.kind,
               d.bulk, d.status, d.next_attempt_at, d.last_reply
          FROM json_to_recordset(CAST(:deliveries AS json))
               AS d(id uuid, message_id uuid, recipient text, domain text, kind text,
                    bulk boolean, status text, next_attempt_at timestamptz, last_reply text)
    ), t AS (
        INSERT INTO tracked_messages (message_id, tenant_id, delivery_id, recipient,
                                      open_tracking, click_tracking, unsubscribe, links)
        SELECT t.message_id, CAST(:tenant_id AS uuid), t.delivery_id, t.recipient,
               t.open_tracking, t.click_tracking, t.unsubscribe, t.links
          FROM json_to_recordset(CAST(:tracked AS json))
               AS t(message_id uuid, delivery_id uuid, recipient text, open_tracking boolean,
                    click_tracking boolean, unsubscribe boolean, links text[])
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
    tenant, bodies = principal.tenant_id, Bodies()
    message_rows = rows.message_rows(messages, bodies)
    return {
        "tenant_id": tenant,
        "api_key_id": principal.api_key_id,
        "source": options.source,
        "messages": json_rows(message_rows),
        "bodies": bodies.joined(),
        "deliveries": json_rows(rows.delivery_rows(messages, suppressed, now=now)),
        "tracked": json_rows(rows.tracked_rows(tracked)),
        "events": json_rows(event_rows(rows.first_events(tenant, messages, suppressed))),
    }
