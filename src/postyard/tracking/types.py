"""Values other domains and adapters use: the tracking configuration, streams, counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

from postyard.tracking.machine import MachineRules


class Stream(StrEnum):
    """What kind of mail a message is. Bulk mail gets List-Unsubscribe (RFC 8058) and CFBL
    headers; shaping and fair scheduling tell the two apart."""

    TRANSACTIONAL = "transactional"
    BULK = "bulk"


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackingConfig:
    """Built once at start-up from the settings and the root secret, injected."""

    key: bytes
    """HMAC key of every tracking token (derived from the root secret for this purpose)."""
    base_url: str
    """Public base URL of the tracking host, without a trailing slash."""
    rules: MachineRules = field(default_factory=MachineRules)
    image_proxy_opens_are_machine: bool = False
    unsubscribe_max_age: timedelta = timedelta(days=60)

    @property
    def one_click_possible(self) -> bool:
        """RFC 8058 one-click needs an https:// unsubscribe URL."""
        return self.base_url.lower().startswith("https://")


@dataclass(frozen=True, slots=True)
class Engagement:
    """Opens and clicks of one message, human and machine apart."""

    opens: int
    machine_opens: int
    clicks: int
    machine_clicks: int
    unsubscribed: bool
