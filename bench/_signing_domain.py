"""A verified sending domain with a DKIM key, for benchmarks that deliver signed mail.

Postyard signs a message only when its From domain is verified, and verifying asks DNS. The
benchmark serves the records itself: the DNS server of the test suite
(``tests/support/dns_server.py``) runs on loopback in the benchmark's event loop, Postyard
is pointed at it with ``POSTYARD_DNS__NAMESERVERS``, and the domain goes through the same
commands an operator uses: ``postyard domains add``, then ``postyard domains verify`` once
the records it printed are published.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from _postyard import postyard_cli
from _summary import REPOSITORY

if str(REPOSITORY) not in sys.path:  # the test suite's support package lives at the root
    sys.path.append(str(REPOSITORY))

from tests.support.dns_server import CNAME, MX, TXT, DnsServer

__all__ = ["DnsServer", "verified_domain"]


def _publish(dns: DnsServer, domain: str, records: list[dict[str, Any]]) -> None:
    for record in records:
        fqdn = f"{record['name']}.{domain}"
        if record["type"] == "TXT":
            dns.add(fqdn, TXT(record["value"]))
        elif record["type"] == "MX":
            dns.add(fqdn, MX(record["priority"] or 10, record["value"]))
        else:
            dns.add(fqdn, CNAME(record["value"]))


async def verified_domain(
    dns: DnsServer, env: dict[str, str], *, org: str, domain: str
) -> dict[str, Any]:
    """Add ``domain`` to ``org``, publish its records on ``dns`` and verify it; what
    ``postyard domains verify --json`` printed. Raises unless it is verified."""
    added = await asyncio.to_thread(postyard_cli, ["domains", "add", domain, "--org", org], env)
    _publish(dns, domain, added["records"])
    checked: dict[str, Any] = await asyncio.to_thread(
        postyard_cli, ["domains", "verify", added["id"], "--org", org], env
    )
    if checked["status"] != "verified":
        msg = f"{domain} did not verify against the benchmark's DNS server: {checked}"
        raise RuntimeError(msg)
    return checked
