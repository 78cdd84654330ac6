"""Is this open or click a machine? Rules as data, checked in a fixed order (pure).

A "machine" verdict marks the event as unverified (conventions B4.9): it is still
recorded, but statistics and automations can leave it out. The signals:

- Apple Mail Privacy Protection fetches every image of a message through Apple's proxies
  soon after delivery, whether or not anyone reads it, with the bare agent "Mozilla/5.0".
- Gmail (``GoogleImageProxy``, via ``ggpht.com``) and Yahoo/AOL (``YahooMailProxy``) fetch
  images through their proxies when the reader opens the message, and serve later opens
  from a cache. Such opens are real but unattributable (the IP and agent are the proxy's),
  so they are flagged with their own reason; an operator who counts them as human clears
  ``image_proxy_agents``.
- Security gateways (Microsoft Defender Safe Links, Barracuda, Mimecast, Proofpoint,
  Symantec) and scripts (curl, python-requests, headless browsers) fetch links at
  delivery, often with HEAD, from data-centre networks, and often several links at once.
  Safe Links checks a real click in the browser and then redirects it, so the click that
  reaches us comes from the reader's own address: a click from Microsoft's mail networks is
  the delivery-time scan. Those networks are applied to clicks only, because Outlook's own
  image proxy sends genuine opens from Microsoft addresses too.

The default ranges are a starting point, not a maintained feed: operators load the ranges
the providers publish into ``MachineRules``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import TypeAlias

_Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address


class MachineReason(StrEnum):
    """Which rule decided that an event is machine activity."""

    HEAD_REQUEST = "head-request"
    APPLE_MPP = "apple-mpp"
    NO_USER_AGENT = "no-user-agent"
    IMAGE_PROXY = "image-proxy"
    SCANNER_AGENT = "scanner-agent"
    SCANNER_NETWORK = "scanner-network"
    GENERIC_USER_AGENT = "generic-user-agent"
    TOO_SOON_AFTER_DELIVERY = "too-soon-after-delivery"
    CLICK_BURST = "click-burst"


@dataclass(frozen=True, slots=True)
class MachineVerdict:
    """``machine`` with the rule that decided it; ``reason`` is None for human activity."""

    machine: bool
    reason: MachineReason | None = None


HUMAN = MachineVerdict(machine=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class MachineRules:
    """The data the classifiers apply. Agent markers match anywhere in the user agent,
    ignoring case; networks are CIDR strings (IPv4 or IPv6). Construction raises
    ``ValueError`` for a malformed network or a non-positive threshold."""

    apple_proxy_networks: tuple[str, ...] = ("17.0.0.0/8",)
    """Where Apple's Mail Privacy Protection proxies fetch from (Apple's own block)."""
    scanner_networks: tuple[str, ...] = (
        # Exchange Online Protection, as published for mail flow (and SPF); Safe Links
        # detonations come from here. 40.94.0.0/16 is seen in practice but not listed.
        "40.92.0.0/15",
        "40.94.0.0/16",
        "40.107.0.0/16",
        "52.100.0.0/14",
        "104.47.0.0/17",
        "2a01:111:f400::/48",
        "2a01:111:f403::/48",
    )
    """Networks whose clicks are link scans (not applied to opens)."""
    image_proxy_agents: tuple[str, ...] = ("GoogleImageProxy", "ggpht.com", "YahooMailProxy")
    """Mailbox-provider image proxies (see the module docstring)."""
    scanner_agents: tuple[str, ...] = (
        "Barracuda", "Mimecast", "Proofpoint", "Symantec", "MessageLabs", "BingPreview",
        "python-requests", "python-urllib", "python-httpx", "aiohttp", "curl/", "Wget/",
        "Go-http-client", "Java/", "Apache-HttpClient", "libwww-perl", "node-fetch",
        "axios/", "HeadlessChrome", "PhantomJS", "Googlebot", "bingbot",
        "facebookexternalhit", "Slackbot", "Twitterbot", "LinkedInBot", "Discordbot",
        "TelegramBot", "WhatsApp/", "SkypeUriPreview",
    )  # fmt: skip
    """Security gateways, HTTP libraries, headless browsers and link-preview bots."""
    generic_agents: tuple[str, ...] = ("Mozilla/5.0", "Mozilla/4.0")
    """Whole agents (not substrings) that no real mail client or browser sends."""
    min_delay_after_delivery: timedelta = timedelta(seconds=2)
    """Opens and clicks sooner than this after delivery are machines; people are slower."""
    burst_window: timedelta = timedelta(seconds=1)
    burst_clicks: int = 3
    """This many clicks of one recipient within ``burst_window`` make a burst."""

    def __post_init__(self) -> None:
        _networks(self.apple_proxy_networks)
        _networks(self.scanner_networks)
        if self.burst_clicks < 2:
            raise ValueError("`burst_clicks` must be at least 2.")
        if self.burst_window <= timedelta(0) or self.min_delay_after_delivery < timedelta(0):
            msg = "`burst_window` must be positive, `min_delay_after_delivery` not negative."
            raise ValueError(msg)


@lru_cache(maxsize=64)
def _networks(ranges: tuple[str, ...]) -> tuple[_Network, ...]:
    # Cached by value: rules are built once at start-up and shared by every request.
    return tuple(ipaddress.ip_network(item, strict=False) for item in ranges)


@lru_cache(maxsize=64)
def _agent_pattern(markers: tuple[str, ...]) -> re.Pattern[str] | None:
    if not markers:
        return None
    return re.compile("|".join(map(re.escape, markers)), re.IGNORECASE)


def _parse_ip(ip: str | None) -> _Address | None:
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None  # it came from a header: unknown, not an error
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _in(address: _Address | None, ranges: tuple[str, ...]) -> bool:
    # Membership across IP versions is simply False.
    return address is not None and any(address in network for network in _networks(ranges))


def _matches(agent: str, markers: tuple[str, ...]) -> bool:
    pattern = _agent_pattern(markers)
    return pattern is not None and pattern.search(agent) is not None


def _check_times(at: datetime, delivered_at: datetime | None, *others: datetime) -> None:
    # Checked up front, so that a naive datetime fails whichever rule decides first.
    for name, moment in (("at", at), ("delivered_at", delivered_at)):
        if moment is not None and moment.tzinfo is None:
            raise ValueError(f"`{name}` must be timezone-aware.")
    if any(moment.tzinfo is None for moment in others):
        raise ValueError("`previous_clicks` must be timezone-aware.")


def _common(
    *,
    user_agent: str | None,
    address: _Address | None,
    method: str,
    rules: MachineRules,
) -> MachineReason | None:
    """The rules opens and clicks share, up to the agent checks."""
    if method.strip().upper() == "HEAD":
        return MachineReason.HEAD_REQUEST
    agent = (user_agent or "").strip()
    generic = agent in rules.generic_agents
    if (not agent or generic) and _in(address, rules.apple_proxy_networks):
        return MachineReason.APPLE_MPP
    if not agent:
        return MachineReason.NO_USER_AGENT
    if _matches(agent, rules.image_proxy_agents):
        return MachineReason.IMAGE_PROXY
    if _matches(agent, rules.scanner_agents):
        return MachineReason.SCANNER_AGENT
    if generic:
        return MachineReason.GENERIC_USER_AGENT
    return None


def _too_soon(delivered_at: datetime | None, at: datetime, rules: MachineRules) -> bool:
    if delivered_at is None:
        return False
    # Negative delays (clock skew between workers) count as too soon as well.
    return at - delivered_at < rules.min_delay_after_delivery


def classify_open(
    *,
    user_agent: str | None,
    ip: str | None,
    delivered_at: datetime | None,
    at: datetime,
    rules: MachineRules,
    method: str = "GET",
) -> MachineVerdict:
    """Whether the pixel fetch at ``at`` is machine activity, and by which rule: HEAD,
    Apple MPP, no agent, image proxy, scanner agent, generic agent, then sooner than
    ``min_delay_after_delivery`` after ``delivered_at`` (unknown: not checked). Malformed
    IPs count as unknown. Raises ``ValueError`` for naive datetimes."""
    _check_times(at, delivered_at)
    reason = _common(user_agent=user_agent, address=_parse_ip(ip), method=method, rules=rules)
    if reason is None and _too_soon(delivered_at, at, rules):
        reason = MachineReason.TOO_SOON_AFTER_DELIVERY
    return HUMAN if reason is None else MachineVerdict(machine=True, reason=reason)


def classify_click(
    *,
    user_agent: str | None,
    ip: str | None,
    delivered_at: datetime | None,
    at: datetime,
    method: str,
    previous_clicks: Sequence[datetime] = (),
    rules: MachineRules,
) -> MachineVerdict:
    """Whether the click at ``at`` is machine activity: the open rules (scanner networks
    checked after the scanner agents), then a burst: ``previous_clicks`` (the other click
    times of the same recipient's copy, any link) holding at least ``burst_clicks - 1``
    within ``burst_window`` of ``at``. The first clicks of a burst are classified before
    the burst can be seen; a caller that wants them flagged classifies again later.
    Raises ``ValueError`` for naive datetimes."""
    _check_times(at, delivered_at, *previous_clicks)
    address = _parse_ip(ip)
    reason = _common(user_agent=user_agent, address=address, method=method, rules=rules)
    if reason is None and _in(address, rules.scanner_networks):
        reason = MachineReason.SCANNER_NETWORK
    if reason is None and _too_soon(delivered_at, at, rules):
        reason = MachineReason.TOO_SOON_AFTER_DELIVERY
    if reason is None:
        close = sum(1 for moment in previous_clicks if abs(moment - at) <= rules.burst_window)
        if close + 1 >= rules.burst_clicks:
            reason = MachineReason.CLICK_BURST
    return HUMAN if reason is None else MachineVerdict(machine=True, reason=reason)
