"""The root secret: from settings, or a key file generated in the data dir on first start."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from postyard.core.errors import ConfigurationError

KEY_FILE = "secret.key"


def load_or_create_secret(data_dir: Path, configured: str | None) -> bytes:
    """The configured secret, else the data dir's key file (created 0600 when missing)."""
    if configured:
        return configured.encode()
    path = data_dir / KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    value = secrets.token_urlsafe(48).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    except OSError as exc:
        msg = f"cannot write the secret key file {path}: {exc.strerror}"
        raise ConfigurationError(msg) from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(value + b"\n")
    return value


def derive(secret: bytes, purpose: str) -> str:
    """A hex sub-key of the root secret for one purpose (e.g. a database role's password)."""
    return hmac.new(secret, purpose.encode(), hashlib.sha256).hexdigest()
