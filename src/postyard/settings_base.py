"""What every settings module shares: the enums, the frozen group base and its helpers."""

from __future__ import annotations

import ipaddress
import os
from enum import StrEnum
from typing import Any
from urllib.parse import SplitResult

from pydantic import BaseModel, ConfigDict

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class DeliveryMode(StrEnum):
    CAPTURE = "capture"
    RELAY = "relay"
    MX = "mx"


class RelayTls(StrEnum):
    REQUIRED = "required"
    OPPORTUNISTIC = "opportunistic"
    NONE = "none"


class LogFormat(StrEnum):
    JSON = "json"
    TEXT = "text"


class Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


MAX_AUTO_WORKERS = 4


def auto_workers(configured: int) -> int:
    """The number of processes a ``workers`` setting asks for (0: one per core, at most 4)."""
    if configured > 0:
        return configured
    return max(1, min(os.cpu_count() or 1, MAX_AUTO_WORKERS))


def check_port(parts: SplitResult) -> None:
    """Raises ValueError for a URL whose port is not a number from 0 to 65535."""
    try:
        _ = parts.port
    except ValueError as exc:
        msg = "has an invalid port"
        raise ValueError(msg) from exc
