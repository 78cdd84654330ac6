"""Warm-up per source address: a new IP's daily volume follows a ramp across every tenant
that sends from it, because receivers judge the address as much as the domain.

An address warms up when an operator starts it (``postyard warmup set-ip``) or, with
``POSTYARD_WARMUP__IPS_AUTOMATIC``, from its first send. The claim computes each candidate's
source address the way the sender will (``ippools.choose``: same tenant, stream and message
id), locks the addresses' rows and rations them together with the domains' warm-ups
(``warmup.ration_all``): a recipient goes only if both allow it. Over the allowance it stays
``deferred`` with a ``warmup:`` reason until the next UTC day: held, never dropped.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import delete, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from postyard.core.errors import ValidationFailed
from postyard.delivery.models import IpWarmup
from postyard.delivery.warmup import Meter, WarmupPolicy, allowance
from postyard.sending.ledger import Candidate


@dataclass(frozen=True, slots=True)
class IpWarmupState:
    address: str
    started_on: date
    schedule: tuple[int, ...] | None
    counted_on: date
    sent: int


def _state(row: IpWarmup) -> IpWarmupState:
    return IpWarmupState(
        address=row.address,
        started_on=row.started_on,
        schedule=tuple(row.schedule) if row.schedule else None,
        counted_on=row.counted_on,
        sent=row.sent,
    )


def ip_meter(
    states: Mapping[str, IpWarmupState],
    source_of: Callable[[Candidate], str | None],
    policy: WarmupPolicy,
) -> Meter:
    return Meter(
        key_of=source_of,
        states=states,
        default=policy.ip_schedule,
        name_of=lambda address: f"source address {address}",
    )


def normalized(address: str) -> str:
    """``address`` in its canonical spelling. Raises ValidationFailed for anything else."""
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError as exc:
        raise ValidationFailed(f"{address!r} is not an IP address") from exc


async def lock_ip_states(
    session: AsyncSession, addresses: set[str], *, automatic: bool, now: datetime
) -> dict[str, IpWarmupState]:
    """The warm-ups of ``addresses``, locked until the transaction ends (system session).
    With ``automatic``, an address sending for the first time starts its ramp today."""
    if not addresses:
        return {}
    if automatic:
        today = now.date()
        await session.execute(
            insert(IpWarmup)
            .values(
                [
                    {"address": a, "started_on": today, "counted_on": today, "sent": 0}
                    for a in sorted(addresses)
                ]
            )
            .on_conflict_do_nothing()
        )
    rows = await session.scalars(
        select(IpWarmup)
        .where(IpWarmup.address.in_(sorted(addresses)))
        .order_by(IpWarmup.address)
        .with_for_update()
    )
    return {r.address: _state(r) for r in rows}


_COUNT = text(
    """
    UPDATE ip_warmups w SET sent = v.sent, counted_on = :today
      FROM unnest(CAST(:addresses AS text[]), CAST(:sent AS int[])) AS v(address, sent)
     WHERE w.address = v.address
    """
)


async def record_ip_sent(session: AsyncSession, used: Mapping[str, int], *, now: datetime) -> None:
    if used:
        await session.execute(
            _COUNT,
            {"today": now.date(), "addresses": list(used), "sent": list(used.values())},
        )


async def set_ip_warmup(
    session: AsyncSession, address: str, *, started_on: date, schedule: tuple[int, ...] | None
) -> IpWarmupState:
    """Start (or restart) ``address``'s warm-up on ``started_on`` with ``schedule`` (None:
    the settings' IP ramp). Today's count is kept."""
    values = {"started_on": started_on, "schedule": list(schedule) if schedule else None}
    row = await session.scalar(
        insert(IpWarmup)
        .values(address=normalized(address), counted_on=started_on, sent=0, **values)
        .on_conflict_do_update(index_elements=["address"], set_=values)
        .returning(IpWarmup)
    )
    assert row is not None
    return _state(row)


async def stop_ip_warmup(session: AsyncSession, address: str) -> bool:
    """End ``address``'s warm-up (no limit from now on). Returns whether there was one."""
    deleted = await session.scalar(
        delete(IpWarmup).where(IpWarmup.address == normalized(address)).returning(IpWarmup.address)
    )
    return deleted is not None


async def list_ip_warmups(session: AsyncSession) -> list[IpWarmupState]:
    return [_state(r) for r in await session.scalars(select(IpWarmup).order_by(IpWarmup.address))]


def ip_today_of(
    state: IpWarmupState, policy: WarmupPolicy, now: datetime
) -> tuple[int | None, int]:
    """(today's allowance or None, sent today) for display."""
    limit = allowance(state.schedule or policy.ip_schedule, state.started_on, now.date())
    return limit, state.sent if state.counted_on == now.date() else 0
