"""Test helper: a domain added, its records published on the local DNS server, verified."""

from __future__ import annotations

from postyard.core.clock import SystemClock
from postyard.core.db import Database, TenantId
from postyard.delivery.mx import make_resolver
from postyard.domains import service as domains
from postyard.domains.types import DnsPolicy, DomainView
from postyard.domains.verification import verify_domain
from tests.support.dns_server import CNAME, MX, TXT, DnsServer


def publish_view(dns: DnsServer, view: DomainView) -> None:
    """Publish every record a domain lists, as a careful user would."""
    for record, _ in view.records:
        fqdn = f"{record.name}.{view.name}"
        if record.type == "TXT":
            dns.add(fqdn, TXT(record.value))
        elif record.type == "MX":
            dns.add(fqdn, MX(record.priority or 10, record.value))
        else:
            dns.add(fqdn, CNAME(record.value))


async def verified_domain(
    db: Database,
    dns: DnsServer,
    tenant_id: TenantId,
    name: str,
    *,
    kek: bytes,
    policy: DnsPolicy,
) -> DomainView:
    """Add ``name`` for the tenant, publish its records and verify it (asserts verified)."""
    now = SystemClock().now()
    async with db.tenant_tx(tenant_id) as session:
        view = await domains.create_domain(
            session,
            tenant_id,
            name=name,
            return_path="send",
            options=domains.DomainSettings(),
            kek=kek,
            policy=policy,
            now=now,
        )
    publish_view(dns, view)
    resolver = make_resolver([dns.nameserver], timeout=2.0, lifetime=4.0, cache=False)
    checked = await verify_domain(
        db, resolver, tenant_id, str(view.id), policy=policy, now=now, restart=True
    )
    assert checked.status.value == "verified", checked
    return checked
