"""The addresses the MX listener accepts, on return-path domains only (pure).

- ``b+<VERP token>@<return-path domain>``: bounces (``delivery.verp``).
- ``u+<mailto token>@<return-path domain>``: mailto unsubscribes (``tracking.unsubscribe``).
- ``fbl@<return-path domain>``: the feedback address to register with feedback loops
  (Yahoo CFBL, Microsoft JMRP, …) and to publish as ``CFBL-Address``.

Tokens are only checked for shape here; their MACs are verified when the report is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from postyard.delivery.verp import LOCAL_PREFIX as BOUNCE_PREFIX
from postyard.tracking.unsubscribe import MAILTO_PREFIX as UNSUBSCRIBE_PREFIX

FEEDBACK_LOCAL_PART = "fbl"
_TOKEN = re.compile(r"[a-z2-7-]{1,62}")


class AddressKind(StrEnum):
    BOUNCE = "bounce"
    UNSUBSCRIBE = "unsubscribe"
    FEEDBACK = "feedback"


@dataclass(frozen=True, slots=True)
class InboundAddress:
    kind: AddressKind
    token: str
    """The token after the prefix (lowercase); empty for the feedback address."""
    domain: str
    """Lowercase ASCII domain."""
    address: str


def inbound_address(address: str) -> InboundAddress | None:
    """What ``address`` is to the MX listener, or None when it is none of its addresses
    (whatever the domain: the caller checks the domain is a return-path domain)."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain or not domain.isascii():
        return None
    local, domain = local.lower(), domain.lower().rstrip(".")
    if local == FEEDBACK_LOCAL_PART:
        return InboundAddress(AddressKind.FEEDBACK, "", domain, f"{local}@{domain}")
    for prefix, kind in (
        (BOUNCE_PREFIX, AddressKind.BOUNCE),
        (UNSUBSCRIBE_PREFIX, AddressKind.UNSUBSCRIBE),
    ):
        if local.startswith(prefix):
            token = local[len(prefix) :]
            if _TOKEN.fullmatch(token):
                return InboundAddress(kind, token, domain, f"{local}@{domain}")
            return None
    return None
