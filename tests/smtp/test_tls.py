"""Certificates (configured or self-signed in the data dir) and the role's start-up: several
processes on one port, readable configuration errors."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from pydantic import ValidationError

from postyard.core.clock import SystemClock
from postyard.core.db import Database
from postyard.core.errors import ConfigurationError
from postyard.settings import Settings, SmtpSettings
from postyard.smtp.tls import ensure_self_signed, server_context
from postyard.smtpd import smtp_role
from tests.conftest import Tenant
from tests.smtp import GUARD_SECONDS, HOSTNAME, running_relay

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_self_signed_pair_is_generated_once(tmp_path: Path) -> None:
    cert_path, key_path = ensure_self_signed(tmp_path, "mail.example.com", now=NOW)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "mail.example.com" in names.get_values_for_type(x509.DNSName)
    assert cert.not_valid_after_utc > NOW + timedelta(days=365)
    first = cert_path.read_bytes(), key_path.read_bytes()
    assert ensure_self_signed(tmp_path, "mail.example.com", now=NOW) == (cert_path, key_path)
    assert (cert_path.read_bytes(), key_path.read_bytes()) == first
    server_context(cert_path, key_path)  # the pair loads


def test_an_expiring_self_signed_pair_is_replaced(tmp_path: Path) -> None:
    cert_path, _ = ensure_self_signed(tmp_path, "mail.example.com", now=NOW)
    first = cert_path.read_bytes()
    ensure_self_signed(tmp_path, "mail.example.com", now=NOW + timedelta(days=900))
    assert cert_path.read_bytes() != first


def test_certificate_errors_are_readable(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot load the SMTP TLS certificate"):
        server_context(tmp_path / "missing.crt", tmp_path / "missing.key")
    with pytest.raises(ValidationError, match="go together"):
        SmtpSettings(tls_cert_file=tmp_path / "only.crt")


async def test_starttls_with_the_generated_certificate(
    settings: Settings, db: Database, tmp_path: Path, tenant: Tenant
) -> None:
    def talk(port: int, cafile: Path) -> tuple[int, bytes]:
        context = ssl.create_default_context(cafile=str(cafile))
        with smtplib.SMTP("localhost", port, timeout=GUARD_SECONDS) as client:
            client.starttls(context=context)
            return client.login("resend", tenant.key.token)

    async with running_relay(settings, db, data_dir=tmp_path, tls=None) as role:
        cafile = tmp_path / "smtp-tls" / "selfsigned.crt"
        assert await asyncio.to_thread(talk, role.port, cafile) == (
            235,
            b"2.7.0 Authentication successful",
        )
    cert = x509.load_pem_x509_certificate(cafile.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert HOSTNAME in names.get_values_for_type(x509.DNSName)


async def test_several_roles_share_a_port_with_reuse_port(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    first_settings = settings.model_copy(
        update={"smtp": SmtpSettings(host="127.0.0.1", port=0, hostname=HOSTNAME)}
    )
    clock = SystemClock()
    async with smtp_role(first_settings, db, clock, data_dir=tmp_path, reuse_port=True) as one:
        same_port = first_settings.model_copy(
            update={"smtp": SmtpSettings(host="127.0.0.1", port=one.port, hostname=HOSTNAME)}
        )
        async with smtp_role(same_port, db, clock, data_dir=tmp_path, reuse_port=True) as two:
            assert two.port == one.port
        with pytest.raises(ConfigurationError, match="address already in use"):
            async with smtp_role(same_port, db, clock, data_dir=tmp_path):
                pass
