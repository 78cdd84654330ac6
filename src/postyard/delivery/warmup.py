"""Warm-up: a new sending domain's daily volume follows a ramp, so receivers learn its
reputation before it sends at full volume.

The ramp is data: a list of daily allowances (day 1, day 2, …; after the last day there is
no limit), from the settings for every domain or per domain in ``warmups.schedule``. The
count of the day lives in the ``warmups`` row, locked by the claiming transaction so lanes
and workers never overspend. Recipients over the allowance stay ``deferred`` with a
``warmup:`` reason until the next UTC day: held, never dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import select, text, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from postyard.core.db import TenantId
from postyard.core.errors import ValidationFailed
from postyard.delivery.models import Warmup as WarmupRow
from postyard.sending.ledger import Candidate, Postponed

DomainKey = tuple[TenantId, str]


@dataclass(frozen=True, slots=True)
class WarmupPolicy:
    """From the settings: the default ramps and whether every domain (and every source
    address of the IP pools) follows one from its first send."""

    schedule: tuple[int, ...]
    automatic: bool = False
    ip_schedule: tuple[int, ...] = ()
    ips_automatic: bool = False


class RampState(Protocol):
    """What rationing needs of a warm-up, whatever warms up (a domain, a source address)."""

    @property
    def started_on(self) -> date: ...
    @property
    def schedule(self) -> tuple[int, ...] | None: ...
    @property
    def counted_on(self) -> date: ...
    @property
    def sent(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Meter:
    """One kind of warm-up a claim enforces: the key a candidate counts against (None: not
    metered), the locked state of each key, the default ramp and a key's name for reasons."""

    key_of: Callable[[Candidate], Hashable | None]
    states: Mapping[Any, RampState]
    default: tuple[int, ...]
    name_of: Callable[[Any], str]


@dataclass(frozen=True, slots=True)
class WarmupState:
    tenant_id: TenantId
    domain: str
    started_on: date
    schedule: tuple[int, ...] | None
    counted_on: date
    sent: int


def allowance(schedule: Sequence[int], started_on: date, today: date) -> int | None:
    """Recipients the domain may send on ``today`` (pure); None once the ramp is over."""
    day = (today - started_on).days
    if day < 0:
        return schedule[0] if schedule else None
    return schedule[day] if day < len(schedule) else None


def next_day(now: datetime) -> datetime:
    """The start of the next UTC day after ``now``."""
    return datetime.combine(now.date() + timedelta(days=1), time(0), tzinfo=now.tzinfo)


def ration_all(
    candidates: Sequence[Candidate], meters: Sequence[Meter], *, now: datetime
) -> tuple[list[Candidate], list[Postponed], list[dict[Any, int]]]:
    """Split candidates into those within every meter's allowance today (their sending
    domain's, their source address's) and those that wait for tomorrow (pure). A candidate
    goes only if all its meters allow it, and then counts against each of them. Returns (go,
    postponed, sent today per key after this claim, one dict per meter)."""
    today = now.date()
    used: list[dict[Any, int]] = [{} for _ in meters]
    go: list[Candidate] = []
    wait: list[Postponed] = []
    for c in candidates:
        counted: list[tuple[int, Hashable]] = []
        refused: str | None = None
        for i, meter in enumerate(meters):
            key = meter.key_of(c)
            state = meter.states.get(key) if key is not None else None
            if key is None or state is None:
                continue
            if key not in used[i]:
                used[i][key] = state.sent if state.counted_on == today else 0
            limit = allowance(state.schedule or meter.default, state.started_on, today)
            if refused is None and limit is not None and used[i][key] >= limit:
                refused = f"warmup: {meter.name_of(key)} reached today's allowance of {limit}"
            counted.append((i, key))
        if refused is not None:
            wait.append(Postponed(c.id, next_day(now), refused))
            continue
        for i, key in counted:
            used[i][key] += 1
        go.append(c)
    return go, wait, used


def domain_meter(states: Mapping[DomainKey, WarmupState], policy: WarmupPolicy) -> Meter:
    return Meter(
        key_of=lambda c: (c.tenant_id, c.from_domain),
        states=states,
        default=policy.schedule,
        name_of=lambda key: str(key[1]),
    )


def ration(
    candidates: Sequence[Candidate],
    states: dict[DomainKey, WarmupState],
    policy: WarmupPolicy,
    *,
    now: datetime,
) -> tuple[list[Candidate], list[Postponed], dict[DomainKey, int]]:
    """Split candidates into those within their domain's allowance today and those that wait
    for tomorrow (pure). Returns (go, postponed, sent today per domain after this claim)."""
    go, wait, [used] = ration_all(candidates, [domain_meter(states, policy)], now=now)
    return go, wait, cast(dict[DomainKey, int], used)


def _state(row: WarmupRow) -> WarmupState:
    return WarmupState(
        tenant_id=TenantId(row.tenant_id),
        domain=row.domain,
        started_on=row.started_on,
        schedule=tuple(row.schedule) if row.schedule else None,
        counted_on=row.counted_on,
        sent=row.sent,
    )


async def lock_states(
    session: AsyncSession, keys: set[DomainKey], policy: WarmupPolicy, *, now: datetime
) -> dict[DomainKey, WarmupState]:
    """The warm-ups of ``keys``, locked until the transaction ends. With ``automatic``, a
    domain sending for the first time starts its ramp today."""
    if not keys:
        return {}
    if policy.automatic:
        await session.execute(
            insert(WarmupRow)
            .values(
                [
                    {
                        "tenant_id": t,
                        "domain": d,
                        "started_on": now.date(),
                        "counted_on": now.date(),
                        "sent": 0,
                    }
                    for t, d in sorted(keys)
                ]
            )
            .on_conflict_do_nothing()
        )
    rows = await session.scalars(
        select(WarmupRow)
        .where(tuple_(WarmupRow.tenant_id, WarmupRow.domain).in_(sorted(keys)))
        .order_by(WarmupRow.tenant_id, WarmupRow.domain)
        .with_for_update()
    )
    return {(TenantId(r.tenant_id), r.domain): _state(r) for r in rows}


_COUNT = text(
    """
    UPDATE warmups w SET sent = v.sent, counted_on = :today
      FROM unnest(CAST(:tenants AS uuid[]), CAST(:domains AS text[]), CAST(:sent AS int[]))
           AS v(tenant_id, domain, sent)
     WHERE w.tenant_id = v.tenant_id AND w.domain = v.domain
    """
)


async def record_sent(session: AsyncSession, used: dict[DomainKey, int], *, now: datetime) -> None:
    if used:
        keys = list(used)
        await session.execute(
            _COUNT,
            {
                "today": now.date(),
                "tenants": [t for t, _ in keys],
                "domains": [d for _, d in keys],
                "sent": [used[k] for k in keys],
            },
        )


def parse_schedule(value: str) -> tuple[int, ...]:
    """ "50,100,200" as a ramp. Raises ValidationFailed for anything but positive integers."""
    try:
        ramp = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError as exc:
        raise ValidationFailed("a ramp is a comma-separated list of daily allowances") from exc
    if not ramp or any(n < 1 for n in ramp):
        raise ValidationFailed("a ramp needs at least one day and positive allowances")
    return ramp


async def set_warmup(
    session: AsyncSession,
    tenant_id: TenantId,
    domain: str,
    *,
    started_on: date,
    schedule: tuple[int, ...] | None,
) -> WarmupState:
    """Start (or restart) ``domain``'s warm-up on ``started_on`` with ``schedule`` (None:
    the settings' ramp). Today's count is kept."""
    name = domain.strip().rstrip(".").lower()
    if "." not in name or len(name) > 253:
        raise ValidationFailed("a warm-up is for a sending domain such as example.com")
    values = {"started_on": started_on, "schedule": list(schedule) if schedule else None}
    row = await session.scalar(
        insert(WarmupRow)
        .values(tenant_id=tenant_id, domain=name, counted_on=started_on, sent=0, **values)
        .on_conflict_do_update(index_elements=["tenant_id", "domain"], set_=values)
        .returning(WarmupRow)
    )
    assert row is not None
    return _state(row)


async def stop_warmup(session: AsyncSession, tenant_id: TenantId, domain: str) -> bool:
    """End ``domain``'s warm-up (no limit from now on). Returns whether there was one."""
    row = await session.get(WarmupRow, (tenant_id, domain.strip().lower()))
    if row is None:
        return False
    await session.delete(row)
    return True


async def list_warmups(session: AsyncSession, tenant_id: TenantId | None) -> list[WarmupState]:
    query = select(WarmupRow).order_by(WarmupRow.tenant_id, WarmupRow.domain)
    if tenant_id is not None:
        query = query.where(WarmupRow.tenant_id == tenant_id)
    return [_state(r) for r in await session.scalars(query)]


def today_of(state: WarmupState, policy: WarmupPolicy, now: datetime) -> tuple[int | None, int]:
    """(today's allowance or None, sent today) for display."""
    limit = allowance(state.schedule or policy.schedule, state.started_on, now.date())
    return limit, state.sent if state.counted_on == now.date() else 0
