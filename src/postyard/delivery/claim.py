"""One claim of the delivery worker: due recipients shared fairly across tenants, with the
holds applied before anything is leased.

Everything happens in the caller's ``system_tx``, so a recipient is either leased, held or
left waiting, never lost between the two.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from postyard.delivery import holds as holds_service
from postyard.delivery import ip_warmup, warmup
from postyard.delivery.holds import Hold, hold_for
from postyard.delivery.sites import site_of_domain
from postyard.delivery.warmup import WarmupPolicy
from postyard.sending import ledger
from postyard.sending.ledger import Candidate, ClaimedDelivery, Held, OutboundMessage


@dataclass(frozen=True, slots=True)
class Claim:
    claimed: list[ClaimedDelivery]
    messages: dict[uuid.UUID, OutboundMessage]
    holds: list[Hold] = field(default_factory=list)
    """The active holds at claim time, for the send-time check by destination site."""
    held: int = 0
    postponed: int = 0
    took_all_due: bool = True
    """No due row was left unlocked (``ledger.took_all_due``): another claim now would
    find nothing that was due before this one began."""


def split_held(
    candidates: list[Candidate], holds: list[Hold]
) -> tuple[list[Candidate], list[Held]]:
    """Candidates that may go, and those an active hold catches (pure). Destinations match
    here by recipient domain or by the site its name alone reveals (gmail.com: google)."""
    go: list[Candidate] = []
    held: list[Held] = []
    for c in candidates:
        hold = hold_for(
            holds,
            tenant_id=c.tenant_id,
            from_domain=c.from_domain,
            recipient_domain=c.domain,
            site=site_of_domain(c.domain),
        )
        if hold is None:
            go.append(c)
        else:
            held.append(Held(c.id, hold.id, hold.describe()))
    return go, held


async def claim_batch(
    session: AsyncSession,
    *,
    owner: str,
    limit: int,
    lease: timedelta,
    now: datetime,
    warmups: WarmupPolicy | None = None,
    source_of: Callable[[Candidate], str | None] | None = None,
) -> Claim:
    """Lock an equal share of ``limit`` from every tenant with due recipients, hold those an
    active hold catches, postpone those over their domain's or their source address's
    warm-up allowance to tomorrow, lease the rest to ``owner`` and load their messages.
    ``source_of`` is the address a candidate will leave from (IP pools), if any."""
    # The holds first: their statement begins the transaction, which lock_due (on the
    # driver connection) would otherwise begin with a round trip of its own.
    active = await holds_service.active_holds_unscoped(session)
    locked, share = await ledger.lock_due(session, limit=limit, now=now)
    took_all = ledger.took_all_due(locked, share=share, limit=limit)
    candidates = ledger.round_robin(locked, limit)
    if not candidates:
        return Claim([], {}, took_all_due=took_all)
    go, held = split_held(candidates, active)
    await ledger.hold(session, held, now=now)
    policy = warmups or WarmupPolicy(schedule=())
    states = await warmup.lock_states(
        session, {(c.tenant_id, c.from_domain) for c in go}, policy, now=now
    )
    meters = [warmup.domain_meter(states, policy)]
    if source_of is not None:
        sources = {a for a in map(source_of, go) if a is not None}
        ip_states = await ip_warmup.lock_ip_states(
            session, sources, automatic=policy.ips_automatic, now=now
        )
        meters.append(ip_warmup.ip_meter(ip_states, source_of, policy))
    go, waiting, used = warmup.ration_all(go, meters, now=now)
    await ledger.postpone(session, waiting, now=now)
    await warmup.record_sent(session, used[0], now=now)
    if len(used) > 1:
        await ip_warmup.record_ip_sent(session, used[1], now=now)
    claimed, messages = await ledger.start_sending(
        session, [c.id for c in go], owner=owner, lease=lease, now=now
    )
    return Claim(claimed, messages, active, len(held), len(waiting), took_all)
