"""One verification of a domain: load what to check, ask DNS, store the verdict. The adapter
(route, CLI, worker job) calls this; DNS happens between two short transactions."""

from __future__ import annotations

import asyncio
from datetime import datetime

import dns.asyncresolver

from postyard.core.db import Database, TenantId
from postyard.domains import service
from postyard.domains.lookup import answers_for
from postyard.domains.records import Seen, judge
from postyard.domains.types import DnsPolicy, DomainView


async def verify_domain(
    db: Database,
    resolver: dns.asyncresolver.Resolver,
    tenant_id: TenantId,
    domain_id: str,
    *,
    policy: DnsPolicy,
    now: datetime,
    restart: bool,
) -> DomainView:
    """Check every record now and store the result. Raises NotFound."""
    async with db.tenant_tx(tenant_id) as session:
        records = await service.expected_for(session, tenant_id, domain_id, policy=policy)
    answers = await asyncio.gather(*(answers_for(resolver, r) for r in records))
    seen: dict[str, Seen] = {r.key: judge(r, a) for r, a in zip(records, answers, strict=True)}
    async with db.tenant_tx(tenant_id) as session:
        return await service.record_check(
            session, tenant_id, domain_id, seen=seen, policy=policy, now=now, restart=restart
        )


async def verify_due_domains(
    db: Database, resolver: dns.asyncresolver.Resolver, *, policy: DnsPolicy, now: datetime
) -> int:
    """The worker's job: re-check every domain whose next check is due. Returns how many."""
    async with db.system_tx(reason="domain verification: find due domains") as session:
        due = await service.due_for_check(session, now=now)
    for tenant_id, domain_id in due:
        await verify_domain(
            db, resolver, tenant_id, str(domain_id), policy=policy, now=now, restart=False
        )
    return len(due)
