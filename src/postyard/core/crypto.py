"""Secrets at rest: AES-256-GCM envelope encryption under a key-encryption key (no I/O).

Every secret (a DKIM private key, a webhook signing secret, an SMTP password) gets its own
random 256-bit data key; the data key encrypts the secret and is itself encrypted
("wrapped") under the key-encryption key (KEK), which lives outside the database
(conventions B4.3). Both layers are AES-256-GCM with a random 96-bit nonce and a 128-bit
tag, and both authenticate the same associated data, version byte + tenant id + purpose,
so a blob copied to another tenant's row or read for another purpose does not decrypt.

Blob layout, version 1 (all sizes in bytes)::

    version (1) | KEK id (8) | wrap nonce (12) | wrapped data key (32 + 16)
    | data nonce (12) | ciphertext (len(plaintext) + 16)

The KEK id is a one-way fingerprint of the KEK: it names the KEK a blob needs (for a key
ring during rotation) and turns a wrong KEK into a clear error. Rotation re-wraps the data
key only (``rewrap_secret``); the ciphertext of the secret is left as it is.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = 1
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # 96 bits: the GCM nonce size NIST SP 800-38D recommends
TAG_BYTES = 16
KEK_ID_BYTES = 8
_WRAPPED_BYTES = KEY_BYTES + TAG_BYTES
_HEADER_BYTES = 1 + KEK_ID_BYTES
_DATA_OFFSET = _HEADER_BYTES + NONCE_BYTES + _WRAPPED_BYTES
OVERHEAD = _DATA_OFFSET + NONCE_BYTES + TAG_BYTES
"""Bytes a blob adds to its plaintext."""


class SecretDecryptionError(ValueError):
    """A blob that does not decrypt: wrong KEK, tampered or truncated, unknown version, or
    bound to another tenant or purpose. The message never contains secret material."""


def derive_kek(root_secret: bytes, purpose: str = "secrets-at-rest") -> bytes:
    """A 32-byte key for ``purpose`` derived from the root secret with HKDF-SHA256
    (RFC 5869). The same inputs always give the same key; different purposes give
    independent keys. Raises ``ValueError`` for an empty root secret or purpose."""
    if not root_secret:
        raise ValueError("The root secret is empty.")
    if not purpose:
        raise ValueError("The key purpose is empty.")
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES,
        salt=None,  # the root secret is already uniformly random (or an operator's choice)
        info=f"postyard/kek/{purpose}".encode(),
    )
    return hkdf.derive(root_secret)


def kek_id(kek: bytes) -> bytes:
    """The 8-byte fingerprint of ``kek`` that blobs encrypted under it carry. It reveals
    nothing about the key (an HMAC output). Raises ``ValueError`` unless ``kek`` is 32
    bytes."""
    _check_kek(kek)
    return hmac.new(kek, b"postyard kek id", hashlib.sha256).digest()[:KEK_ID_BYTES]


def blob_kek_id(blob: bytes) -> bytes:
    """The fingerprint of the KEK that ``blob`` needs (compare with ``kek_id``), so that a
    caller holding several KEKs can pick the right one. Raises ``SecretDecryptionError``
    when ``blob`` is not a blob of a known version."""
    _check_layout(blob)
    return blob[1:_HEADER_BYTES]


def encrypt_secret(kek: bytes, plaintext: bytes, *, tenant_id: uuid.UUID, purpose: str) -> bytes:
    """``plaintext`` encrypted under a fresh data key wrapped by ``kek``, bound to
    ``tenant_id`` and ``purpose`` (which may name the record too, e.g. ``"dkim:<id>"``).

    Two encryptions of the same plaintext differ (random data key and nonces). The blob
    is ``OVERHEAD`` bytes longer than the plaintext, which it does not contain. Raises
    ``ValueError`` for a KEK that is not 32 bytes or an empty purpose.
    """
    data_key = AESGCM.generate_key(bit_length=256)
    header = bytes([VERSION]) + kek_id(kek)
    aad = _associated_data(tenant_id, purpose)
    wrap_nonce, data_nonce = os.urandom(NONCE_BYTES), os.urandom(NONCE_BYTES)
    wrapped = AESGCM(kek).encrypt(wrap_nonce, data_key, aad)
    ciphertext = AESGCM(data_key).encrypt(data_nonce, plaintext, aad)
    return header + wrap_nonce + wrapped + data_nonce + ciphertext


def decrypt_secret(kek: bytes, blob: bytes, *, tenant_id: uuid.UUID, purpose: str) -> bytes:
    """The plaintext ``encrypt_secret`` put in ``blob``, when ``kek``, ``tenant_id`` and
    ``purpose`` are the ones it was encrypted with and no byte has changed.

    Raises ``SecretDecryptionError`` otherwise (wrong KEK, wrong tenant or purpose,
    tampering, truncation, unknown version), and ``ValueError`` for a KEK that is not 32
    bytes or an empty purpose.
    """
    data_key = _unwrap(kek, blob, tenant_id, purpose)
    return _open(data_key, blob, tenant_id, purpose)


def rewrap_secret(
    old_kek: bytes, new_kek: bytes, blob: bytes, *, tenant_id: uuid.UUID, purpose: str
) -> bytes:
    """``blob`` with its data key re-wrapped under ``new_kek`` (KEK rotation): the secret's
    own ciphertext is kept, after checking that it decrypts. Raises as ``decrypt_secret``
    does for ``old_kek``."""
    data_key = _unwrap(old_kek, blob, tenant_id, purpose)
    _open(data_key, blob, tenant_id, purpose)
    aad = _associated_data(tenant_id, purpose)
    wrap_nonce = os.urandom(NONCE_BYTES)
    wrapped = AESGCM(new_kek).encrypt(wrap_nonce, data_key, aad)
    header = bytes([VERSION]) + kek_id(new_kek)
    return header + wrap_nonce + wrapped + blob[_DATA_OFFSET:]


def _check_kek(kek: bytes) -> None:
    if len(kek) != KEY_BYTES:
        raise ValueError(f"A key-encryption key is {KEY_BYTES} bytes, not {len(kek)}.")


def _check_layout(blob: bytes) -> None:
    if len(blob) < OVERHEAD:
        raise SecretDecryptionError("The secret does not decrypt: the blob is truncated.")
    if blob[0] != VERSION:
        raise SecretDecryptionError(f"The secret does not decrypt: unknown version {blob[0]}.")


def _associated_data(tenant_id: uuid.UUID, purpose: str) -> bytes:
    if not purpose:
        raise ValueError("The secret's purpose is empty.")
    # The tenant id has a fixed length, so version | tenant | purpose is unambiguous.
    return bytes([VERSION]) + tenant_id.bytes + purpose.encode("utf-8")


def _unwrap(kek: bytes, blob: bytes, tenant_id: uuid.UUID, purpose: str) -> bytes:
    aad = _associated_data(tenant_id, purpose)
    if not hmac.compare_digest(blob_kek_id(blob), kek_id(kek)):
        raise SecretDecryptionError("The secret does not decrypt: it needs another KEK.")
    nonce = blob[_HEADER_BYTES : _HEADER_BYTES + NONCE_BYTES]
    try:
        return AESGCM(kek).decrypt(nonce, blob[_HEADER_BYTES + NONCE_BYTES : _DATA_OFFSET], aad)
    except InvalidTag:
        # The wrapped key is authenticated with the same associated data, so another
        # tenant or purpose fails here, before the secret's own layer is touched.
        raise SecretDecryptionError(
            "The secret does not decrypt: wrong tenant or purpose, or altered."
        ) from None


def _open(data_key: bytes, blob: bytes, tenant_id: uuid.UUID, purpose: str) -> bytes:
    aad = _associated_data(tenant_id, purpose)
    nonce = blob[_DATA_OFFSET : _DATA_OFFSET + NONCE_BYTES]
    try:
        return AESGCM(data_key).decrypt(nonce, blob[_DATA_OFFSET + NONCE_BYTES :], aad)
    except InvalidTag:
        raise SecretDecryptionError("The secret does not decrypt: it was altered.") from None
