"""Which addresses and URLs a webhook may reach: the pure half of SSRF protection.

Users choose webhook URLs, and the sender runs inside the operator's network, so a URL must
never reach loopback, private networks, link-local (cloud metadata services live there) or any
other non-public address, in whatever spelling: ``http://2130706433/``, ``0x7f.1``,
``[::ffff:127.0.0.1]`` and ``localhost.`` all mean 127.0.0.1. An operator opens private ranges
with ``allowed_networks`` (e.g. a receiver on the same LAN).

Plain ``http`` is allowed only to allowed networks: on the Internet a signed payload must not
travel in clear. ``parse_webhook_url`` decides what the URL alone decides; for an http URL that
names a host, the sender decides after resolving it, with ``AddressPolicy.check_destination``
(every address must then be inside an allowed network).

No I/O here; the sender resolves names once and connects to the checked address (DNS
rebinding), see ``postyard.webhooks.sender``.
"""

from __future__ import annotations

import string
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

IPAddress = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

MAX_URL_LENGTH = 2048
_DEFAULT_PORTS = {"https": 443, "http": 80}

# Order matters: the first match names the reason, so specific entries come before the
# ranges that contain them. Sources: RFC 6890 and the IANA special-purpose registries.
_REFUSED_V4: tuple[tuple[Network, str], ...] = tuple(
    (ip_network(cidr), reason)
    for cidr, reason in (
        ("0.0.0.0/32", "the unspecified address"),
        ("0.0.0.0/8", "'this network' (0.0.0.0/8)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.169.254/32", "a cloud metadata service"),
        ("169.254.170.2/32", "a cloud metadata service (ECS task credentials)"),
        ("100.100.100.200/32", "a cloud metadata service (Alibaba)"),
        ("10.0.0.0/8", "a private network (RFC 1918)"),
        ("172.16.0.0/12", "a private network (RFC 1918)"),
        ("192.168.0.0/16", "a private network (RFC 1918)"),
        ("100.64.0.0/10", "shared address space (CGNAT, RFC 6598)"),
        ("169.254.0.0/16", "link-local"),
        ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)"),
        ("192.0.2.0/24", "documentation (RFC 5737)"),
        ("198.51.100.0/24", "documentation (RFC 5737)"),
        ("203.0.113.0/24", "documentation (RFC 5737)"),
        ("192.88.99.0/24", "6to4 relay anycast (RFC 7526)"),
        ("198.18.0.0/15", "benchmarking (RFC 2544)"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved (240.0.0.0/4)"),
    )
)
_REFUSED_V6: tuple[tuple[Network, str], ...] = tuple(
    (ip_network(cidr), reason)
    for cidr, reason in (
        ("fd00:ec2::254/128", "a cloud metadata service (AWS)"),
        ("64:ff9b:1::/48", "local-use NAT64 (RFC 8215)"),
        ("100::/64", "discard-only (RFC 6666)"),
        ("2001::/32", "a Teredo tunnel (RFC 4380)"),
        ("2001:2::/48", "benchmarking (RFC 5180)"),
        ("2001:db8::/32", "documentation (RFC 3849)"),
        ("3fff::/20", "documentation (RFC 9637)"),
        ("fc00::/7", "a private network (unique local, RFC 4193)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated, RFC 3879)"),
        ("ff00::/8", "multicast"),
    )
)
_MAPPED = IPv6Network("::ffff:0:0/96")
_TRANSLATED = IPv6Network("::ffff:0:0:0/96")  # RFC 2765 SIIT
_COMPATIBLE = IPv6Network("::/96")  # RFC 4291 §2.5.5.1, deprecated
_NAT64 = IPv6Network("64:ff9b::/96")  # RFC 6052
_SIX_TO_FOUR = IPv6Network("2002::/16")  # RFC 3056

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
_METADATA_NAMES = {"metadata.google.internal", "metadata.goog", "metadata"}
_LABEL_CHARS = frozenset(string.ascii_lowercase + string.digits + "-_")
_HEX = frozenset(string.hexdigits)
# Kept as they are in the request target; anything else outside ASCII is percent-encoded.
_TARGET_SAFE = "!$&'()*+,/:;=?@[]~%"


class InvalidWebhookUrl(ValueError):
    """A webhook URL that cannot or must not be used; the message says why, for the user."""


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    """A webhook URL that passed ``parse_webhook_url``.

    ``host`` is normalised: an ASCII lower-case name without a trailing dot, or an address in
    its canonical text (no brackets, no zone). ``ip`` is the address the host denotes without
    DNS (a literal, or 127.0.0.1 for the localhost names), else None. ``target`` is the
    request target (path and query, never empty; the fragment is dropped).
    """

    scheme: str
    host: str
    ip: IPAddress | None
    port: int
    target: str

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def host_header(self) -> str:
        """The Host header (RFC 9110 §7.2): brackets for IPv6, the port unless the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


class AddressPolicy:
    """Refuses every address that is not public Internet unicast, except inside
    ``allowed_networks``. Its answers never change (it memoises them); share one per process."""

    def __init__(self, allowed_networks: Sequence[Network] = ()) -> None:
        self.allowed_networks = tuple(allowed_networks)
        self._memo: dict[IPAddress, str | None] = {}
        self._allowed_memo: dict[IPAddress, bool] = {}

    def check(self, ip: IPAddress) -> str | None:
        """None when ``ip`` may be reached, else why not (e.g. "loopback").

        An address that embeds an IPv4 address (IPv4-mapped, -translated, -compatible, NAT64,
        6to4) is judged by the embedded address, which is where the packets end up.
        """
        if ip in self._memo:
            return self._memo[ip]
        reason = self._check(ip)
        if len(self._memo) < 65536:  # bounded: a memo, not a record of every address seen
            self._memo[ip] = reason
        return reason

    def is_allowed_network(self, ip: IPAddress) -> bool:
        """True when ``ip`` (or the IPv4 address it embeds) is inside an allowed network."""
        if not self.allowed_networks:
            return False
        allowed = self._allowed_memo.get(ip)
        if allowed is None:
            allowed = self._is_allowed_network(ip)
            if len(self._allowed_memo) < 65536:  # bounded, as ``check``'s memo
                self._allowed_memo[ip] = allowed
        return allowed

    def _is_allowed_network(self, ip: IPAddress) -> bool:
        ip = _without_zone(ip)
        embedded = _embedded_ipv4(ip)
        candidates = (ip,) if embedded is None else (ip, embedded[1])
        return any(
            address in network for network in self.allowed_networks for address in candidates
        )

    def check_destination(self, url: ParsedUrl, addresses: Sequence[IPAddress]) -> str | None:
        """None when the sender may connect to ``addresses``, the resolution of ``url.host``;
        else why not. Every address is judged, not only the one used: a name answering with a
        public and a private address is refused, as one meant to reach the private one."""
        if not addresses:
            return f"{url.host} has no addresses"
        for ip in addresses:
            reason = self.check(ip)
            if reason is not None:
                return f"{url.host} resolves to {ip}, {reason}"
            if not url.tls and not self.is_allowed_network(ip):
                return f"http is only allowed to allowed networks; {url.host} resolves to {ip}"
        return None

    def _check(self, ip: IPAddress) -> str | None:
        ip = _without_zone(ip)
        if self.is_allowed_network(ip):
            return None
        if isinstance(ip, IPv6Address):
            if ip == IPv6Address(0):
                return "the unspecified address"
            if ip == IPv6Address(1):
                return "loopback"
            embedded = _embedded_ipv4(ip)
            if embedded is not None:
                form, v4 = embedded
                reason = _refusal(v4)
                return None if reason is None else f"{form} of {v4}, {reason}"
        return _refusal(ip)


def parse_webhook_url(url: str, policy: AddressPolicy) -> ParsedUrl:
    """Validate and normalise a webhook URL; what DNS decides is left to the sender.

    Accepted: https to any host and port 1-65535; http only to an address literal inside an
    allowed network, or to a name while some network is allowed (its addresses are checked
    after resolution). Refused: other schemes, user names or passwords, a missing host, URLs
    over 2048 characters, whitespace, control characters or backslashes anywhere, numeric
    hosts that are not an IPv4 address, names of cloud metadata services, and address
    literals (in any spelling, the localhost names included) that ``policy`` refuses.

    Raises InvalidWebhookUrl with a message for the user.
    """
    if len(url) > MAX_URL_LENGTH:
        raise InvalidWebhookUrl(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(char <= " " or char in "\x7f\\" for char in url):
        raise InvalidWebhookUrl("the URL contains whitespace, control characters or backslashes")
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:
        raise InvalidWebhookUrl(f"not a valid URL: {exc}") from None
    if parts.scheme not in _DEFAULT_PORTS:
        raise InvalidWebhookUrl("the URL must start with https://")
    if "@" in parts.netloc:
        raise InvalidWebhookUrl("the URL must not contain a user name or password")
    raw_host, port = _split_authority(parts.netloc, _DEFAULT_PORTS[parts.scheme])
    host, ip = _normalise_host(raw_host)
    if ip is not None:
        reason = policy.check(ip)
        if reason is not None:
            raise InvalidWebhookUrl(f"{raw_host} is not allowed: {reason}")
        if isinstance(ip, IPv6Address) and ip.scope_id:
            raise InvalidWebhookUrl("IPv6 zone identifiers are not allowed")
    plaintext_possible = (
        policy.is_allowed_network(ip) if ip is not None else bool(policy.allowed_networks)
    )
    if parts.scheme == "http" and not plaintext_possible:
        raise InvalidWebhookUrl("the URL must use https (http only reaches allowed networks)")
    path = urllib.parse.quote(parts.path or "/", safe=_TARGET_SAFE)
    query = urllib.parse.quote(parts.query, safe=_TARGET_SAFE)
    return ParsedUrl(parts.scheme, host, ip, port, f"{path}?{query}" if query else path)


def _split_authority(netloc: str, default_port: int) -> tuple[str, int]:
    if netloc.startswith("["):
        host, bracket, rest = netloc[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise InvalidWebhookUrl("the URL has a malformed [IPv6] host")
        host, port_text = f"[{host}]", rest[1:]
    elif netloc.count(":") > 1:
        raise InvalidWebhookUrl("an IPv6 host must be written in brackets")
    else:
        host, _, port_text = netloc.partition(":")
    if not host or host == "[]":
        raise InvalidWebhookUrl("the URL has no host")
    if not port_text:
        return host, default_port
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise InvalidWebhookUrl("the port must be a number from 1 to 65535")
    return host, int(port_text)


def _normalise_host(raw: str) -> tuple[str, IPAddress | None]:
    if raw.startswith("["):
        address, percent, zone = raw[1:-1].partition("%")
        try:
            # RFC 6874 writes the zone as "%25zone"; its text matters only to refuse it later.
            ip = IPv6Address(f"{address}%{zone.replace('%', '') or 'zone'}" if percent else address)
        except ValueError:
            raise InvalidWebhookUrl(f"{raw} is not an IPv6 address") from None
        return _without_zone(ip).compressed, ip
    try:
        # IDNA first: it maps full-width digits and dots (U+FF10-FF19, U+FF0E, U+3002) to
        # ASCII, so they reach the numeric check below.
        host = raw.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise InvalidWebhookUrl(f"{raw!r} is not a valid host name") from None
    host = host.removesuffix(".")
    labels = host.split(".")
    if _looks_numeric(labels[-1]):
        # The WHATWG URL rule: a host whose last label is a number is an IPv4 address in
        # the inet_aton spellings (decimal, octal, hex, 1 to 4 parts) or invalid.
        v4 = _parse_legacy_ipv4(labels)
        if v4 is None:
            raise InvalidWebhookUrl(f"{raw} is not a valid IPv4 address")
        return str(v4), v4
    if len(host) > 253 or not all(0 < len(lbl) < 64 and set(lbl) <= _LABEL_CHARS for lbl in labels):
        raise InvalidWebhookUrl(f"{raw!r} is not a valid host name")
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        loopback: IPAddress = IPv6Address(1) if host.startswith("ip6-") else IPv4Address(0x7F000001)
        return host, loopback
    if host in _METADATA_NAMES:
        raise InvalidWebhookUrl(f"{raw} is a cloud metadata service")
    return host, None


def _looks_numeric(label: str) -> bool:
    if label[:2] == "0x":
        return set(label[2:]) <= _HEX
    return label.isascii() and label.isdigit()


def _parse_legacy_ipv4(labels: list[str]) -> IPv4Address | None:
    if len(labels) > 4:
        return None
    numbers: list[int] = []
    for label in labels:
        if label[:2] == "0x":
            digits, base, allowed = label[2:] or "0", 16, _HEX
        elif len(label) > 1 and label[0] == "0":
            digits, base, allowed = label[1:], 8, frozenset("01234567")
        else:
            digits, base, allowed = label, 10, frozenset(string.digits)
        if not digits or not set(digits) <= allowed:  # int() would also take "_", "+", " "
            return None
        numbers.append(int(digits, base))
    *leading, last = numbers
    if any(number > 255 for number in leading) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for index, number in enumerate(leading):
        value += number << (8 * (3 - index))
    return IPv4Address(value)


def _without_zone(ip: IPAddress) -> IPAddress:
    if isinstance(ip, IPv6Address) and ip.scope_id is not None:
        return IPv6Address(int(ip))
    return ip


def _embedded_ipv4(ip: IPAddress) -> tuple[str, IPv4Address] | None:
    if not isinstance(ip, IPv6Address):
        return None
    low32 = IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _MAPPED:
        return "IPv4-mapped form", low32
    if ip in _TRANSLATED:
        return "IPv4-translated form", low32
    if ip in _NAT64:
        return "NAT64 form", low32
    if ip in _SIX_TO_FOUR:
        return "6to4 form", IPv4Address((int(ip) >> 80) & 0xFFFFFFFF)
    if ip in _COMPATIBLE and int(ip) > 1:
        return "IPv4-compatible form", low32
    return None


def _refusal(ip: IPAddress) -> str | None:
    for network, reason in _REFUSED_V4 if isinstance(ip, IPv4Address) else _REFUSED_V6:
        if ip in network:
            return reason
    # A backstop for special-purpose ranges not listed above (and for future stdlib tables).
    if ip.is_reserved or ip.is_private or not ip.is_global:
        return "not a public address"
    return None
