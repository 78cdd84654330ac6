"""The DNS policy (what our records point at) from the operator's settings."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from postyard.domains.types import DnsPolicy
from postyard.settings import Settings


def dns_policy(settings: Settings) -> DnsPolicy:
    """Return-path MX host, SPF mechanisms and tracking host for every domain's records."""
    mx_host = settings.mx.public_host or settings.delivery.helo_name or socket.getfqdn()
    tracking = urlsplit(settings.http.public_url).hostname if settings.http.public_url else None
    return DnsPolicy(
        return_path_mx_host=mx_host,
        spf_mechanisms=settings.sending.spf_mechanisms or f"a:{mx_host}",
        tracking_host=tracking,
    )
