"""Standard Webhooks signatures (the scheme Svix, and so Resend, uses).

A message is signed as ``v1,<base64 HMAC-SHA256>`` over ``"{id}.{timestamp}.{body}"`` with the
key that a ``whsec_<base64>`` secret encodes. During a secret rotation both the new and the old
secret sign, and the signatures go space-separated in one header, so that receivers holding
either secret accept the message.

Pure functions: no I/O, no clock (the caller passes the timestamp it records with the attempt).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import secrets as random_source
from collections.abc import Sequence

from postyard import __version__

SECRET_PREFIX = "whsec_"  # noqa: S105 -- the format's prefix, not a secret
SECRET_BYTES = 32
"""Key size: the SHA-256 output size, as RFC 2104 §3 recommends for HMAC keys; the Standard
Webhooks spec asks for 24 to 64 bytes."""
USER_AGENT = f"Postyard-Webhooks/{__version__}"


def generate_secret() -> str:
    """A new endpoint secret: ``whsec_`` + base64 of 32 random bytes from the OS CSPRNG."""
    return SECRET_PREFIX + base64.b64encode(random_source.token_bytes(SECRET_BYTES)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one message under ``secret``.

    Raises ValueError for a secret that is not ``whsec_`` + base64 of at least one byte.
    """
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.digest(_key(secret), signed, "sha256")  # one call, no HMAC object
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per secret, space-separated, in order.

    Raises ValueError when ``secrets`` is empty or one of them is malformed.
    """
    if not secrets:
        raise ValueError("a webhook needs at least one signing secret")
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)


def webhook_headers(
    secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """Every header a delivery carries besides Host and Content-Length.

    Both header families go out with identical values: ``webhook-*`` (Standard Webhooks
    libraries) and ``svix-*`` (what Resend's SDKs and Svix libraries read). ``msg_id`` must stay
    the same across retries of one message: receivers use it as their idempotency key.
    Raises ValueError as ``signature_header`` does, or for an id that would break a header line.
    """
    if any(char in msg_id for char in "\r\n\0"):
        raise ValueError("a webhook id cannot contain line breaks or NUL")
    signature = signature_header(secrets, msg_id, timestamp, body)
    stamp = str(timestamp)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": signature,
        "svix-id": msg_id,
        "svix-timestamp": stamp,
        "svix-signature": signature,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


@functools.lru_cache(maxsize=4096)
def _key(secret: str) -> bytes:
    # Decoding once per secret matters at thousands of deliveries a second; the cache holds
    # nothing the process does not already hold (the secrets themselves).
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"a webhook secret is {SECRET_PREFIX!r} + base64: {exc}") from None
    if not key:
        raise ValueError("a webhook secret cannot be empty")
    return key
