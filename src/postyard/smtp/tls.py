"""Server certificates for STARTTLS and implicit TLS: the configured pair, or a self-signed
pair generated in the data dir on first start (for local use; clients will not trust it
unless told to)."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import ssl
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from postyard.core.errors import ConfigurationError
from postyard.settings import SmtpSettings

SELF_SIGNED_DIR = "smtp-tls"
CERT_FILE = "selfsigned.crt"
KEY_FILE = "selfsigned.key"
# Long enough not to bother a developer, short enough that a forgotten one expires.
VALIDITY = timedelta(days=825)


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A server-side context for the pair; raises ConfigurationError when a file is missing
    or the pair does not load."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8996: no TLS 1.0/1.1
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        msg = f"cannot load the SMTP TLS certificate {cert_file} with key {key_file}: {exc}"
        raise ConfigurationError(msg) from exc
    return context


def role_context(
    smtp: SmtpSettings, data_dir: Path, hostname: str, *, now: datetime
) -> ssl.SSLContext:
    """The server context of the SMTP listeners (submission and MX): the configured pair,
    else the self-signed one in ``data_dir``."""
    if smtp.tls_cert_file is not None and smtp.tls_key_file is not None:
        return server_context(smtp.tls_cert_file, smtp.tls_key_file)
    cert, key = ensure_self_signed(data_dir, hostname, now=now)
    return server_context(cert, key)


def ensure_self_signed(data_dir: Path, hostname: str, *, now: datetime) -> tuple[Path, Path]:
    """The (certificate, key) files of the self-signed pair in ``data_dir``, generated when
    missing or expired. The key file is 0600. Safe when several processes start at once
    (a lock file serialises them). Raises ConfigurationError when the files cannot be
    written."""
    directory = data_dir / SELF_SIGNED_DIR
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with _locked(directory / ".lock"):
            if not _usable(cert_path, key_path, now):
                cert_pem, key_pem = _generate(hostname, now)
                _write(key_path, key_pem, 0o600)
                _write(cert_path, cert_pem, 0o644)
    except OSError as exc:
        msg = f"cannot write the self-signed SMTP certificate in {directory}: {exc.strerror}"
        raise ConfigurationError(msg) from exc
    return cert_path, key_path


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _usable(cert_path: Path, key_path: Path, now: datetime) -> bool:
    if not key_path.exists():
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        return False
    return cert.not_valid_after_utc > now + timedelta(days=1)


def _write(path: Path, content: bytes, mode: int) -> None:
    # A temporary file renamed into place: readers never see half a file.
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def _generate(hostname: str, now: datetime) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    alt_names: list[x509.GeneralName] = [
        x509.DNSName(hostname),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem
