"""One frozen Settings object, read from the environment (prefix ``POSTYARD_``, nested ``__``).

Loaded only by entry points (the CLI) and passed down; nothing reads the environment at
import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from postyard.settings_base import (
    MAX_AUTO_WORKERS,
    DeliveryMode,
    Group,
    LogFormat,
    Network,
    RelayTls,
    auto_workers,
    check_port,
    split_csv,
)
from postyard.settings_delivery import (
    DeliverySettings,
    IpPoolSettings,
    ShapingSettings,
    SitePolicySettings,
    WarmupSettings,
)

__all__ = [
    "MAX_AUTO_WORKERS",
    "DbSettings",
    "DeliveryMode",
    "DeliverySettings",
    "DnsSettings",
    "HttpSettings",
    "IpPoolSettings",
    "LogFormat",
    "MxSettings",
    "Network",
    "RelayTls",
    "RetentionSettings",
    "SendingSettings",
    "Settings",
    "ShapingSettings",
    "SitePolicySettings",
    "SmtpSettings",
    "TrackingSettings",
    "WarmupSettings",
    "WebhookSettings",
    "auto_workers",
]


class HttpSettings(Group):
    host: str = "127.0.0.1"
    """Address the REST API listens on."""
    port: int = Field(default=8000, ge=0, le=65535)
    """TCP port of the REST API (0 picks a free port)."""
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    """Largest request body accepted; larger bodies get 413 before they are read."""
    rate_limit_per_second: int = Field(default=50, ge=0)
    """Requests per second per API key, counted across all API processes (0: no limit)."""
    public_url: str | None = None
    """Base URL printed in the banner and used in links (default: http://HOST:PORT)."""
    workers: int = Field(default=0, ge=0, le=64)
    """API processes `postyard up` runs on the one port (SO_REUSEPORT); 0: one per CPU core,
    at most 4."""
    group_commit_window: float = Field(default=0.0, ge=0, le=60)
    """Seconds a single send (POST /v1/emails without an Idempotency-Key) waits for others
    of the same API key to share its transaction; 0: none (sends still share one while an
    earlier transaction of that key commits)."""
    group_commit_max_messages: int = Field(default=100, ge=1, le=1000)
    """Most single sends stored in one transaction (group commit); 1: each alone."""
    metrics_token: SecretStr | None = None
    """Bearer token of GET /metrics (Prometheus), at least 16 characters; unset: the path is
    not served."""

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < 16:
            raise ValueError("the metrics token must be at least 16 characters long")
        return value


class SmtpSettings(Group):
    host: str = "127.0.0.1"
    """Address of the SMTP submission server (the relay applications send through)."""
    port: int = Field(default=2525, ge=0, le=65535)
    """TCP port of the SMTP submission server."""
    implicit_tls_port: int | None = Field(default=None, ge=0, le=65535)
    """Port of a second listener that speaks TLS from the first byte (465 style); unset: none."""
    hostname: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]{1,253}$")
    """Name in the greeting, the EHLO reply and a generated certificate (default: the FQDN)."""
    tls_cert_file: Path | None = None
    """PEM certificate chain for STARTTLS and implicit TLS; unset: self-signed, in data_dir."""
    tls_key_file: Path | None = None
    """PEM private key of tls_cert_file (set both or neither)."""
    allow_auth_without_tls_on_loopback: bool = True
    """Offer AUTH without TLS to loopback clients (local development); others must use TLS."""
    max_message_bytes: int = Field(default=40 * 1024 * 1024, ge=1024)
    """Largest message accepted, advertised as SIZE (RFC 1870); larger ones get 552 5.3.4."""
    max_recipients: int = Field(default=50, ge=1, le=1000)
    """RCPT TO accepted per message; the next one gets 452 4.5.3."""
    max_connections_per_ip: int = Field(default=20, ge=1)
    """Connections one client address may hold open at once, per process; more get 421 4.7.0."""
    idle_timeout: float = Field(default=300, gt=0)
    """Seconds to wait for the next command before closing with 421 (RFC 5321 4.5.3.2.7)."""
    command_timeout: float = Field(default=600, gt=0)
    """Seconds one DATA or AUTH exchange may take before closing with 421 (RFC 5321 4.5.3.2)."""
    max_messages_per_connection: int = Field(default=100, ge=1)
    """Mail transactions per connection (advertised as LIMITS MAILMAX); then 421 4.7.0."""
    auth_failures_before_lockout: int = Field(default=5, ge=1)
    """Failed AUTH attempts from one address within auth_lockout_seconds before a lockout."""
    auth_lockout_seconds: float = Field(default=300, gt=0)
    """How long a locked-out address gets 454 4.7.0 to every AUTH (counted per process)."""
    workers: int = Field(default=0, ge=0, le=64)
    """SMTP processes `postyard up` runs on the same ports (SO_REUSEPORT); 0: one per CPU
    core, at most 4."""
    group_commit_window: float = Field(default=0.005, ge=0, le=60)
    """Seconds the first message of a group waits for others of the same API key to share
    its transaction; 0: none (messages still share one while an earlier one commits)."""
    group_commit_max_messages: int = Field(default=100, ge=1, le=1000)
    """Most messages stored in one transaction (group commit); 1: each message alone."""

    @model_validator(mode="after")
    def _certificate_with_key(self) -> SmtpSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            msg = "POSTYARD_SMTP__TLS_CERT_FILE and POSTYARD_SMTP__TLS_KEY_FILE go together"
            raise ValueError(msg)
        return self


class MxSettings(Group):
    host: str = "127.0.0.1"
    """Address of the inbound MX listener (bounces, complaints, inbound mail)."""
    port: int = Field(default=2526, ge=0, le=65535)
    """TCP port of the inbound MX listener (25 in production)."""
    public_host: str | None = None
    """Host name remote servers reach the MX listener by: the MX record of every return-path
    subdomain points here (default: the delivery HELO name or this host's FQDN)."""
    max_message_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    """Largest report accepted (a DSN may quote the whole message), advertised as SIZE."""
    max_recipients: int = Field(default=100, ge=1, le=1000)
    """RCPT TO accepted per report; the next one gets 452 4.5.3."""
    max_connections_per_ip: int = Field(default=20, ge=1)
    """Connections one client address may hold open at once, per process; more get 421 4.7.0."""
    idle_timeout: float = Field(default=300, gt=0)
    """Seconds to wait for the next command before closing with 421."""
    command_timeout: float = Field(default=600, gt=0)
    """Seconds one DATA exchange may take before closing with 421."""
    max_messages_per_connection: int = Field(default=100, ge=1)
    """Reports per connection (advertised as LIMITS MAILMAX); then 421 4.7.0."""


class SendingSettings(Group):
    require_verified_domain: bool | None = None
    """Whether the From domain must be verified; unset means false in capture mode, else true."""
    return_path_subdomain: str = Field(
        default="send", pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
    )
    """Default return-path (bounce) subdomain of new domains, as Resend's `send`."""
    spf_mechanisms: str | None = None
    """SPF mechanisms of the sending IPs/hosts (e.g. "ip4:203.0.113.5 include:_spf.example.net");
    default: "a:<MX public host>"."""


class DnsSettings(Group):
    nameservers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Resolvers as host:port,...; empty means the system resolver."""

    _split = field_validator("nameservers", mode="before")(split_csv)


class WebhookSettings(Group):
    allowed_networks: Annotated[list[Network], NoDecode] = Field(default_factory=list)
    """CIDRs of private networks webhook URLs may reach (default: none)."""
    concurrency_per_endpoint: int = Field(default=16, ge=1, le=1000)
    """Attempts (so connections) in flight per webhook endpoint; `postyard up` divides it among
    its worker processes."""
    batch_size: int = Field(default=200, ge=1, le=5000)
    """Deliveries a dispatcher lane claims at once."""
    lanes: int = Field(default=2, ge=1, le=64)
    """Concurrent claim-send-record loops per worker process."""
    claim_interval: float = Field(default=0.1, ge=0, le=5)
    """Seconds a dispatcher waits after a claim that took every due delivery before claiming
    again, so events committed meanwhile are claimed together (a claim that left some behind
    is followed at once); each of `postyard up`'s N worker processes waits N times this.
    0: claim as soon as woken."""
    lease_seconds: float = Field(default=600, gt=0)
    """How long a worker holds deliveries it claimed; after that another worker retries them."""
    rotation_overlap_hours: float = Field(default=24, gt=0, le=24 * 30)
    """After a secret rotation, how long the old secret keeps signing beside the new one."""

    _split = field_validator("allowed_networks", mode="before")(split_csv)


class TrackingSettings(Group):
    base_url: str | None = Field(
        default=None, pattern=r"^https?://[A-Za-z0-9.:\[\]-]+(?:/[A-Za-z0-9._~/-]*)?$"
    )
    """Public base URL of the tracking host (open pixel, click redirect, unsubscribe page);
    default: POSTYARD_HTTP__PUBLIC_URL. Must be https:// for one-click unsubscribe."""
    unsubscribe_max_age_days: int = Field(default=60, ge=30, le=3650)
    """How long an unsubscribe link keeps working (CAN-SPAM asks for 30 days at least)."""
    image_proxy_opens_are_machine: bool = False
    """Count opens through Gmail's and Yahoo's image proxies as machine opens (default: human,
    because those proxies fetch when the reader opens the message)."""
    apple_proxy_networks: Annotated[list[Network] | None, NoDecode] = None
    """CIDRs of Apple Mail Privacy Protection's proxies (default: Apple's 17.0.0.0/8)."""
    scanner_networks: Annotated[list[Network] | None, NoDecode] = None
    """CIDRs whose clicks are link scans (default: Microsoft's mail-protection ranges)."""
    scanner_agents: Annotated[list[str] | None, NoDecode] = None
    """User-agent markers of link scanners (default: the built-in list; see docs/security.md)."""
    min_seconds_after_delivery: float = Field(default=2, ge=0)
    """Opens and clicks sooner than this after delivery are machine."""

    _split = field_validator(
        "apple_proxy_networks", "scanner_networks", "scanner_agents", mode="before"
    )(split_csv)


class RetentionSettings(Group):
    content_days: int = Field(default=30, ge=0)
    """Days the built MIME of a message (with its attachments: most of what is stored) is
    kept once every recipient has an outcome; it is only needed to deliver. 0: kept forever."""


class DbSettings(Group):
    app_role: str = Field(default="postyard_app", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    """Login role the application uses; subject to row-level security."""
    system_role: str = Field(default="postyard_system", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    """Login role used only through system_tx (cross-tenant work: auth lookup, workers)."""
    pool_size: int = Field(default=10, ge=1, le=200)
    """Connections kept per role and process."""
    manage_roles: bool = True
    """migrate creates the two roles and sets their passwords (needs CREATEROLE)."""
    app_password: SecretStr | None = None
    """Password of the app role; unset means one derived from the secret key."""
    system_password: SecretStr | None = None
    """Password of the system role; unset means one derived from the secret key."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="POSTYARD_",
        env_nested_delimiter="__",
        frozen=True,
        extra="ignore",
        case_sensitive=False,
    )

    database_url: SecretStr | None = None
    """PostgreSQL URL of the owner role (runs migrations); unset starts an embedded server."""
    data_dir: Path = Path(".postyard")
    """Directory for the embedded PostgreSQL, the generated secret key and local state."""
    secret_key: SecretStr | None = None
    """Signing/encryption root secret; unset means a key file generated in the data dir."""
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    """Log level of every role."""
    log_format: LogFormat = LogFormat.JSON
    """Logs as one JSON object per line (json) or readable lines (text)."""
    http: HttpSettings = HttpSettings()
    smtp: SmtpSettings = SmtpSettings()
    mx: MxSettings = MxSettings()
    delivery: DeliverySettings = DeliverySettings()
    sending: SendingSettings = SendingSettings()
    warmup: WarmupSettings = WarmupSettings()
    shaping: ShapingSettings = ShapingSettings()
    ip_pools: IpPoolSettings = IpPoolSettings()
    dns: DnsSettings = DnsSettings()
    webhooks: WebhookSettings = WebhookSettings()
    tracking: TrackingSettings = TrackingSettings()
    retention: RetentionSettings = RetentionSettings()
    db: DbSettings = DbSettings()

    @field_validator("database_url")
    @classmethod
    def _database_url_parses(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in {"postgresql", "postgres", "postgresql+asyncpg"}:
            msg = "must be a postgresql:// URL"
            raise ValueError(msg)
        check_port(parts)
        return value

    @property
    def tracking_base_url(self) -> str:
        """Where tracking and unsubscribe links point (no trailing slash)."""
        base = self.tracking.base_url or self.http.public_url
        if base is None:
            base = f"http://{self.http.host}:{self.http.port}"
        return base.rstrip("/")

    @property
    def requires_verified_domain(self) -> bool:
        """The effective sending rule (SPEC: off in capture mode unless set, on otherwise)."""
        if self.sending.require_verified_domain is not None:
            return self.sending.require_verified_domain
        return self.delivery.mode is not DeliveryMode.CAPTURE
