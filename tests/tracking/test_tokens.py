"""Tracking tokens: round trips, sizes, and every way a token must be refused."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from postyard.core.db import TenantId
from postyard.tracking.tokens import (
    MAX_LINK_INDEX,
    ClickClaim,
    ExpiredToken,
    InvalidToken,
    MailtoUnsubscribeClaim,
    OpenClaim,
    UnsubscribeClaim,
    make_click_token,
    make_mailto_unsubscribe_token,
    make_open_token,
    make_unsubscribe_token,
    verify_click_token,
    verify_mailto_unsubscribe_token,
    verify_open_token,
    verify_unsubscribe_token,
)

KEY = b"tracking key for tests, 32 bytes"
OTHER_KEY = b"another tracking key for the tests"
TENANT = TenantId(uuid.UUID("0190f5d4-0000-7000-8000-000000000001"))
MESSAGE = uuid.UUID("0190f5d4-0000-7000-8000-0000000000aa")
DELIVERY = uuid.UUID("0190f5d4-0000-7000-8000-0000000000bb")
TOPIC = uuid.UUID("0190f5d4-0000-7000-8000-0000000000cc")
ISSUED = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
NOW = ISSUED + timedelta(days=3)
MAX_AGE = timedelta(days=90)

OPEN = OpenClaim(tenant_id=TENANT, message_id=MESSAGE, delivery_id=DELIVERY)
CLICK = ClickClaim(tenant_id=TENANT, message_id=MESSAGE, delivery_id=DELIVERY, link_index=7)
UNSUBSCRIBE = UnsubscribeClaim(
    tenant_id=TENANT,
    message_id=MESSAGE,
    address="Ann.Example+news@example.org",
    topic_id=TOPIC,
    issued_at=ISSUED,
)
MAILTO = MailtoUnsubscribeClaim(delivery_id=DELIVERY, issued_at=ISSUED)


def verify_unsubscribe(token: str, key: bytes = KEY) -> UnsubscribeClaim:
    return verify_unsubscribe_token(key, token, now=NOW, max_age=MAX_AGE)


def verify_mailto(token: str, key: bytes = KEY) -> MailtoUnsubscribeClaim:
    return verify_mailto_unsubscribe_token(key, token, now=NOW, max_age=MAX_AGE)


# Every kind of token with its verifier, for the refusal tests.
KINDS: dict[str, tuple[Callable[[bytes], str], Callable[[str, bytes], object]]] = {
    "open": (lambda key: make_open_token(key, OPEN), lambda t, k: verify_open_token(k, t)),
    "click": (lambda key: make_click_token(key, CLICK), lambda t, k: verify_click_token(k, t)),
    "unsubscribe": (lambda key: make_unsubscribe_token(key, UNSUBSCRIBE), verify_unsubscribe),
    "mailto": (lambda key: make_mailto_unsubscribe_token(key, MAILTO), verify_mailto),
}


def test_round_trips() -> None:
    assert verify_open_token(KEY, make_open_token(KEY, OPEN)) == OPEN
    assert verify_click_token(KEY, make_click_token(KEY, CLICK)) == CLICK
    assert verify_unsubscribe(make_unsubscribe_token(KEY, UNSUBSCRIBE)) == UNSUBSCRIBE
    assert verify_mailto(make_mailto_unsubscribe_token(KEY, MAILTO)) == MAILTO


def test_unsubscribe_without_topic_and_with_a_unicode_address() -> None:
    claim = UnsubscribeClaim(
        tenant_id=TENANT, message_id=MESSAGE, address="zoë@exämple.org", topic_id=None,
        issued_at=ISSUED,
    )  # fmt: skip
    assert verify_unsubscribe(make_unsubscribe_token(KEY, claim)) == claim


def test_issued_at_is_kept_to_the_second() -> None:
    claim = MailtoUnsubscribeClaim(delivery_id=DELIVERY, issued_at=ISSUED.replace(microsecond=9))
    assert verify_mailto(make_mailto_unsubscribe_token(KEY, claim)).issued_at == ISSUED


def test_tokens_are_short_and_url_safe() -> None:
    open_token = make_open_token(KEY, OPEN)
    click_token = make_click_token(KEY, CLICK)
    assert (len(open_token), len(click_token)) == (82, 84)
    assert len(make_unsubscribe_token(KEY, UNSUBSCRIBE)) < 160
    mailto = make_mailto_unsubscribe_token(KEY, MAILTO)
    assert len(mailto) == 53
    assert mailto == mailto.lower()
    for token in (open_token, click_token):
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_click_tokens_carry_no_url_only_the_index() -> None:
    first = make_click_token(KEY, CLICK)
    raw = base64.urlsafe_b64decode(first + "=" * (-len(first) % 4))
    assert len(raw) == 1 + 16 * 3 + 2 + 12
    assert raw[49:51] == (7).to_bytes(2, "big")
    for index in (0, MAX_LINK_INDEX):
        claim = ClickClaim(tenant_id=TENANT, message_id=MESSAGE, delivery_id=DELIVERY,
                           link_index=index)  # fmt: skip
        assert verify_click_token(KEY, make_click_token(KEY, claim)).link_index == index


@pytest.mark.parametrize("index", [-1, MAX_LINK_INDEX + 1])
def test_link_index_out_of_range_is_a_caller_error(index: int) -> None:
    claim = ClickClaim(tenant_id=TENANT, message_id=MESSAGE, delivery_id=DELIVERY,
                       link_index=index)  # fmt: skip
    with pytest.raises(ValueError, match="link index"):
        make_click_token(KEY, claim)


@pytest.mark.parametrize("kind", KINDS)
def test_every_flipped_byte_is_refused(kind: str) -> None:
    make, verify = KINDS[kind]
    token = make(KEY)
    mailto = kind == "mailto"
    raw = base64.b32decode(token.upper() + "=" * (-len(token) % 8)) if mailto else (
        base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    )  # fmt: skip
    for position in range(len(raw)):
        for bit in (0x01, 0x80):
            tampered = bytearray(raw)
            tampered[position] ^= bit
            if mailto:
                text = base64.b32encode(bytes(tampered)).decode().rstrip("=").lower()
            else:
                text = base64.urlsafe_b64encode(bytes(tampered)).decode().rstrip("=")
            with pytest.raises(InvalidToken):
                verify(text, KEY)


@pytest.mark.parametrize("kind", KINDS)
def test_truncated_extended_and_other_key_are_refused(kind: str) -> None:
    make, verify = KINDS[kind]
    token = make(KEY)
    for bad in (token[:-1], token[:-4], token[:10], token[:1], token + "a", token + "aaaa"):
        with pytest.raises(InvalidToken):
            verify(bad, KEY)
    with pytest.raises(InvalidToken, match="signature"):
        verify(make(OTHER_KEY), KEY)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("other", KINDS)
def test_a_token_of_one_purpose_is_refused_as_another(kind: str, other: str) -> None:
    if kind == other:
        return
    token = KINDS[kind][0](KEY)
    with pytest.raises(InvalidToken):
        KINDS[other][1](token, KEY)
    with pytest.raises(InvalidToken):
        KINDS[other][1](token.lower(), KEY)


@pytest.mark.parametrize(
    "token", ["", "!" * 20, "a b", "é" * 30, "A" * 5000, "AAAAA", "=" * 8, "abc=", "\n"]
)
def test_malformed_input_is_refused(token: str) -> None:
    for _make, verify in KINDS.values():
        with pytest.raises(InvalidToken):
            verify(token, KEY)


def test_non_canonical_spelling_is_refused() -> None:
    token = make_open_token(KEY, OPEN)
    # 61 bytes encode to 82 characters; the last one carries 4 unused bits.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = token[:-1] + alphabet[alphabet.index(token[-1]) ^ 1]
    with pytest.raises(InvalidToken):
        verify_open_token(KEY, twin)


def test_mailto_tokens_survive_a_change_of_case() -> None:
    token = make_mailto_unsubscribe_token(KEY, MAILTO)
    assert verify_mailto(token.upper()) == MAILTO


def test_age_limits() -> None:
    token = make_unsubscribe_token(KEY, UNSUBSCRIBE)
    assert verify_unsubscribe_token(KEY, token, now=ISSUED + MAX_AGE, max_age=MAX_AGE)
    with pytest.raises(ExpiredToken):
        verify_unsubscribe_token(KEY, token, now=ISSUED + MAX_AGE + timedelta(seconds=1),
                                 max_age=MAX_AGE)  # fmt: skip
    # Issued "in the future" by a worker whose clock ran ahead: still honoured.
    assert verify_unsubscribe_token(KEY, token, now=ISSUED - timedelta(hours=1), max_age=MAX_AGE)
    mailto = make_mailto_unsubscribe_token(KEY, MAILTO)
    with pytest.raises(ExpiredToken):
        verify_mailto_unsubscribe_token(KEY, mailto, now=NOW, max_age=timedelta(days=1))


def test_an_expired_forgery_is_reported_as_a_bad_signature_not_as_expired() -> None:
    token = make_unsubscribe_token(OTHER_KEY, UNSUBSCRIBE)
    with pytest.raises(InvalidToken, match="signature"):
        verify_unsubscribe_token(KEY, token, now=NOW, max_age=timedelta(0))


def test_caller_mistakes_are_value_errors() -> None:
    with pytest.raises(ValueError, match="key"):
        make_open_token(b"short", OPEN)
    with pytest.raises(ValueError, match="key"):
        verify_open_token(b"short", make_open_token(KEY, OPEN))
    naive = MailtoUnsubscribeClaim(delivery_id=DELIVERY, issued_at=datetime(2025, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValueError, match="timezone"):
        make_mailto_unsubscribe_token(KEY, naive)
    ancient = MailtoUnsubscribeClaim(
        delivery_id=DELIVERY, issued_at=datetime(1960, 1, 1, tzinfo=UTC)
    )
    with pytest.raises(ValueError, match="range"):
        make_mailto_unsubscribe_token(KEY, ancient)
    token = make_unsubscribe_token(KEY, UNSUBSCRIBE)
    with pytest.raises(ValueError, match="timezone"):
        verify_unsubscribe_token(KEY, token, now=datetime(2025, 3, 2), max_age=MAX_AGE)  # noqa: DTZ001
    for address in ("", "a" * 321):
        claim = UnsubscribeClaim(tenant_id=TENANT, message_id=MESSAGE, address=address,
                                 topic_id=None, issued_at=ISSUED)  # fmt: skip
        with pytest.raises(ValueError, match="address"):
            make_unsubscribe_token(KEY, claim)
