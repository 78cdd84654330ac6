"""DKIM key material: generation, the DNS TXT record, and keys loaded once for signing.

RSA keys are 2048 bits (conventions A7.1: never less); Ed25519 keys (RFC 8463) sign as an
additional signature, because RSA is what every verifier understands. Private keys are
PKCS#8 PEM, the form stored (encrypted, see ``postyard.core.crypto``) and loaded here.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

import idna
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

Algorithm = Literal["rsa-sha256", "ed25519-sha256"]
RSA_KEY_BITS = 2048
_PKCS1V15 = padding.PKCS1v15()  # RFC 6376 section 3.3.1: RSASSA-PKCS1-v1_5
# RFC 6376 section 3.1: a selector is one or more sub-domains (RFC 5321 Let-dig [Ldh-str]).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_SELECTOR = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_MAX_NAME = 253  # RFC 1035 section 2.3.4, for selector._domainkey.domain as a whole

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


class DkimKeyError(ValueError):
    """Key material, a selector or a domain that cannot be used for DKIM."""


def generate_rsa_key() -> bytes:
    """A new 2048-bit RSA private key (public exponent 65537) as unencrypted PKCS#8 PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    return _pem(key)


def generate_ed25519_key() -> bytes:
    """A new Ed25519 private key as unencrypted PKCS#8 PEM."""
    return _pem(ed25519.Ed25519PrivateKey.generate())


def key_algorithm(private_pem: bytes) -> Algorithm:
    """The DKIM ``a=`` algorithm the key signs with. Raises ``DkimKeyError`` as
    ``public_record`` does."""
    key = _load(private_pem)
    return "rsa-sha256" if isinstance(key, rsa.RSAPrivateKey) else "ed25519-sha256"


def public_record(private_pem: bytes) -> str:
    """The TXT record value to publish at ``<selector>._domainkey.<domain>``.

    RSA: ``v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo DER>`` (RFC 6376 section 3.6.1);
    Ed25519: ``v=DKIM1; k=ed25519; p=<base64 of the 32-byte public key>`` (RFC 8463
    section 4). An RSA value is longer than 255 octets, so DNS carries it as several
    character-strings of one TXT record, which verifiers concatenate. Raises
    ``DkimKeyError`` for PEM that is not an RSA (>= 2048 bits) or Ed25519 private key.
    """
    key = _load(private_pem)
    if isinstance(key, rsa.RSAPrivateKey):
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode('ascii')}"


def ascii_domain(domain: str) -> str:
    """``domain`` as lower-case IDNA A-labels (IDNA 2008 with UTS #46 mapping, as addresses
    are), which is what ``d=`` and DNS need. Raises ``DkimKeyError`` for a name that is
    not a valid host name."""
    try:
        encoded = idna.encode(domain.removesuffix("."), uts46=True, std3_rules=True)
    except UnicodeError as exc:  # idna.IDNAError and the codec errors beneath it
        raise DkimKeyError(f"Not a usable DKIM domain: {domain!r} ({exc}).") from None
    return encoded.decode("ascii")


@dataclass(frozen=True, slots=True)
class DkimKey:
    """One signing key of a domain, as stored; ``private_pem`` is PKCS#8 PEM (decrypted).
    The private key is left out of ``repr`` so that it never reaches a log."""

    domain: str
    selector: str
    algorithm: Algorithm
    private_pem: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, eq=False)
class Signer:
    """A ``DkimKey`` parsed once, ready to sign many messages: ``domain`` is the A-label
    form used in ``d=``. Build it with ``load_signer``."""

    domain: str
    selector: str
    algorithm: Algorithm
    key: PrivateKey = field(repr=False)

    def sign(self, data: bytes) -> bytes:
        """The raw signature of the canonical header data (RFC 6376 section 3.7)."""
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(data, _PKCS1V15, hashes.SHA256())
        # RFC 8463 section 3: Ed25519 (PureEdDSA) signs the SHA-256 hash of the data.
        return self.key.sign(hashlib.sha256(data).digest())


def load_signer(key: DkimKey) -> Signer:
    """``key`` parsed and checked: the PEM holds a private key of ``key.algorithm`` (RSA of
    at least 2048 bits), the selector is a valid DNS name and the domain converts to
    A-labels. Raises ``DkimKeyError`` otherwise."""
    private = _load(key.private_pem)
    actual: Algorithm = "rsa-sha256" if isinstance(private, rsa.RSAPrivateKey) else "ed25519-sha256"
    if actual != key.algorithm:
        msg = f"The key for selector {key.selector!r} is {actual}, not {key.algorithm}."
        raise DkimKeyError(msg)
    if not key.selector.isascii() or not _SELECTOR.fullmatch(key.selector):
        raise DkimKeyError(f"Not a usable DKIM selector: {key.selector!r}.")
    domain = ascii_domain(key.domain)
    if len(f"{key.selector}._domainkey.{domain}") > _MAX_NAME:
        raise DkimKeyError(f"The selector {key.selector!r} makes the DNS name too long.")
    return Signer(domain=domain, selector=key.selector, algorithm=actual, key=private)


def _pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load(private_pem: bytes) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(private_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # TypeError: a password-protected PEM. Stored keys are encrypted by core.crypto.
        raise DkimKeyError("Not an unencrypted PEM private key.") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < RSA_KEY_BITS:
            raise DkimKeyError(f"RSA keys for DKIM have at least {RSA_KEY_BITS} bits.")
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise DkimKeyError("DKIM keys are RSA or Ed25519.")
