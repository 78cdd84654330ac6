"""Where mail for a domain goes: MX lookup with the RFC 5321 §5.1 and RFC 7505 rules.

DNS goes through an injected ``dns.asyncresolver.Resolver`` (built once at start-up by
``make_resolver``) so that tests point it at a local DNS server; nothing here reads
``/etc/hosts``. Lookups never raise for DNS failures: they return a ``ResolutionFailure``
whose kind says whether retrying can help.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
from dns.rdtypes.ANY.MX import MX

from postyard.delivery.outcome import OutcomeKind


@dataclass(frozen=True, slots=True)
class Destination:
    """The hosts to try for ``domain``, most preferred first (never empty)."""

    domain: str
    hosts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ResolutionFailure:
    """Why mail for a domain cannot go anywhere now: DEFERRED (try later) or BOUNCED (never)."""

    kind: OutcomeKind
    detail: str


def make_resolver(
    nameservers: list[str],
    *,
    timeout: float = 5.0,
    lifetime: float = 15.0,
    cache: bool = True,
) -> dns.asyncresolver.Resolver:
    """A resolver asking ``nameservers`` ("host:port", "[v6]:port" or a bare IP for port 53).

    An empty list gives the system resolver configuration (resolv.conf). Answers are cached
    for their TTL unless ``cache`` is False (domain verification: a user who just published
    a record and asks to verify must not get yesterday's answer). Raises ValueError for a
    nameserver that is not an IP address with an optional port, and
    dns.resolver.NoResolverConfiguration when the system has none.
    """
    if not nameservers:
        resolver = dns.asyncresolver.Resolver()
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [_parse_nameserver(entry) for entry in nameservers]
    resolver.timeout = timeout
    resolver.lifetime = lifetime
    if cache:
        resolver.cache = dns.resolver.LRUCache()
    return resolver


def _parse_nameserver(entry: str) -> dns.nameserver.Nameserver:
    host, port = entry.strip(), "53"
    if host.startswith("["):
        host, _, tail = host[1:].partition("]")
        if tail:
            port = tail.removeprefix(":")
    elif host.count(":") == 1:
        host, port = host.split(":")
    ipaddress.ip_address(host)  # raises ValueError: dnspython wants addresses, not names
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad nameserver port in {entry!r}")
    return dns.nameserver.Do53Nameserver(host, int(port))


async def resolve_destination(
    domain: str, resolver: dns.asyncresolver.Resolver
) -> Destination | ResolutionFailure:
    """Resolve the hosts that receive mail for ``domain``.

    - An address literal ("[192.0.2.1]", "[IPv6:2001:db8::1]") is its own host (§4.1.3).
    - MX records give the hosts in preference order, ties broken by name so that the order
      is deterministic; duplicates are dropped.
    - A null MX (RFC 7505 §3: exchange ".") is not a host; a domain left without hosts
      because of it does not accept mail: BOUNCED.
    - No MX records: the domain itself is the host if it has an A or AAAA record (the
      implicit MX of RFC 5321 §5.1); if it has neither, BOUNCED.
    - NXDOMAIN or a syntactically invalid domain: BOUNCED.
    - SERVFAIL, timeouts, unreachable nameservers: DEFERRED.

    Never raises for DNS failures.
    """
    if domain.startswith("["):
        literal = _address_literal(domain)
        if literal is None:
            return ResolutionFailure(OutcomeKind.BOUNCED, f"invalid address literal {domain}")
        return Destination(domain=domain, hosts=(literal,))
    try:
        name = dns.name.from_text(domain)
    except dns.exception.DNSException as exc:
        return ResolutionFailure(OutcomeKind.BOUNCED, f"invalid domain {domain!r}: {exc}")
    try:
        answer = await resolver.resolve(name, dns.rdatatype.MX)
    except dns.resolver.NXDOMAIN:
        return ResolutionFailure(OutcomeKind.BOUNCED, f"domain {domain} does not exist")
    except dns.resolver.NoAnswer:
        return await _implicit_mx(domain, name, resolver)
    except dns.exception.DNSException as exc:
        return _temporary(domain, "MX", exc)

    records = sorted(
        (rdata for rdata in answer if isinstance(rdata, MX)),
        key=lambda mx: (mx.preference, mx.exchange.to_text().lower()),
    )
    hosts: list[str] = []
    for record in records:
        if record.exchange == dns.name.root:
            continue  # RFC 7505 §3: "." is the null MX, never a host to connect to
        host = _host_text(record.exchange)
        if host not in hosts:
            hosts.append(host)
    if not hosts:
        return ResolutionFailure(
            OutcomeKind.BOUNCED, f"domain {domain} does not accept mail (null MX, RFC 7505)"
        )
    return Destination(domain=domain, hosts=tuple(hosts))


async def _implicit_mx(
    domain: str, name: dns.name.Name, resolver: dns.asyncresolver.Resolver
) -> Destination | ResolutionFailure:
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        try:
            await resolver.resolve(name, rdtype)
        except dns.resolver.NXDOMAIN:
            return ResolutionFailure(OutcomeKind.BOUNCED, f"domain {domain} does not exist")
        except dns.resolver.NoAnswer:
            continue
        except dns.exception.DNSException as exc:
            return _temporary(domain, rdtype.name, exc)
        return Destination(domain=domain, hosts=(_host_text(name),))
    return ResolutionFailure(OutcomeKind.BOUNCED, f"domain {domain} has no MX, A or AAAA records")


async def resolve_host_addresses(host: str, resolver: dns.asyncresolver.Resolver) -> list[str]:
    """The IP addresses of a mail host: its A records, then its AAAA records.

    An IP address is returned as is. A lookup that fails (NXDOMAIN, SERVFAIL, timeout)
    contributes nothing, so an empty list means "no usable address now"; the caller moves on
    to the next host. Never raises for DNS failures.
    """
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [host]
    addresses: list[str] = []
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        try:
            answer = await resolver.resolve(dns.name.from_text(host), rdtype)
        except dns.exception.DNSException:
            continue
        addresses.extend(rdata.to_text() for rdata in answer)
    return addresses


def _address_literal(domain: str) -> str | None:
    if not domain.endswith("]"):
        return None
    inner = domain[1:-1]
    if inner[:5].lower() == "ipv6:":
        inner = inner[5:]
    try:
        return str(ipaddress.ip_address(inner))
    except ValueError:
        return None


def _host_text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def _temporary(domain: str, rdtype: str, exc: dns.exception.DNSException) -> ResolutionFailure:
    reason = "timed out" if isinstance(exc, dns.exception.Timeout) else "failed"
    return ResolutionFailure(OutcomeKind.DEFERRED, f"{rdtype} lookup for {domain} {reason}: {exc}")
