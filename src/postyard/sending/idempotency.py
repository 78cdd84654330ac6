"""Idempotency-Key for the send endpoints: a replay with the same key and body returns the
first response without sending again (24 hours); a different body is a 409; a key still in
use by a running request is a 409 too.

The record is written in the same transaction as the messages, so a request that fails
leaves no record and its key can be used again.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from postyard.core.db import TenantId
from postyard.sending.errors import (
    ConcurrentIdempotentRequests,
    InvalidIdempotencyKey,
    InvalidIdempotentRequest,
)
from postyard.sending.models import IdempotencyRecord

KEEP_FOR = timedelta(hours=24)
MAX_KEY_LENGTH = 256
_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(hashtextextended(CAST(:scope AS text), 0))")


def validate_key(key: str) -> str:
    """The key, or InvalidIdempotencyKey (1-256 printable ASCII characters)."""
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all(" " <= c <= "~" for c in key):
        msg = f"The Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters."
        raise InvalidIdempotencyKey(msg)
    return key


def fingerprint(endpoint: str, payload: Any) -> bytes:
    """A digest of the request that a replay must match (canonical JSON of the body)."""
    canonical = json.dumps([endpoint, payload], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).digest()


async def begin(
    session: AsyncSession, tenant_id: TenantId, key: str, request_hash: bytes
) -> dict[str, Any] | None:
    """The stored response to replay, or None when this request should run. Holds a
    transaction-scoped lock on the key until the caller's transaction ends."""
    locked = await session.scalar(_TRY_LOCK, {"scope": f"{tenant_id}:{key}"})
    if not locked:
        msg = "A request with this Idempotency-Key is still being processed; retry shortly."
        raise ConcurrentIdempotentRequests(msg)
    record = await session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.tenant_id == tenant_id,
            IdempotencyRecord.key == key,
            IdempotencyRecord.expires_at > func.now(),
        )
    )
    if record is None:
        return None
    if record.request_hash != request_hash:
        msg = "This Idempotency-Key was already used with a different request body."
        raise InvalidIdempotentRequest(msg)
    return record.response


async def complete(
    session: AsyncSession,
    tenant_id: TenantId,
    key: str,
    request_hash: bytes,
    response: dict[str, Any],
) -> None:
    """Store the response under the key (replacing an expired record)."""
    values = {
        "tenant_id": tenant_id,
        "key": key,
        "request_hash": request_hash,
        "response": response,
        "expires_at": func.now() + KEEP_FOR,
    }
    stmt = insert(IdempotencyRecord).values(values)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[IdempotencyRecord.tenant_id, IdempotencyRecord.key],
            set_={k: stmt.excluded[k] for k in ("request_hash", "response", "expires_at")}
            | {"created_at": func.now()},
        )
    )


async def forget_expired(session: AsyncSession) -> int:
    """Delete records past their 24 hours (maintenance; session: a system_tx)."""
    result = await session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= func.now())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
