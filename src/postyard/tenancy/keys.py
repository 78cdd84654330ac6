"""API-key tokens: generation, parsing and hashing (pure).

Format ``py_<lookup id>_<secret>``: a recognisable prefix (secret scanners, log redaction),
a short id stored in clear for the lookup, and a 256-bit secret of which only a SHA-256
digest of the whole token is stored. Keys are random, so a fast hash is right (a slow one
would only add latency to every request).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

TOKEN_PREFIX = "py_"  # noqa: S105  (a public prefix, not a secret)
_ALPHABET = string.ascii_letters + string.digits
_LOOKUP_LEN = 12
_SECRET_LEN = 43  # 43 base62 characters carry 256 bits
_TOKEN_RE = re.compile(rf"^py_([A-Za-z0-9]{{{_LOOKUP_LEN}}})_([A-Za-z0-9]{{{_SECRET_LEN}}})$")


@dataclass(frozen=True, slots=True)
class NewToken:
    token: str
    lookup_id: str
    prefix: str
    digest: bytes


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def digest_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def generate_token() -> NewToken:
    lookup_id = _random(_LOOKUP_LEN)
    token = f"{TOKEN_PREFIX}{lookup_id}_{_random(_SECRET_LEN)}"
    return NewToken(
        token=token,
        lookup_id=lookup_id,
        prefix=f"{TOKEN_PREFIX}{lookup_id}",
        digest=digest_token(token),
    )


def parse_lookup_id(token: str) -> str | None:
    """The lookup id of a well-formed token, or None."""
    match = _TOKEN_RE.match(token)
    return match.group(1) if match else None


def token_matches(token: str, digest: bytes) -> bool:
    return hmac.compare_digest(digest_token(token), digest)
