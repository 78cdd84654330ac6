"""Machine-activity classification: one table per event kind, humans not flagged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from postyard.tracking.machine import (
    HUMAN,
    MachineReason,
    MachineRules,
    MachineVerdict,
    classify_click,
    classify_open,
)

RULES = MachineRules()
DELIVERED = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
LATER = DELIVERED + timedelta(minutes=5)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
APPLE_MAIL = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
)
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17531; Pro)"
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
YAHOO_PROXY = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
CUBOT_PHONE = "Mozilla/5.0 (Linux; Android 11; CUBOT KINGKONG 5) AppleWebKit/537.36 Chrome/99.0"
HOME_IP = "203.0.113.7"
APPLE_IP = "17.58.101.5"
MICROSOFT_IP = "40.107.12.34"

M = MachineReason

OPENS = [
    # user agent, ip, delivered_at, method, expected reason (None: human)
    (CHROME, HOME_IP, DELIVERED, "GET", None),
    (APPLE_MAIL, HOME_IP, DELIVERED, "GET", None),
    (APPLE_MAIL, APPLE_IP, DELIVERED, "GET", None),  # a full agent from Apple: a person
    (OUTLOOK, MICROSOFT_IP, DELIVERED, "GET", None),  # Outlook's proxy: scanner nets are for clicks
    (IPHONE_SAFARI, "2001:db8::1", None, "GET", None),
    (CUBOT_PHONE, HOME_IP, DELIVERED, "GET", None),  # "bot" inside a phone's name
    (CHROME, "not an ip", DELIVERED, "GET", None),
    (CHROME, HOME_IP, DELIVERED, "HEAD", M.HEAD_REQUEST),
    ("Mozilla/5.0", APPLE_IP, DELIVERED, "GET", M.APPLE_MPP),
    ("Mozilla/5.0", "::ffff:17.1.2.3", DELIVERED, "GET", M.APPLE_MPP),
    (None, APPLE_IP, DELIVERED, "GET", M.APPLE_MPP),
    ("Mozilla/5.0", HOME_IP, DELIVERED, "GET", M.GENERIC_USER_AGENT),
    (" Mozilla/5.0 ", None, None, "GET", M.GENERIC_USER_AGENT),
    (None, HOME_IP, DELIVERED, "GET", M.NO_USER_AGENT),
    ("   ", None, None, "GET", M.NO_USER_AGENT),
    (GMAIL_PROXY, "66.249.84.1", DELIVERED, "GET", M.IMAGE_PROXY),
    ("Mozilla/5.0 (via ggpht.com)", HOME_IP, DELIVERED, "GET", M.IMAGE_PROXY),
    (YAHOO_PROXY, HOME_IP, DELIVERED, "GET", M.IMAGE_PROXY),
    ("Barracuda Sentinel (EE)", HOME_IP, DELIVERED, "GET", M.SCANNER_AGENT),
    ("Mozilla/5.0 HeadlessChrome/120.0", HOME_IP, DELIVERED, "GET", M.SCANNER_AGENT),
    ("python-requests/2.32.3", HOME_IP, DELIVERED, "GET", M.SCANNER_AGENT),
    ("curl/8.5.0", HOME_IP, DELIVERED, "GET", M.SCANNER_AGENT),
    (CHROME, HOME_IP, LATER - timedelta(seconds=1), "GET", M.TOO_SOON_AFTER_DELIVERY),
    (CHROME, HOME_IP, LATER + timedelta(seconds=30), "GET", M.TOO_SOON_AFTER_DELIVERY),
]


def verdict(reason: MachineReason | None) -> MachineVerdict:
    return HUMAN if reason is None else MachineVerdict(machine=True, reason=reason)


@pytest.mark.parametrize(("agent", "ip", "delivered_at", "method", "reason"), OPENS)
def test_opens(
    agent: str | None,
    ip: str | None,
    delivered_at: datetime | None,
    method: str,
    reason: MachineReason | None,
) -> None:
    result = classify_open(
        user_agent=agent, ip=ip, delivered_at=delivered_at, at=LATER, rules=RULES, method=method
    )
    assert result == verdict(reason)


CLICKS = [
    (CHROME, HOME_IP, DELIVERED, "GET", None),
    (IPHONE_SAFARI, "2001:db8::1", DELIVERED, "get", None),
    (APPLE_MAIL, APPLE_IP, None, "GET", None),
    (CHROME, HOME_IP, DELIVERED, "head", M.HEAD_REQUEST),
    (CHROME, MICROSOFT_IP, DELIVERED, "GET", M.SCANNER_NETWORK),
    (CHROME, "2a01:111:f403:c100::5", DELIVERED, "GET", M.SCANNER_NETWORK),
    ("Mozilla/5.0 (compatible; Mimecast URL Protect)", HOME_IP, DELIVERED, "GET", M.SCANNER_AGENT),
    ("Proofpoint URL Defense", HOME_IP, DELIVERED, "GET", M.SCANNER_AGENT),
    ("Symantec Email Security", HOME_IP, DELIVERED, "GET", M.SCANNER_AGENT),
    ("Mozilla/5.0 (compatible; BingPreview/1.0b)", HOME_IP, DELIVERED, "GET", M.SCANNER_AGENT),
    ("Go-http-client/2.0", HOME_IP, DELIVERED, "GET", M.SCANNER_AGENT),
    ("Mozilla/5.0", MICROSOFT_IP, DELIVERED, "GET", M.GENERIC_USER_AGENT),
    (None, None, DELIVERED, "GET", M.NO_USER_AGENT),
    (CHROME, HOME_IP, LATER - timedelta(seconds=1, milliseconds=999), "GET",
     M.TOO_SOON_AFTER_DELIVERY),
    (CHROME, HOME_IP, LATER - timedelta(seconds=2), "GET", None),
]  # fmt: skip


@pytest.mark.parametrize(("agent", "ip", "delivered_at", "method", "reason"), CLICKS)
def test_clicks(
    agent: str | None,
    ip: str | None,
    delivered_at: datetime | None,
    method: str,
    reason: MachineReason | None,
) -> None:
    result = classify_click(
        user_agent=agent, ip=ip, delivered_at=delivered_at, at=LATER, method=method, rules=RULES
    )
    assert result == verdict(reason)


@pytest.mark.parametrize(
    ("offsets_ms", "machine"),
    [
        ([], False),
        ([-400], False),  # a double click: two in the window is still a person
        ([-400, -900], True),
        ([-400, 300], True),  # clicks recorded out of order count too
        ([-1500, -3000], False),
        ([-400, -1001], False),
    ],
)
def test_click_bursts(offsets_ms: list[int], machine: bool) -> None:
    previous = [LATER + timedelta(milliseconds=offset) for offset in offsets_ms]
    result = classify_click(
        user_agent=CHROME, ip=HOME_IP, delivered_at=DELIVERED, at=LATER, method="GET",
        previous_clicks=previous, rules=RULES,
    )  # fmt: skip
    expected = MachineVerdict(machine=True, reason=M.CLICK_BURST) if machine else HUMAN
    assert result == expected


def test_rules_are_data_operators_can_change() -> None:
    rules = MachineRules(
        apple_proxy_networks=("198.51.100.0/24",),
        scanner_networks=(),
        image_proxy_agents=(),
        scanner_agents=("AcmeGateway",),
        min_delay_after_delivery=timedelta(seconds=30),
        burst_clicks=2,
    )
    open_ = classify_open(user_agent="Mozilla/5.0", ip="198.51.100.9", delivered_at=None,
                          at=LATER, rules=rules)  # fmt: skip
    assert open_.reason is M.APPLE_MPP
    proxy = classify_open(user_agent=GMAIL_PROXY, ip=None, delivered_at=None, at=LATER, rules=rules)
    assert proxy == HUMAN
    scan = classify_click(user_agent="acmegateway/1", ip=MICROSOFT_IP, delivered_at=None,
                          at=LATER, method="GET", rules=rules)  # fmt: skip
    assert scan.reason is M.SCANNER_AGENT
    microsoft = classify_click(user_agent=CHROME, ip=MICROSOFT_IP, delivered_at=None, at=LATER,
                               method="GET", rules=rules)  # fmt: skip
    assert microsoft == HUMAN
    soon = classify_click(user_agent=CHROME, ip=HOME_IP, at=LATER, method="GET", rules=rules,
                          delivered_at=LATER - timedelta(seconds=20))  # fmt: skip
    assert soon.reason is M.TOO_SOON_AFTER_DELIVERY
    double = classify_click(user_agent=CHROME, ip=HOME_IP, delivered_at=None, at=LATER,
                            method="GET", previous_clicks=[LATER], rules=rules)  # fmt: skip
    assert double.reason is M.CLICK_BURST


def test_reasons_are_strings() -> None:
    result = classify_click(user_agent=None, ip=None, delivered_at=None, at=LATER, method="HEAD",
                            rules=RULES)  # fmt: skip
    assert result.reason == "head-request"


@pytest.mark.parametrize(
    "kwargs",
    [{"apple_proxy_networks": ("not a network",)}, {"scanner_networks": ("10.0.0.0/33",)},
     {"burst_clicks": 1}, {"burst_window": timedelta(0)},
     {"min_delay_after_delivery": timedelta(seconds=-1)}],
)  # fmt: skip
def test_malformed_rules_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        MachineRules(**kwargs)  # type: ignore[arg-type]  # values of several types


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2025, 3, 1, 12, 0)  # noqa: DTZ001
    with pytest.raises(ValueError, match="timezone"):
        classify_open(user_agent=CHROME, ip=None, delivered_at=None, at=naive, rules=RULES)
    with pytest.raises(ValueError, match="timezone"):
        classify_open(user_agent=CHROME, ip=None, delivered_at=naive, at=LATER, rules=RULES)
    with pytest.raises(ValueError, match="timezone"):
        classify_click(user_agent=CHROME, ip=None, delivered_at=None, at=LATER, method="GET",
                       previous_clicks=[naive], rules=RULES)  # fmt: skip
