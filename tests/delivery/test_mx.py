"""MX resolution against a DNS server on loopback."""

from __future__ import annotations

import dns.nameserver
import pytest

from postyard.delivery.mx import (
    Destination,
    ResolutionFailure,
    make_resolver,
    resolve_destination,
    resolve_host_addresses,
)
from postyard.delivery.outcome import OutcomeKind
from tests.support.dns_server import AAAA, MX, NULL_MX, A, DnsServer, Record

ZONE: dict[str, list[Record]] = {
    "example.test": [
        MX(20, "mx-b.example.test"),
        MX(10, "mx2.example.test"),
        MX(20, "mx-a.example.test"),
    ],
    "dup.test": [MX(10, "mx.dup.test"), MX(20, "MX.dup.test.")],
    "nomail.test": [NULL_MX],
    "implicit.test": [A("127.0.0.1")],
    "implicit6.test": [AAAA("::1")],
    "empty.test": [],
    "mx1.test": [A("127.0.0.1"), A("127.0.0.3"), AAAA("::1")],
}


async def test_mx_hosts_come_in_preference_order_with_ties_by_name() -> None:
    async with DnsServer(ZONE) as server:
        result = await resolve_destination("example.test", make_resolver([server.nameserver]))
    assert result == Destination(
        "example.test", ("mx2.example.test", "mx-a.example.test", "mx-b.example.test")
    )


async def test_duplicate_hosts_are_tried_once() -> None:
    async with DnsServer(ZONE) as server:
        result = await resolve_destination("dup.test", make_resolver([server.nameserver]))
    assert result == Destination("dup.test", ("mx.dup.test",))


async def test_null_mx_is_a_permanent_failure() -> None:
    async with DnsServer(ZONE) as server:
        result = await resolve_destination("nomail.test", make_resolver([server.nameserver]))
    assert isinstance(result, ResolutionFailure)
    assert result.kind is OutcomeKind.BOUNCED
    assert "null MX" in result.detail


async def test_nxdomain_is_a_permanent_failure() -> None:
    async with DnsServer(ZONE) as server:
        result = await resolve_destination("nowhere.test", make_resolver([server.nameserver]))
    assert isinstance(result, ResolutionFailure)
    assert result.kind is OutcomeKind.BOUNCED
    assert "does not exist" in result.detail


async def test_servfail_is_a_temporary_failure() -> None:
    async with DnsServer(ZONE, servfail=["broken.test"]) as server:
        result = await resolve_destination("broken.test", make_resolver([server.nameserver]))
    assert isinstance(result, ResolutionFailure)
    assert result.kind is OutcomeKind.DEFERRED


@pytest.mark.parametrize("domain", ["implicit.test", "implicit6.test"])
async def test_without_mx_the_domain_is_its_own_host(domain: str) -> None:
    async with DnsServer(ZONE) as server:
        result = await resolve_destination(domain, make_resolver([server.nameserver]))
    assert result == Destination(domain, (domain,))


async def test_without_mx_or_address_mail_cannot_go_anywhere() -> None:
    async with DnsServer(ZONE) as server:
        result = await resolve_destination("empty.test", make_resolver([server.nameserver]))
    assert isinstance(result, ResolutionFailure)
    assert result.kind is OutcomeKind.BOUNCED


async def test_address_literals_need_no_dns() -> None:
    resolver = make_resolver(["127.0.0.1:9"])  # never asked
    assert await resolve_destination("[127.0.0.1]", resolver) == Destination(
        "[127.0.0.1]", ("127.0.0.1",)
    )
    assert await resolve_destination("[IPv6:::1]", resolver) == Destination("[IPv6:::1]", ("::1",))
    bad = await resolve_destination("[not-an-ip]", resolver)
    assert isinstance(bad, ResolutionFailure)
    assert bad.kind is OutcomeKind.BOUNCED


async def test_host_addresses_are_a_then_aaaa() -> None:
    async with DnsServer(ZONE) as server:
        resolver = make_resolver([server.nameserver])
        assert await resolve_host_addresses("mx1.test", resolver) == [
            "127.0.0.1",
            "127.0.0.3",
            "::1",
        ]
        assert await resolve_host_addresses("missing.test", resolver) == []
        assert await resolve_host_addresses("192.0.2.7", resolver) == ["192.0.2.7"]
    assert ("mx1.test", "A") in server.queries
    assert ("mx1.test", "AAAA") in server.queries


def test_nameservers_are_parsed_with_ports() -> None:
    resolver = make_resolver(["127.0.0.1:5353", "[::1]:5354", "192.0.2.1"])
    servers = [(ns.address, ns.port) for ns in resolver.nameservers]  # type: ignore[union-attr]
    assert servers == [("127.0.0.1", 5353), ("::1", 5354), ("192.0.2.1", 53)]
    assert all(isinstance(ns, dns.nameserver.Do53Nameserver) for ns in resolver.nameservers)
    with pytest.raises(ValueError):
        make_resolver(["dns.example:53"])
    with pytest.raises(ValueError):
        make_resolver(["127.0.0.1:99999"])


async def test_the_test_server_answers_over_tcp_too() -> None:
    async with DnsServer(ZONE) as server:
        resolver = make_resolver([server.nameserver])
        answer = await resolver.resolve("mx1.test", "A", tcp=True)
    assert sorted(rdata.to_text() for rdata in answer) == ["127.0.0.1", "127.0.0.3"]
