"""An email's ``last_event`` (Resend's field), read from its events.

Every change of an email's state writes an event in the same transaction (accept, each
recipient's outcome, cancel, a bounce or complaint reported later), so the last such event
is its last event: no column of ``messages`` has to be rewritten each time, which cost a
message row's new version, its three index entries and, later, vacuuming the old one, for
every recipient's outcome. Engagement (opens, clicks, unsubscribes) is not a state change
and does not count, nor does a delay a remote server reports after taking the message (a
"delayed" DSN: the email was delivered as far as Postyard knows). Events are kept as long
as their email; anything that ever prunes them must keep each email's latest state event.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import Uuid

from postyard.core.db import TenantId
from postyard.events.types import EventType

STATE_EVENTS = (
    EventType.EMAIL_SENT,
    EventType.EMAIL_SCHEDULED,
    EventType.EMAIL_SUPPRESSED,
    EventType.EMAIL_DELIVERED,
    EventType.EMAIL_DELIVERY_DELAYED,
    EventType.EMAIL_BOUNCED,
    EventType.EMAIL_FAILED,
    EventType.EMAIL_CANCELED,
    EventType.EMAIL_COMPLAINED,
)

# The index on (tenant_id, message_id, seq) finds each email's few events.
_LAST = text(
    f"""
    SELECT DISTINCT ON (e.message_id) e.message_id, e.type
      FROM events e
     WHERE e.tenant_id = :tenant AND e.message_id = ANY(:ids)
       AND e.type IN ({", ".join(f"'{t.value}'" for t in STATE_EVENTS)})
       AND NOT (e.type = 'email.delivery_delayed' AND coalesce(e.data->>'source', '') = 'dsn')
     ORDER BY e.message_id, e.seq DESC
    """  # noqa: S608 - constants of this module, no input
).bindparams(bindparam("ids", type_=ARRAY(Uuid())))


async def last_events(
    session: AsyncSession, tenant_id: TenantId, message_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """Each email's last event by its short name (``delivered``, ``bounced``…), in one
    statement. An email always has one: accepting it wrote ``email.sent``, ``email.scheduled``
    or ``email.suppressed``."""
    if not message_ids:
        return {}
    rows = await session.execute(_LAST, {"tenant": tenant_id, "ids": list(message_ids)})
    return {r.message_id: EventType(r.type).short for r in rows}
