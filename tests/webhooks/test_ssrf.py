"""The address policy and URL validation: every spelling of an internal address is refused,
unless inside a network the operator allows."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import pytest

from postyard.webhooks.ssrf import AddressPolicy, InvalidWebhookUrl, parse_webhook_url

OPEN = AddressPolicy()
LOOPBACK_ALLOWED = AddressPolicy([ip_network("127.0.0.0/8")])
LAN_ALLOWED = AddressPolicy([ip_network("10.0.0.0/8"), ip_network("fd00:1::/64")])


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("100.64.0.1", "CGNAT"),
        ("100.127.255.255", "CGNAT"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("0.1.2.3", "this network"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.10", "documentation"),
        ("198.51.100.1", "documentation"),
        ("203.0.113.9", "documentation"),
        ("2001:db8::1", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("198.19.255.255", "benchmarking"),
        ("169.254.169.254", "metadata"),
        ("169.254.170.2", "metadata"),
        ("100.100.100.200", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("192.0.0.192", "IETF"),
        ("fec0::1", "site-local"),
        ("::ffff:127.0.0.1", "IPv4-mapped form of 127.0.0.1, loopback"),
        ("::ffff:10.0.0.5", "IPv4-mapped form of 10.0.0.5, a private"),
        ("::ffff:169.254.169.254", "metadata"),
        ("::ffff:0:7f00:1", "IPv4-translated form of 127.0.0.1"),
        ("::127.0.0.1", "IPv4-compatible form of 127.0.0.1"),
        ("64:ff9b::7f00:1", "NAT64 form of 127.0.0.1"),
        ("64:ff9b::a00:5", "NAT64 form of 10.0.0.5"),
        ("64:ff9b:1::1", "local-use NAT64"),
        ("2002:7f00:1::1", "6to4 form of 127.0.0.1"),
        ("2002:a9fe:a9fe::", "6to4 form of 169.254.169.254"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        ("100::1", "discard"),
    ],
)
def test_internal_addresses_are_refused(address: str, reason: str) -> None:
    refusal = OPEN.check(ip_address(address))
    assert refusal is not None
    assert reason in refusal


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert OPEN.check(ip_address(address)) is None


def test_allowed_networks_open_exactly_their_ranges() -> None:
    assert LOOPBACK_ALLOWED.check(IPv4Address("127.0.0.1")) is None
    assert LOOPBACK_ALLOWED.check(IPv6Address("::ffff:127.0.0.1")) is None  # same destination
    assert LOOPBACK_ALLOWED.check(IPv6Address("::1")) == "loopback"  # not in 127.0.0.0/8
    assert LOOPBACK_ALLOWED.check(IPv4Address("10.0.0.1")) is not None
    assert LAN_ALLOWED.check(IPv4Address("10.1.2.3")) is None
    assert LAN_ALLOWED.check(IPv6Address("fd00:1::5")) is None
    assert LAN_ALLOWED.check(IPv6Address("fd00:2::5")) is not None
    assert LAN_ALLOWED.check(IPv4Address("192.168.0.1")) is not None
    assert LAN_ALLOWED.is_allowed_network(IPv4Address("10.9.9.9"))
    assert not LAN_ALLOWED.is_allowed_network(IPv4Address("8.8.8.8"))
    assert not OPEN.is_allowed_network(IPv4Address("8.8.8.8"))


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://2130706433/", "127.0.0.1"),
        ("https://0177.0.0.1/", "127.0.0.1"),
        ("https://0x7f.0.0.1/", "127.0.0.1"),
        ("https://0X7F000001/", "127.0.0.1"),
        ("https://127.1/", "127.0.0.1"),
        ("https://127.0.1/", "127.0.0.1"),
        ("https://0x7f.1/", "127.0.0.1"),
        ("https://017700000001/", "127.0.0.1"),
        ("https://127.0.0.1./", "127.0.0.1"),
        ("https://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11/", "127.0.0.1"),
        ("https://[::1]/", "::1"),
        ("https://[0:0:0:0:0:0:0:1]/", "::1"),
        ("https://[::ffff:127.0.0.1]/", "::ffff:7f00:1"),
        ("https://[::1%25lo]/", "::1"),
        ("https://localhost/", "localhost"),
        ("https://LOCALHOST./", "localhost"),
        ("https://hooks.localhost/", "hooks.localhost"),
        ("https://localhost.localdomain/", "localhost.localdomain"),
        ("https://loc\u00adalhost/", "localhost"),  # IDNA maps the soft hyphen to nothing
        ("https://0.0.0.0/", "0.0.0.0"),
        ("https://0/", "0.0.0.0"),
        ("https://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("https://[fd00:ec2::254]/", "fd00:ec2::254"),
        ("https://10.0.0.5:8443/", "10.0.0.5"),
    ],
)
def test_every_spelling_of_an_internal_host_is_refused(url: str, host: str) -> None:
    with pytest.raises(InvalidWebhookUrl, match="is not allowed"):
        parse_webhook_url(url, OPEN)
    # With the range allowed, the same URL parses, which shows what it was normalised to.
    allow_all = AddressPolicy([ip_network("0.0.0.0/0"), ip_network("::/0")])
    try:
        parsed = parse_webhook_url(url, allow_all)
    except InvalidWebhookUrl as exc:
        assert "zone" in str(exc)
    else:
        assert parsed.host == host


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/", "https"),
        ("javascript:alert(1)", "https"),
        ("//example.com/", "https"),
        ("http://example.com/hook", "https"),
        ("https://user:pw@example.com/", "user name"),
        ("https://example.com@10.0.0.1/", "user name"),
        ("https:///path", "no host"),
        ("https://:443/", "no host"),
        ("https://example.com:0/", "port"),
        ("https://example.com:65536/", "port"),
        ("https://example.com:-1/", "port"),
        ("https://example.com:\uff18\uff10/", "port"),  # full-width digits
        ("https://example.com/" + "a" * 2048, "2048"),
        ("https://example.com/a b", "whitespace"),
        ("https://example.com/\r\nHost: evil", "whitespace"),
        ("https://example.com\\@10.0.0.1/", "backslash"),
        ("https://1.2.3.999/", "IPv4"),
        ("https://1.2.3.4.5/", "IPv4"),
        ("https://0x1g.0.0.1/", "IPv4"),
        ("https://1_0.0.0.1/", "IPv4"),
        ("https://%31%32%37.0.0.1/", "IPv4"),
        ("https://ex..ample.com/", "host name"),
        ("https://exa$mple.com/", "host name"),
        ("https://[fe80::1/", "URL"),
        ("https://[1.2.3.4]/", "URL"),
        ("https://[::g]/", "IPv6"),
        ("https://::1/", "brackets"),
        ("https://metadata.google.internal/computeMetadata/v1/", "metadata"),
    ],
)
def test_malformed_or_forbidden_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(InvalidWebhookUrl, match=message):
        parse_webhook_url(url, OPEN)


def test_public_urls_are_normalised() -> None:
    parsed = parse_webhook_url("HTTPS://Hooks.Example.COM./in/%7Eme?x=1&y=é#fragment", OPEN)
    assert (parsed.scheme, parsed.host, parsed.ip, parsed.port) == (
        "https",
        "hooks.example.com",
        None,
        443,
    )
    assert parsed.target == "/in/%7Eme?x=1&y=%C3%A9"
    assert parsed.host_header == "hooks.example.com"
    assert parsed.tls
    assert parse_webhook_url("https://bücher.example/", OPEN).host == "xn--bcher-kva.example"
    literal = parse_webhook_url("https://[2606:4700::1]:8443", OPEN)
    assert (literal.host, literal.ip, literal.target) == ("2606:4700::1", literal.ip, "/")
    assert literal.host_header == "[2606:4700::1]:8443"


def test_http_only_reaches_allowed_networks() -> None:
    with pytest.raises(InvalidWebhookUrl, match="https"):
        parse_webhook_url("http://8.8.8.8/", LOOPBACK_ALLOWED)
    with pytest.raises(InvalidWebhookUrl, match="https"):
        parse_webhook_url("http://hooks.example/", OPEN)
    literal = parse_webhook_url("http://127.0.0.1:8080/hook", LOOPBACK_ALLOWED)
    assert (literal.tls, literal.host_header) == (False, "127.0.0.1:8080")
    assert parse_webhook_url("http://localhost/", LOOPBACK_ALLOWED).ip == IPv4Address("127.0.0.1")
    # A name: allowed for now; its addresses decide (check_destination).
    named = parse_webhook_url("http://hooks.lan/", LAN_ALLOWED)
    assert named.ip is None
    assert LAN_ALLOWED.check_destination(named, [IPv4Address("10.0.0.7")]) is None
    refusal = LAN_ALLOWED.check_destination(named, [IPv4Address("10.0.0.7"), ip_address("8.8.8.8")])
    assert refusal is not None
    assert "http is only allowed" in refusal


def test_a_destination_is_refused_when_any_address_is() -> None:
    url = parse_webhook_url("https://hooks.example/", OPEN)
    assert OPEN.check_destination(url, [ip_address("93.184.216.34")]) is None
    mixed = [ip_address("93.184.216.34"), ip_address("10.0.0.5")]
    assert OPEN.check_destination(url, mixed) == (
        "hooks.example resolves to 10.0.0.5, a private network (RFC 1918)"
    )
    assert OPEN.check_destination(url, []) == "hooks.example has no addresses"
