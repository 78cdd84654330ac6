"""CFBL headers (RFC 9477, complaint feedback loops), pure.

Bulk mail names the feedback address on its return-path domain in ``CFBL-Address`` and an
opaque ``CFBL-Feedback-ID``; a mailbox provider that runs a CFBL sends ARF reports there
with the original headers, so the report can be tied back to the tenant and message. The
ID carries both ids and a MAC, so a forged report cannot name another tenant's message.
Both fields are covered by the DKIM signature (RFC 9477 section 3.1 requires it for
CFBL-Address; ``domains.dkim.SIGNED_HEADERS`` lists both).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass

from postyard.core.db import TenantId

CFBL_ADDRESS = "CFBL-Address"
CFBL_FEEDBACK_ID = "CFBL-Feedback-ID"
FEEDBACK_LOCAL_PART = "fbl"
"""The feedback mailbox is ``fbl@<return-path domain>``; the MX listener accepts ARF there."""
_MAC_HEX = 20  # 80 bits: checked online, one report at a time
_FEEDBACK_ID = re.compile(r"([0-9a-f]{32})\.([0-9a-f]{32})\.([0-9a-f]{20})")


@dataclass(frozen=True, slots=True)
class FeedbackRef:
    tenant_id: TenantId
    message_id: uuid.UUID


def _mac(key: bytes, tenant_id: uuid.UUID, message_id: uuid.UUID) -> str:
    signed = b"postyard/cfbl\x00" + tenant_id.bytes + message_id.bytes
    return hmac.new(key, signed, hashlib.sha256).hexdigest()[:_MAC_HEX]


def make_feedback_id(key: bytes, tenant_id: TenantId, message_id: uuid.UUID) -> str:
    """``<tenant hex>.<message hex>.<MAC>``: 84 characters of lowercase hex and dots."""
    return f"{tenant_id.hex}.{message_id.hex}.{_mac(key, tenant_id, message_id)}"


def parse_feedback_id(key: bytes, value: str) -> FeedbackRef | None:
    """The tenant and message a ``CFBL-Feedback-ID`` names, or None when it is not one
    this key made (malformed or forged)."""
    match = _FEEDBACK_ID.fullmatch(value.strip().lower())
    if match is None:
        return None
    tenant_id, message_id = uuid.UUID(match.group(1)), uuid.UUID(match.group(2))
    if not hmac.compare_digest(match.group(3), _mac(key, tenant_id, message_id)):
        return None
    return FeedbackRef(TenantId(tenant_id), message_id)


def cfbl_headers(
    key: bytes, *, return_path_domain: str, tenant_id: TenantId, message_id: uuid.UUID
) -> list[tuple[str, str]]:
    """``CFBL-Address: fbl@<return path>; report=arf`` and ``CFBL-Feedback-ID``."""
    address = f"{FEEDBACK_LOCAL_PART}@{return_path_domain.lower()}"
    return [
        (CFBL_ADDRESS, f"{address}; report=arf"),
        (CFBL_FEEDBACK_ID, make_feedback_id(key, tenant_id, message_id)),
    ]
