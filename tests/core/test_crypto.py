"""Secrets at rest: envelope encryption round trips, and every way a blob must fail."""

from __future__ import annotations

import uuid

import pytest

from postyard.core.crypto import (
    OVERHEAD,
    SecretDecryptionError,
    blob_kek_id,
    decrypt_secret,
    derive_kek,
    encrypt_secret,
    kek_id,
    rewrap_secret,
)

KEK = derive_kek(b"root secret for tests, not for production")
OTHER_KEK = derive_kek(b"another root secret")
TENANT = uuid.UUID("0190f5d4-0000-7000-8000-000000000001")
OTHER_TENANT = uuid.UUID("0190f5d4-0000-7000-8000-000000000002")
PURPOSE = "dkim-private-key:0190f5d4-0000-7000-8000-0000000000aa"
SECRET = b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIL0ngTSp2BVdnbbOMAwA\n"


def seal(plaintext: bytes = SECRET) -> bytes:
    return encrypt_secret(KEK, plaintext, tenant_id=TENANT, purpose=PURPOSE)


def test_derive_kek_is_deterministic_and_separates_purposes() -> None:
    assert len(KEK) == 32
    assert derive_kek(b"root secret for tests, not for production") == KEK
    assert derive_kek(b"root secret for tests, not for production", "webhooks") != KEK
    assert OTHER_KEK != KEK
    with pytest.raises(ValueError, match="empty"):
        derive_kek(b"")
    with pytest.raises(ValueError, match="empty"):
        derive_kek(b"x", "")


@pytest.mark.parametrize("plaintext", [b"", b"x", SECRET, bytes(range(256)) * 40])
def test_round_trip(plaintext: bytes) -> None:
    blob = seal(plaintext)
    assert len(blob) == len(plaintext) + OVERHEAD
    assert decrypt_secret(KEK, blob, tenant_id=TENANT, purpose=PURPOSE) == plaintext


def test_same_plaintext_encrypts_differently_and_is_not_visible() -> None:
    first, second = seal(), seal()
    assert first != second
    assert first[0] == second[0] == 1  # the version byte
    assert SECRET not in first
    assert b"BEGIN PRIVATE KEY" not in first
    assert blob_kek_id(first) == kek_id(KEK) != kek_id(OTHER_KEK)


def test_wrong_kek_fails() -> None:
    with pytest.raises(SecretDecryptionError, match="another KEK"):
        decrypt_secret(OTHER_KEK, seal(), tenant_id=TENANT, purpose=PURPOSE)


def test_wrong_tenant_or_purpose_fails() -> None:
    blob = seal()
    with pytest.raises(SecretDecryptionError):
        decrypt_secret(KEK, blob, tenant_id=OTHER_TENANT, purpose=PURPOSE)
    with pytest.raises(SecretDecryptionError):
        decrypt_secret(KEK, blob, tenant_id=TENANT, purpose="webhook-secret")
    with pytest.raises(SecretDecryptionError):
        decrypt_secret(KEK, blob, tenant_id=TENANT, purpose=PURPOSE + "x")


def test_every_flipped_bit_fails() -> None:
    blob = seal()
    for index in range(len(blob)):
        for bit in (0x01, 0x80):
            altered = bytearray(blob)
            altered[index] ^= bit
            with pytest.raises(SecretDecryptionError):
                decrypt_secret(KEK, bytes(altered), tenant_id=TENANT, purpose=PURPOSE)


def test_every_truncation_and_extension_fails() -> None:
    blob = seal()
    for length in range(len(blob)):
        with pytest.raises(SecretDecryptionError):
            decrypt_secret(KEK, blob[:length], tenant_id=TENANT, purpose=PURPOSE)
    with pytest.raises(SecretDecryptionError):
        decrypt_secret(KEK, blob + b"\x00", tenant_id=TENANT, purpose=PURPOSE)


def test_swapped_layers_between_blobs_fail() -> None:
    # The data layer of one blob under the wrapped key of another: different data keys.
    first, second = seal(), seal()
    mixed = first[:69] + second[69:]
    with pytest.raises(SecretDecryptionError):
        decrypt_secret(KEK, mixed, tenant_id=TENANT, purpose=PURPOSE)


def test_bad_arguments_are_programming_errors() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        encrypt_secret(KEK[:16], SECRET, tenant_id=TENANT, purpose=PURPOSE)
    with pytest.raises(ValueError, match="32 bytes"):
        decrypt_secret(KEK[:16], seal(), tenant_id=TENANT, purpose=PURPOSE)
    with pytest.raises(ValueError, match="purpose"):
        encrypt_secret(KEK, SECRET, tenant_id=TENANT, purpose="")


def test_rewrap_moves_a_blob_to_a_new_kek_keeping_the_ciphertext() -> None:
    blob = seal()
    rewrapped = rewrap_secret(KEK, OTHER_KEK, blob, tenant_id=TENANT, purpose=PURPOSE)
    assert blob_kek_id(rewrapped) == kek_id(OTHER_KEK)
    assert rewrapped[-len(SECRET) - 28 :] == blob[-len(SECRET) - 28 :]  # nonce + ciphertext
    assert decrypt_secret(OTHER_KEK, rewrapped, tenant_id=TENANT, purpose=PURPOSE) == SECRET
    with pytest.raises(SecretDecryptionError):
        decrypt_secret(KEK, rewrapped, tenant_id=TENANT, purpose=PURPOSE)
    with pytest.raises(SecretDecryptionError):
        rewrap_secret(KEK, OTHER_KEK, blob, tenant_id=OTHER_TENANT, purpose=PURPOSE)
