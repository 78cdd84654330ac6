"""The delivery worker's settings groups: delivery, warm-up, per-site shaping, IP pools."""

from __future__ import annotations

import ipaddress
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from postyard.settings_base import DeliveryMode, Group, RelayTls, check_port, split_csv


class DeliverySettings(Group):
    mode: DeliveryMode = DeliveryMode.CAPTURE
    """Where accepted mail goes: the built-in capture inbox, a smarthost relay, or direct MX."""
    relay_url: SecretStr | None = None
    """Smarthost for relay mode: smtp://user:pass@host:port (smtps:// for implicit TLS)."""
    relay_tls: RelayTls = RelayTls.REQUIRED
    """TLS towards the smarthost: required, opportunistic or none."""
    helo_name: str | None = None
    """Name given in EHLO (default: this host's FQDN); should match the sending IP's PTR."""
    retry_delays: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [60, 300, 900, 1800, 3600, 7200, 14400, 28800]
    )
    """Seconds between attempts after a temporary failure (the last repeats), ±10% jitter."""
    max_age_hours: float = Field(default=72, gt=0)
    """Temporary failures turn into `failed` once a recipient has waited this long."""
    batch_size: int = Field(default=200, ge=1, le=5000)
    """Recipients a worker lane claims at once."""
    lanes: int = Field(default=4, ge=1, le=64)
    """Concurrent claim-deliver-record loops per worker process."""
    claim_interval: float = Field(default=0.1, ge=0, le=5)
    """Seconds a worker waits after a claim that took every due recipient before claiming
    again, so recipients committed meanwhile are claimed together (a claim that left some
    behind is followed at once); each of `postyard up`'s N worker processes waits N times
    this. 0: claim as soon as woken."""
    concurrency: int = Field(default=100, ge=1, le=10000)
    """SMTP transactions in flight per worker process."""
    nice: int = Field(default=10, ge=0, le=19)
    """How much lower the CPU priority of a process running only the worker role is
    (`postyard worker`, `postyard up`'s worker processes; Unix nice): when they compete for
    CPU, accepting mail (API, SMTP relay), which clients wait on, goes first and delivery
    catches up in bigger batches. 0: the same priority."""
    max_connections_per_destination: int = Field(default=10, ge=1, le=1000)
    """Open SMTP connections per relay or MX host, divided among the worker processes of
    `postyard up` in relay and mx mode (in capture mode each has a capture server of its own)."""
    max_messages_per_connection: int = Field(default=100, ge=1)
    """Messages sent over one SMTP connection before it is replaced."""
    chunking: bool = True
    """Where a server offers CHUNKING and PIPELINING, send the message as one BDAT chunk in
    the envelope's write (RFC 3030): one round trip per message instead of two."""
    lease_seconds: float = Field(default=900, gt=0)
    """How long a worker holds recipients it claimed; after that another worker retries them."""
    mx_port: int = Field(default=25, ge=1, le=65535)
    """Port of remote MX servers (25; tests point it at local servers)."""
    workers: int = Field(default=0, ge=0, le=64)
    """Worker processes `postyard up` runs, each with a delivery worker and a webhook
    dispatcher; 0: one per CPU core, at most 4."""

    _split = field_validator("retry_delays", mode="before")(split_csv)

    @field_validator("relay_url")
    @classmethod
    def _relay_url_parses(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
            msg = "must look like smtp://user:pass@host:port or smtps://host:port"
            raise ValueError(msg)
        check_port(parts)
        return value

    @model_validator(mode="after")
    def _relay_needs_url(self) -> DeliverySettings:
        if self.mode is DeliveryMode.RELAY and self.relay_url is None:
            msg = "POSTYARD_DELIVERY__RELAY_URL is required when the mode is relay"
            raise ValueError(msg)
        return self


# Doubling at first, then about half again per day: day 1 = 50, day 14 = 75,000.
_RAMP = (50, 100, 200, 400, 800, 1500, 3000, 5000, 8000, 12000, 20000, 30000, 50000, 75000)
# A new address carries every tenant's mail from it: a steeper ramp over about three weeks,
# in the range mailbox providers and ESPs publish for new dedicated IPs.
_IP_RAMP = (200, 500, 1000, 2000, 5000, 10000, 20000, 40000, 70000, 100000, 150000, 250000,
            400000, 600000, 1000000)  # fmt: skip


class WarmupSettings(Group):
    schedule: Annotated[list[int], NoDecode] = Field(default_factory=lambda: list(_RAMP))
    """Daily allowance per sending domain on day 1, 2, … of its warm-up; no limit afterwards."""
    automatic: bool = False
    """Every sending domain warms up from its first send (otherwise only domains given a
    warm-up with `postyard warmup set`)."""
    ip_schedule: Annotated[list[int], NoDecode] = Field(default_factory=lambda: list(_IP_RAMP))
    """Daily allowance per source address of the IP pools on day 1, 2, … of its warm-up."""
    ips_automatic: bool = False
    """Every source address of the IP pools warms up from its first send (otherwise only
    addresses given a warm-up with `postyard warmup set-ip`)."""

    _split = field_validator("schedule", "ip_schedule", mode="before")(split_csv)

    @field_validator("schedule", "ip_schedule")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(n < 1 for n in value):
            msg = "daily allowances must be positive"
            raise ValueError(msg)
        return value


class SitePolicySettings(Group):
    max_connections: int = Field(ge=1, le=1000)
    messages_per_connection: int = Field(ge=1)
    messages_per_minute: int = Field(ge=1)


class ShapingSettings(Group):
    enabled: bool = True
    """Per-destination shaping in mx mode (relay and capture modes send to one host)."""
    policies: dict[str, SitePolicySettings] = Field(default_factory=dict)
    """Overrides of the site policies as JSON, e.g. {"yahoo": {"max_connections": 2,
    "messages_per_connection": 20, "messages_per_minute": 60}}; keys are google, microsoft,
    yahoo, apple, default, or a recipient domain."""
    backoff_seconds: float = Field(default=60, gt=0)
    """How long a throttled site is suspended; doubles with each throttle in a row."""
    max_backoff_seconds: float = Field(default=1800, gt=0)
    """Longest suspension after throttles in a row."""
    recovery_seconds: float = Field(default=300, gt=0)
    """After this long without a throttle a slowed site gets a tenth of its rate back."""


class IpPoolSettings(Group):
    addresses: dict[str, str] = Field(default_factory=dict)
    """Outgoing IP addresses of this host and the EHLO name of each (its PTR name), as JSON:
    {"203.0.113.5": "mta1.example.com"}."""
    pools: dict[str, list[str]] = Field(default_factory=dict)
    """Named pools of those addresses, as JSON: {"transactional": ["203.0.113.5"], ...}."""
    stream_pools: dict[str, str] = Field(default_factory=dict)
    """Pool of each stream for tenants without an assignment: {"bulk": "shared-bulk"}."""
    default_pool: str | None = None
    """Pool for everything else; unset: the operating system picks the address."""

    @model_validator(mode="after")
    def _consistent(self) -> IpPoolSettings:
        for name, members in self.pools.items():
            unknown = [a for a in members if a not in self.addresses]
            if unknown or not members:
                msg = f"pool {name!r} needs addresses listed in addresses (unknown: {unknown})"
                raise ValueError(msg)
        for address in self.addresses:
            ipaddress.ip_address(address)
        for pool in [*self.stream_pools.values(), self.default_pool]:
            if pool is not None and pool not in self.pools:
                msg = f"unknown pool {pool!r}"
                raise ValueError(msg)
        if set(self.stream_pools) - {"transactional", "bulk"}:
            msg = "stream_pools keys are transactional and bulk"
            raise ValueError(msg)
        return self
