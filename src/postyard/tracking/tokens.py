"""Signed tracking and unsubscribe tokens (pure): short, URL-safe, HMAC-SHA256.

A token is ``version (1) | payload | MAC (12)``. The MAC is HMAC-SHA256 under the caller's
key over a fixed label, the token's purpose, the version and the payload, truncated to 96
bits; a token made for one purpose (an open pixel) therefore never verifies as another (a
click, an unsubscribe), even where the payloads happen to have the same length. Tokens are
only ever checked online, one request each, so 96 bits leave no room for guessing.

Payloads are binary: UUIDs as their 16 bytes, integers big-endian. Web tokens are base64url
without padding; the mailto unsubscribe token is lowercase base32, because it travels in an
address local part, which remote servers may change the case of and which may be at most 64
octets (RFC 5321 section 4.5.3.1.1).

Tokens are signed, not encrypted: anyone holding one can read its ids (and, for an
unsubscribe token, the recipient's address). They are only sent to that recipient.

Click tokens name a link by its index in the message's link list, which the caller stores
when the message is sent; they never carry the URL. The redirect endpoint can then only
send a reader to a URL that was in the message, so a valid token cannot be turned into an
open redirect, and the token stays short however long the URL is. There is deliberately no
variant with the URL inside: one design, and no way to mint redirects to arbitrary places.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from postyard.core.db import TenantId

VERSION = 1
MAC_BYTES = 12
MIN_KEY_BYTES = 16
MAX_LINK_INDEX = 0xFFFF
MAX_ADDRESS_BYTES = 320  # generous for SMTPUTF8 addresses; RFC 5321 paths are 256 octets
_LABEL = b"postyard/tracking-token\x00"
_UUID = 16
_SECONDS = struct.Struct(">I")  # unsigned 32-bit Unix seconds: good until 2106
_INDEX = struct.Struct(">H")
_HAS_TOPIC = 0x01
_MAX_WEB_TOKEN = 1024  # longer than any token we issue; refused before decoding
_WEB_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_MAILTO_TOKEN = re.compile(r"[a-z2-7]+")


class InvalidToken(ValueError):
    """A token that is malformed, tampered with, signed with another key, made for another
    purpose or of an unknown version. The message never contains key material."""


class ExpiredToken(InvalidToken):
    """An authentic unsubscribe token older than the maximum age the caller allows."""


class Purpose(StrEnum):
    """What a token is for; part of the MAC input."""

    OPEN = "open"
    CLICK = "click"
    UNSUBSCRIBE = "unsubscribe"
    UNSUBSCRIBE_MAILTO = "unsubscribe-mailto"


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenClaim:
    """What an open-pixel token names: one recipient's copy of one message."""

    tenant_id: TenantId
    message_id: uuid.UUID
    delivery_id: uuid.UUID


@dataclass(frozen=True, slots=True, kw_only=True)
class ClickClaim:
    """What a click token names: link ``link_index`` (0-based, document order) of the
    message's stored link list, in one recipient's copy."""

    tenant_id: TenantId
    message_id: uuid.UUID
    delivery_id: uuid.UUID
    link_index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UnsubscribeClaim:
    """Who asks to unsubscribe from what. ``topic_id`` None means every list of the tenant
    (or the caller's default). ``issued_at`` is UTC, whole seconds."""

    tenant_id: TenantId
    message_id: uuid.UUID
    address: str
    topic_id: uuid.UUID | None
    issued_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class MailtoUnsubscribeClaim:
    """What a mailto unsubscribe token names: a delivery (which knows tenant, message and
    recipient; the inbound handler looks it up, as for VERP bounces). UTC, whole seconds."""

    delivery_id: uuid.UUID
    issued_at: datetime


# -- sealing -----------------------------------------------------------------------------


def _check_key(key: bytes) -> None:
    # A short key is a configuration mistake, not a bad token: ValueError, not InvalidToken.
    if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
        raise ValueError(f"The token key must be at least {MIN_KEY_BYTES} bytes.")


def _mac(key: bytes, purpose: Purpose, signed: bytes) -> bytes:
    message = _LABEL + purpose.value.encode("ascii") + b"\x00" + signed
    return hmac.new(key, message, hashlib.sha256).digest()[:MAC_BYTES]


def _seal(key: bytes, purpose: Purpose, payload: bytes) -> bytes:
    _check_key(key)
    signed = bytes([VERSION]) + payload
    return signed + _mac(key, purpose, signed)


def _unseal(key: bytes, purpose: Purpose, raw: bytes) -> bytes:
    """The payload of ``raw``; raises ``InvalidToken`` unless the MAC and version are right."""
    _check_key(key)
    if len(raw) < 1 + MAC_BYTES:
        raise InvalidToken("The token is too short.")
    signed, given = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    # The MAC is checked before anything in the payload is believed, version included.
    if not hmac.compare_digest(given, _mac(key, purpose, signed)):
        raise InvalidToken("The token signature does not match.")
    if signed[0] != VERSION:
        raise InvalidToken("The token version is unknown.")
    return signed[1:]


def _b64_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _b64_decode(token: str) -> bytes:
    if not isinstance(token, str) or len(token) > _MAX_WEB_TOKEN:
        raise InvalidToken("The token is malformed.")
    if not _WEB_TOKEN.fullmatch(token) or len(token) % 4 == 1:
        raise InvalidToken("The token is malformed.")
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    # Unused low bits of the last character would otherwise give several spellings of one
    # token; only the canonical one is accepted.
    if _b64_encode(raw) != token:
        raise InvalidToken("The token is malformed.")
    return raw


def _b32_encode(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def _b32_decode(token: str) -> bytes:
    if not isinstance(token, str) or len(token) > _MAX_WEB_TOKEN:
        raise InvalidToken("The token is malformed.")
    token = token.lower()
    if not _MAILTO_TOKEN.fullmatch(token):
        raise InvalidToken("The token is malformed.")
    try:
        raw = base64.b32decode(token.upper() + "=" * (-len(token) % 8))
    except binascii.Error:
        raise InvalidToken("The token is malformed.") from None
    if _b32_encode(raw) != token:
        raise InvalidToken("The token is malformed.")
    return raw


# -- payload pieces ----------------------------------------------------------------------


def _seconds(moment: datetime, name: str) -> bytes:
    if moment.tzinfo is None:
        raise ValueError(f"`{name}` must be timezone-aware.")
    seconds = math.floor(moment.timestamp())
    if not 0 <= seconds <= 0xFFFF_FFFF:
        raise ValueError(f"`{name}` is outside the range a token can carry.")
    return _SECONDS.pack(seconds)


def _moment(raw: bytes) -> datetime:
    return datetime.fromtimestamp(_SECONDS.unpack(raw)[0], UTC)


def _age_check(issued_at: datetime, *, now: datetime, max_age: timedelta) -> None:
    if now.tzinfo is None:
        raise ValueError("`now` must be timezone-aware.")
    # A token from the future can only have been issued by us with a clock ahead; it is
    # accepted, because refusing it would leave a recipient unable to unsubscribe.
    if now - issued_at > max_age:
        raise ExpiredToken("The token has expired.")


# -- open and click ----------------------------------------------------------------------


def make_open_token(key: bytes, claim: OpenClaim) -> str:
    """The open-pixel token for ``claim`` (82 characters). Raises ``ValueError`` for a key
    shorter than ``MIN_KEY_BYTES``."""
    payload = claim.tenant_id.bytes + claim.message_id.bytes + claim.delivery_id.bytes
    return _b64_encode(_seal(key, Purpose.OPEN, payload))


def verify_open_token(key: bytes, token: str) -> OpenClaim:
    """The claim in an open-pixel token. Raises ``InvalidToken`` for anything but a token
    this key made by ``make_open_token``."""
    payload = _unseal(key, Purpose.OPEN, _b64_decode(token))
    if len(payload) != 3 * _UUID:
        raise InvalidToken("The token payload has the wrong size.")
    return OpenClaim(
        tenant_id=TenantId(uuid.UUID(bytes=payload[:16])),
        message_id=uuid.UUID(bytes=payload[16:32]),
        delivery_id=uuid.UUID(bytes=payload[32:48]),
    )


def make_click_token(key: bytes, claim: ClickClaim) -> str:
    """The click token for ``claim`` (84 characters). Raises ``ValueError`` for a short key
    or a link index outside 0..``MAX_LINK_INDEX``."""
    if not 0 <= claim.link_index <= MAX_LINK_INDEX:
        raise ValueError(f"The link index must be between 0 and {MAX_LINK_INDEX}.")
    payload = (
        claim.tenant_id.bytes
        + claim.message_id.bytes
        + claim.delivery_id.bytes
        + _INDEX.pack(claim.link_index)
    )
    return _b64_encode(_seal(key, Purpose.CLICK, payload))


def verify_click_token(key: bytes, token: str) -> ClickClaim:
    """The claim in a click token. Raises ``InvalidToken`` for anything but a token this
    key made by ``make_click_token``. The caller still checks that the index exists in
    the message's stored link list."""
    payload = _unseal(key, Purpose.CLICK, _b64_decode(token))
    if len(payload) != 3 * _UUID + _INDEX.size:
        raise InvalidToken("The token payload has the wrong size.")
    return ClickClaim(
        tenant_id=TenantId(uuid.UUID(bytes=payload[:16])),
        message_id=uuid.UUID(bytes=payload[16:32]),
        delivery_id=uuid.UUID(bytes=payload[32:48]),
        link_index=_INDEX.unpack(payload[48:])[0],
    )


# -- unsubscribe -------------------------------------------------------------------------


def make_unsubscribe_token(key: bytes, claim: UnsubscribeClaim) -> str:
    """The token for the HTTPS unsubscribe URL (about 100 characters plus 4/3 of the
    address). ``issued_at`` is kept to the second. Raises ``ValueError`` for a short key,
    a naive or out-of-range ``issued_at``, or an empty or over-long address."""
    address = claim.address.encode("utf-8")
    if not 0 < len(address) <= MAX_ADDRESS_BYTES:
        raise ValueError(f"The address must be 1 to {MAX_ADDRESS_BYTES} bytes of UTF-8.")
    topic = b"" if claim.topic_id is None else claim.topic_id.bytes
    payload = b"".join(
        (
            claim.tenant_id.bytes,
            claim.message_id.bytes,
            _seconds(claim.issued_at, "issued_at"),
            bytes([_HAS_TOPIC if topic else 0]),
            topic,
            address,
        )
    )
    return _b64_encode(_seal(key, Purpose.UNSUBSCRIBE, payload))


def verify_unsubscribe_token(
    key: bytes, token: str, *, now: datetime, max_age: timedelta
) -> UnsubscribeClaim:
    """The claim in an unsubscribe token. Raises ``ExpiredToken`` (an ``InvalidToken``)
    when it is authentic but older than ``max_age`` at ``now``, ``InvalidToken`` for any
    other token this key did not make by ``make_unsubscribe_token``, and ``ValueError``
    for a naive ``now``. Laws give recipients weeks to use a link (CAN-SPAM: 30 days after
    sending), so ``max_age`` should be generous."""
    payload = _unseal(key, Purpose.UNSUBSCRIBE, _b64_decode(token))
    fixed = 2 * _UUID + _SECONDS.size + 1
    if len(payload) <= fixed:
        raise InvalidToken("The token payload has the wrong size.")
    flags = payload[fixed - 1]
    if flags & ~_HAS_TOPIC:
        raise InvalidToken("The token payload has unknown flags.")
    topic_id = None
    rest = payload[fixed:]
    if flags & _HAS_TOPIC:
        if len(rest) <= _UUID:  # a topic and a non-empty address
            raise InvalidToken("The token payload has the wrong size.")
        topic_id, rest = uuid.UUID(bytes=rest[:_UUID]), rest[_UUID:]
    try:
        address = rest.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidToken("The token address is not UTF-8.") from None
    issued_at = _moment(payload[32 : 32 + _SECONDS.size])
    _age_check(issued_at, now=now, max_age=max_age)
    return UnsubscribeClaim(
        tenant_id=TenantId(uuid.UUID(bytes=payload[:16])),
        message_id=uuid.UUID(bytes=payload[16:32]),
        address=address,
        topic_id=topic_id,
        issued_at=issued_at,
    )


def make_mailto_unsubscribe_token(key: bytes, claim: MailtoUnsubscribeClaim) -> str:
    """The token for the mailto unsubscribe address: 53 lowercase base32 characters, so
    that ``u+<token>`` fits a 64-octet local part. Raises ``ValueError`` for a short key or
    a naive or out-of-range ``issued_at``."""
    payload = claim.delivery_id.bytes + _seconds(claim.issued_at, "issued_at")
    return _b32_encode(_seal(key, Purpose.UNSUBSCRIBE_MAILTO, payload))


def verify_mailto_unsubscribe_token(
    key: bytes, token: str, *, now: datetime, max_age: timedelta
) -> MailtoUnsubscribeClaim:
    """The claim in a mailto unsubscribe token, in any letter case. Raises as
    ``verify_unsubscribe_token`` does."""
    payload = _unseal(key, Purpose.UNSUBSCRIBE_MAILTO, _b32_decode(token))
    if len(payload) != _UUID + _SECONDS.size:
        raise InvalidToken("The token payload has the wrong size.")
    issued_at = _moment(payload[_UUID:])
    _age_check(issued_at, now=now, max_age=max_age)
    return MailtoUnsubscribeClaim(delivery_id=uuid.UUID(bytes=payload[:_UUID]), issued_at=issued_at)
