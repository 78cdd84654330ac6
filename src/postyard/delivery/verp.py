"""Signed VERP return paths (pure): the envelope sender of each recipient names its delivery
row, so an asynchronous bounce (a DSN to that address) finds message and recipient, and a
forged one is recognised and dropped.

``b+<delivery id, base32>-<MAC, base32>@<return-path domain>``, lowercase because remote
servers may change the case of local parts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

LOCAL_PREFIX = "b+"
_MAC_BYTES = 10


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _mac(key: bytes, delivery_id: uuid.UUID) -> bytes:
    return hmac.new(key, b"verp:" + delivery_id.bytes, hashlib.sha256).digest()[:_MAC_BYTES]


def return_path(delivery_id: uuid.UUID, domain: str, key: bytes) -> str:
    """The envelope sender for one recipient's delivery."""
    return f"{LOCAL_PREFIX}{_b32(delivery_id.bytes)}-{_b32(_mac(key, delivery_id))}@{domain}"


def parse_return_path(address: str, key: bytes) -> uuid.UUID | None:
    """The delivery id an address names, or None when it is not ours or its MAC is wrong."""
    local = address.rpartition("@")[0].lower()
    if not local.startswith(LOCAL_PREFIX):
        return None
    token, _, mac = local[len(LOCAL_PREFIX) :].partition("-")
    try:
        raw = base64.b32decode(token.upper() + "=" * (-len(token) % 8))
        given = base64.b32decode(mac.upper() + "=" * (-len(mac) % 8))
        delivery_id = uuid.UUID(bytes=raw)
    except (ValueError, TypeError):
        return None
    if not hmac.compare_digest(given, _mac(key, delivery_id)):
        return None
    return delivery_id
