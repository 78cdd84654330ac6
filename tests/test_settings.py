"""Settings: the SPEC's environment contract and readable errors for bad values."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from postyard.cli.context import load_settings
from postyard.core.errors import ConfigurationError
from postyard.settings import MAX_AUTO_WORKERS, DeliveryMode, RelayTls, Settings, auto_workers


def test_defaults_match_the_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ["POSTYARD_DATABASE_URL", "POSTYARD_DATA_DIR", "POSTYARD_DELIVERY__MODE"]:
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.database_url is None
    assert settings.data_dir == Path(".postyard")
    assert (settings.http.host, settings.http.port) == ("127.0.0.1", 8000)
    assert (settings.smtp.host, settings.smtp.port) == ("127.0.0.1", 2525)
    assert (settings.mx.host, settings.mx.port) == ("127.0.0.1", 2526)
    assert settings.delivery.mode is DeliveryMode.CAPTURE
    assert settings.delivery.relay_tls is RelayTls.REQUIRED
    assert settings.requires_verified_domain is False
    assert settings.webhooks.allowed_networks == []
    assert settings.delivery.workers == 0  # one worker process per core, at most 4
    assert 1 <= auto_workers(settings.delivery.workers) <= MAX_AUTO_WORKERS


def test_environment_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "POSTYARD_DATABASE_URL": "postgresql://u:p@h:5432/d",
        "POSTYARD_DATA_DIR": "/var/lib/postyard",
        "POSTYARD_HTTP__HOST": "0.0.0.0",
        "POSTYARD_HTTP__PORT": "9000",
        "POSTYARD_SMTP__PORT": "587",
        "POSTYARD_MX__PORT": "25",
        "POSTYARD_DELIVERY__MODE": "relay",
        "POSTYARD_DELIVERY__RELAY_URL": "smtps://user:secret@smtp.example:465",
        "POSTYARD_DELIVERY__RELAY_TLS": "opportunistic",
        "POSTYARD_DELIVERY__WORKERS": "3",
        "POSTYARD_DNS__NAMESERVERS": "127.0.0.1:5353, 10.0.0.2:53",
        "POSTYARD_WEBHOOKS__ALLOWED_NETWORKS": "10.0.0.0/8,fd00::/8",
        "POSTYARD_SECRET_KEY": "s3cret",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.database_url is not None
    assert settings.http.port == 9000
    assert settings.smtp.port == 587
    assert settings.mx.port == 25
    assert settings.delivery.mode is DeliveryMode.RELAY
    assert settings.delivery.relay_tls is RelayTls.OPPORTUNISTIC
    assert auto_workers(settings.delivery.workers) == 3
    assert settings.dns.nameservers == ["127.0.0.1:5353", "10.0.0.2:53"]
    assert settings.webhooks.allowed_networks == [
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("fd00::/8"),
    ]
    assert settings.requires_verified_domain is True
    monkeypatch.setenv("POSTYARD_SENDING__REQUIRE_VERIFIED_DOMAIN", "false")
    assert Settings().requires_verified_domain is False
    with pytest.raises(Exception, match="frozen"):
        settings.http.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("POSTYARD_HTTP__PORT", "abc", "POSTYARD_HTTP__PORT"),
        ("POSTYARD_HTTP__PORT", "70000", "POSTYARD_HTTP__PORT"),
        ("POSTYARD_DATABASE_URL", "mysql://x", "POSTYARD_DATABASE_URL"),
        ("POSTYARD_DATABASE_URL", "postgresql://h:notaport/d", "POSTYARD_DATABASE_URL"),
        ("POSTYARD_DELIVERY__MODE", "pigeon", "POSTYARD_DELIVERY__MODE"),
        ("POSTYARD_DELIVERY__WORKERS", "-1", "POSTYARD_DELIVERY__WORKERS"),
        ("POSTYARD_DELIVERY__RELAY_URL", "http://x", "POSTYARD_DELIVERY__RELAY_URL"),
        (
            "POSTYARD_WEBHOOKS__ALLOWED_NETWORKS",
            "not-a-cidr",
            "POSTYARD_WEBHOOKS__ALLOWED_NETWORKS",
        ),
        ("POSTYARD_LOG_LEVEL", "LOUD", "POSTYARD_LOG_LEVEL"),
    ],
)
def test_bad_settings_are_one_readable_error(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert fragment in message
    assert "\n" not in message


def test_relay_mode_needs_a_relay_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTYARD_DELIVERY__MODE", "relay")
    monkeypatch.delenv("POSTYARD_DELIVERY__RELAY_URL", raising=False)
    with pytest.raises(ConfigurationError, match="RELAY_URL"):
        load_settings()


def test_shaping_warmup_and_pool_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POSTYARD_WARMUP__SCHEDULE", "10,20,40")
    monkeypatch.setenv("POSTYARD_WARMUP__AUTOMATIC", "true")
    monkeypatch.setenv(
        "POSTYARD_SHAPING__POLICIES",
        '{"yahoo": {"max_connections": 2, "messages_per_connection": 20,'
        ' "messages_per_minute": 60}}',
    )
    monkeypatch.setenv("POSTYARD_IP_POOLS__ADDRESSES", '{"192.0.2.5": "mta1.example.com"}')
    monkeypatch.setenv("POSTYARD_IP_POOLS__POOLS", '{"main": ["192.0.2.5"]}')
    monkeypatch.setenv("POSTYARD_IP_POOLS__STREAM_POOLS", '{"bulk": "main"}')
    settings = load_settings()
    assert settings.warmup.schedule == [10, 20, 40]
    assert settings.warmup.automatic
    assert settings.shaping.policies["yahoo"].messages_per_minute == 60
    assert settings.ip_pools.pools == {"main": ["192.0.2.5"]}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("POSTYARD_WARMUP__SCHEDULE", "10,0"),
        ("POSTYARD_IP_POOLS__POOLS", '{"main": ["192.0.2.9"]}'),
        ("POSTYARD_IP_POOLS__DEFAULT_POOL", "missing"),
        ("POSTYARD_IP_POOLS__STREAM_POOLS", '{"promo": "main"}'),
    ],
)
def test_bad_shaping_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv("POSTYARD_IP_POOLS__ADDRESSES", '{"192.0.2.5": "mta1.example.com"}')
    if name != "POSTYARD_IP_POOLS__POOLS":
        monkeypatch.setenv("POSTYARD_IP_POOLS__POOLS", '{"main": ["192.0.2.5"]}')
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError):
        load_settings()
