"""DNS lookups for domain verification, through the injected resolver."""

from __future__ import annotations

import dns.asyncresolver
import dns.exception
import dns.resolver

from postyard.domains.types import ExpectedRecord


async def answers_for(
    resolver: dns.asyncresolver.Resolver, record: ExpectedRecord
) -> list[str] | None:
    """What DNS says for ``record``: TXT strings (each record's strings joined, RFC 7208
    §3.3), MX exchanges or CNAME targets; [] when there is no such record; None when DNS
    could not answer (timeout, SERVFAIL): a temporary failure, not a verdict."""
    try:
        answer = await resolver.resolve(record.fqdn, record.type, raise_on_no_answer=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException:
        return None
    if answer.rrset is None:
        return []
    values: list[str] = []
    for rdata in answer.rrset:
        if record.type == "TXT":
            values.append(b"".join(rdata.strings).decode("utf-8", errors="replace"))
        elif record.type == "MX":
            values.append(rdata.exchange.to_text())
        else:
            values.append(rdata.target.to_text())
    return values
