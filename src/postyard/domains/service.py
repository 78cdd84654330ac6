"""Use cases of sending domains: add (with fresh DKIM keys), read, update, remove, verify.

DNS is never queried inside a transaction: callers load what to check (``expected_for``),
query DNS (``lookup.answers_for``), then store the verdict (``record_check``).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from postyard.core.crypto import encrypt_secret
from postyard.core.db import TenantId
from postyard.core.errors import NotFound, ValidationFailed
from postyard.core.ids import parse_uuid, uuid7
from postyard.core.pagination import Page, PageRequest, fetch_page
from postyard.domains import dkim
from postyard.domains.models import DkimKey, Domain
from postyard.domains.names import normalize_domain, validate_subdomain_label
from postyard.domains.records import (
    VERIFICATION_WINDOW,
    PublishedKey,
    Seen,
    domain_status,
    expected_records,
    record_status,
)
from postyard.domains.types import (
    DnsPolicy,
    DomainStatus,
    DomainView,
    ExpectedRecord,
    RecordStatus,
)
from postyard.events.service import record_events
from postyard.events.types import EventType, NewEvent

DKIM_PURPOSE = "dkim-private-key"
# Pending domains are re-checked often at first (people publish records and wait), then
# less: (elapsed since the verification started, delay until the next check).
_PENDING_BACKOFF = [
    (timedelta(minutes=10), timedelta(minutes=1)),
    (timedelta(hours=1), timedelta(minutes=5)),
    (timedelta(hours=6), timedelta(minutes=15)),
]
_PENDING_LATE = timedelta(hours=1)
_VERIFIED_RECHECK = timedelta(hours=1)
_TEMPORARY_RECHECK = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class DomainSettings:
    open_tracking: bool = False
    click_tracking: bool = False
    tls: str = "opportunistic"
    tracking_subdomain: str | None = None


def _view(domain: Domain, keys: Sequence[DkimKey], policy: DnsPolicy) -> DomainView:
    records = _expected(domain, keys, policy)
    statuses = domain.record_statuses or {}
    return DomainView(
        id=domain.id,
        name=domain.name,
        status=DomainStatus(domain.status),
        created_at=domain.created_at,
        return_path=domain.return_path,
        open_tracking=domain.open_tracking,
        click_tracking=domain.click_tracking,
        tls=domain.tls,
        tracking_subdomain=domain.tracking_subdomain,
        records=[(r, RecordStatus(statuses.get(r.key, "not_started"))) for r in records],
    )


def _expected(domain: Domain, keys: Sequence[DkimKey], policy: DnsPolicy) -> list[ExpectedRecord]:
    published = [k for k in keys if k.state != "retired"]
    published.sort(key=lambda k: (k.algorithm != "ed25519-sha256", k.selector))
    signing = {k.algorithm for k in published if k.state == "active"}
    return expected_records(
        domain.name,
        return_path=domain.return_path,
        keys=[
            PublishedKey(
                k.selector,
                k.public_record,
                required=k.state == "active" or k.algorithm not in signing,
            )
            for k in published
        ],
        policy=policy,
        tracking_subdomain=domain.tracking_subdomain,
    )


async def _keys(session: AsyncSession, domain: Domain) -> list[DkimKey]:
    rows = await session.scalars(
        select(DkimKey).where(DkimKey.tenant_id == domain.tenant_id, DkimKey.domain_id == domain.id)
    )
    return list(rows)


async def _require(session: AsyncSession, tenant_id: TenantId, domain_id: str) -> Domain:
    parsed = parse_uuid(domain_id)
    domain = None
    if parsed is not None:
        domain = await session.scalar(
            select(Domain).where(Domain.id == parsed, Domain.tenant_id == tenant_id)
        )
    if domain is None:
        raise NotFound("Domain not found.")
    return domain


def _new_keys(
    tenant_id: TenantId, domain_id: uuid.UUID, kek: bytes, now: datetime
) -> list[DkimKey]:
    stamp = f"{now:%Y%m%d}{secrets.token_hex(2)}"
    made = []
    for algorithm, generate, tag in (
        ("ed25519-sha256", dkim.generate_ed25519_key, "e"),
        ("rsa-sha256", dkim.generate_rsa_key, "r"),
    ):
        pem = generate()
        key_id = uuid7()
        made.append(
            DkimKey(
                id=key_id,
                tenant_id=tenant_id,
                domain_id=domain_id,
                selector=f"py{tag}{stamp}",
                algorithm=algorithm,
                private_key=encrypt_secret(
                    kek, pem, tenant_id=tenant_id, purpose=dkim_purpose(key_id)
                ),
                public_record=dkim.public_record(pem),
                state="published",
            )
        )
    return made


def dkim_purpose(key_id: uuid.UUID) -> str:
    """Associated data of a DKIM key's blob: the row's id too, so blobs cannot be swapped."""
    return f"{DKIM_PURPOSE}:{key_id}"


async def create_domain(
    session: AsyncSession,
    tenant_id: TenantId,
    *,
    name: str,
    return_path: str,
    options: DomainSettings,
    kek: bytes,
    policy: DnsPolicy,
    now: datetime,
) -> DomainView:
    """Add a domain with a fresh Ed25519 and RSA-2048 key pair. Raises ValidationFailed."""
    ascii_name = normalize_domain(name)
    label = validate_subdomain_label(return_path, field="custom_return_path")
    tracking = (
        validate_subdomain_label(options.tracking_subdomain, field="tracking_subdomain")
        if options.tracking_subdomain
        else None
    )
    taken = await session.scalar(
        select(Domain.id).where(Domain.tenant_id == tenant_id, Domain.name == ascii_name)
    )
    if taken is not None:
        msg = f"The domain {ascii_name} has already been added to this organization."
        raise ValidationFailed(msg)
    domain = Domain(
        id=uuid7(),
        tenant_id=tenant_id,
        name=ascii_name,
        status=DomainStatus.NOT_STARTED,
        return_path=label,
        open_tracking=options.open_tracking,
        click_tracking=options.click_tracking,
        tls=options.tls,
        tracking_subdomain=tracking,
        record_statuses={},
    )
    keys = _new_keys(tenant_id, domain.id, kek, now)
    session.add(domain)
    await session.flush()
    session.add_all(keys)
    await session.flush()
    await session.refresh(domain)
    await _event(session, domain, EventType.DOMAIN_CREATED)
    return _view(domain, keys, policy)


async def _event(session: AsyncSession, domain: Domain, kind: EventType) -> None:
    await record_events(
        session,
        [
            NewEvent(
                tenant_id=TenantId(domain.tenant_id),
                type=kind,
                data={"id": str(domain.id), "name": domain.name, "status": domain.status},
            )
        ],
    )


async def get_domain(
    session: AsyncSession, tenant_id: TenantId, domain_id: str, *, policy: DnsPolicy
) -> DomainView:
    domain = await _require(session, tenant_id, domain_id)
    return _view(domain, await _keys(session, domain), policy)


async def list_domains(
    session: AsyncSession, tenant_id: TenantId, *, page: PageRequest, policy: DnsPolicy
) -> Page[DomainView]:
    result = await fetch_page(
        session, select(Domain).where(Domain.tenant_id == tenant_id), Domain.id, page
    )
    keys: dict[uuid.UUID, list[DkimKey]] = {d.id: [] for d in result.items}
    if keys:  # one query for the page's keys, not one per domain
        rows = await session.scalars(
            select(DkimKey).where(DkimKey.tenant_id == tenant_id, DkimKey.domain_id.in_(list(keys)))
        )
        for key in rows:
            keys[key.domain_id].append(key)
    views = [_view(d, keys[d.id], policy) for d in result.items]
    return Page(items=views, has_more=result.has_more)


async def update_domain(
    session: AsyncSession,
    tenant_id: TenantId,
    domain_id: str,
    *,
    changes: Mapping[str, object],
    policy: DnsPolicy,
) -> DomainView:
    """Change tracking and TLS options. Raises NotFound, ValidationFailed."""
    domain = await _require(session, tenant_id, domain_id)
    values = dict(changes)
    if values.get("tracking_subdomain"):
        values["tracking_subdomain"] = validate_subdomain_label(
            str(values["tracking_subdomain"]), field="tracking_subdomain"
        )
    if values:
        await session.execute(
            update(Domain).where(Domain.id == domain.id).values(**values, updated_at=func.now())
        )
        await session.refresh(domain)
    return _view(domain, await _keys(session, domain), policy)


async def delete_domain(session: AsyncSession, tenant_id: TenantId, domain_id: str) -> uuid.UUID:
    domain = await _require(session, tenant_id, domain_id)
    await _event(session, domain, EventType.DOMAIN_DELETED)
    await session.execute(delete(Domain).where(Domain.id == domain.id))
    return domain.id


async def expected_for(
    session: AsyncSession, tenant_id: TenantId, domain_id: str, *, policy: DnsPolicy
) -> list[ExpectedRecord]:
    """The records a verification must look up (raises NotFound)."""
    domain = await _require(session, tenant_id, domain_id)
    return _expected(domain, await _keys(session, domain), policy)


def next_check(status: DomainStatus, *, now: datetime, started: datetime) -> datetime | None:
    """When to look at DNS again (pure); None once the 72-hour window is over."""
    if status is DomainStatus.VERIFIED:
        return now + _VERIFIED_RECHECK
    if status is DomainStatus.TEMPORARY_FAILURE:
        return now + _TEMPORARY_RECHECK
    elapsed = now - started
    delay = next((d for limit, d in _PENDING_BACKOFF if elapsed < limit), _PENDING_LATE)
    if elapsed + delay > VERIFICATION_WINDOW:
        return None  # the verification window is over: stop until the user asks again
    return now + delay


async def record_check(
    session: AsyncSession,
    tenant_id: TenantId,
    domain_id: str,
    *,
    seen: Mapping[str, Seen],
    policy: DnsPolicy,
    now: datetime,
    restart: bool = False,
) -> DomainView:
    """Store what DNS showed; activates DKIM keys whose records verified; writes
    ``domain.updated`` when the status changes. ``restart`` (a user's verify request) opens a
    new 72-hour window."""
    domain = await _require(session, tenant_id, domain_id)
    keys = await _keys(session, domain)
    records = _expected(domain, keys, policy)
    started = (
        now if restart or domain.verification_started_at is None else domain.verification_started_at
    )
    expired = now - started >= VERIFICATION_WINDOW
    statuses = {
        r.key: record_status(seen.get(r.key, Seen.MISSING), expired=expired) for r in records
    }
    status = domain_status(records, statuses, started_at=started, now=now)
    previous = domain.status
    await session.execute(
        update(Domain)
        .where(Domain.id == domain.id)
        .values(
            status=status,
            record_statuses={k: v.value for k, v in statuses.items()},
            verification_started_at=started,
            last_checked_at=now,
            next_check_at=next_check(status, now=now, started=started),
            updated_at=func.now(),
        )
    )
    await _activate_verified_keys(session, keys, statuses, now)
    await session.refresh(domain)
    if previous != status:
        await _event(session, domain, EventType.DOMAIN_UPDATED)
    return _view(domain, await _keys(session, domain), policy)


async def _activate_verified_keys(
    session: AsyncSession,
    keys: Sequence[DkimKey],
    statuses: Mapping[str, RecordStatus],
    now: datetime,
) -> None:
    # A key signs only once its record is visible in DNS; a newer key of the same algorithm
    # that verifies retires the older one (rotation: publish, verify, switch, retire).
    verified = [k for k in keys if statuses.get(f"dkim:{k.selector}") is RecordStatus.VERIFIED]
    for key in verified:
        if key.state == "published":
            await session.execute(
                update(DkimKey).where(DkimKey.id == key.id).values(state="active", activated_at=now)
            )
            older = [
                k.id
                for k in keys
                if k.algorithm == key.algorithm and k.state == "active" and k.id != key.id
            ]
            if older:
                await session.execute(
                    update(DkimKey)
                    .where(DkimKey.id.in_(older))
                    .values(state="retired", retired_at=now)
                )


async def rotate_dkim_keys(
    session: AsyncSession,
    tenant_id: TenantId,
    domain_id: str,
    *,
    kek: bytes,
    policy: DnsPolicy,
    now: datetime,
) -> DomainView:
    """Publish a new key pair beside the current one; it signs once its records verify."""
    domain = await _require(session, tenant_id, domain_id)
    session.add_all(_new_keys(tenant_id, domain.id, kek, now))
    await session.flush()
    await session.execute(
        update(Domain)
        .where(Domain.id == domain.id)
        .values(next_check_at=now, updated_at=func.now())
    )
    return _view(domain, await _keys(session, domain), policy)


async def due_for_check(
    session: AsyncSession, *, now: datetime, limit: int = 50
) -> list[tuple[TenantId, uuid.UUID]]:
    """Domains whose next check is due (session: a system_tx)."""
    rows = await session.execute(
        select(Domain.tenant_id, Domain.id)
        .where(Domain.next_check_at.is_not(None), Domain.next_check_at <= now)
        .order_by(Domain.next_check_at)
        .limit(limit)
    )
    return [(TenantId(t), d) for t, d in rows]
