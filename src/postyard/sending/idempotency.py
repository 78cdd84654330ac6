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

import asyncpg
from sqlalchemy import delete, func
from sqlalchemy.ext.asyncio import AsyncSession

from postyard.core.db import DriverStatement, TenantId
from postyard.sending.errors import (
    ConcurrentIdempotentRequests,
    InvalidIdempotencyKey,
    InvalidIdempotentRequest,
)
from postyard.sending.models import IdempotencyRecord

KEEP_FOR = timedelta(hours=24)
MAX_KEY_LENGTH = 256
# The lock first (a LATERAL join runs after it), then the live record if there is one.
_BEGIN = DriverStatement.of(
    """
    SELECT l.locked, r.request_hash, CAST(r.response AS text) AS response
      FROM (SELECT pg_try_advisory_xact_lock(hashtextextended(CAST(:scope AS text), 0))
                   AS locked) AS l
      LEFT JOIN LATERAL (
            SELECT request_hash, response FROM idempotency_keys
             WHERE l.locked AND tenant_id = CAST(:tenant AS uuid) AND key = :key
               AND expires_at > now()
           ) AS r ON true
    """
)
_COMPLETE = DriverStatement.of(
    """
    INSERT INTO idempotency_keys (tenant_id, key, request_hash, response, expires_at)
    VALUES (CAST(:tenant AS uuid), :key, :hash, CAST(:response AS jsonb),
            now() + CAST(:keep AS interval))
    ON CONFLICT (tenant_id, key) DO UPDATE
       SET request_hash = excluded.request_hash, response = excluded.response,
           expires_at = excluded.expires_at, created_at = now()
    """
)


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
    conn: asyncpg.Connection, tenant_id: TenantId, key: str, request_hash: bytes
) -> dict[str, Any] | None:
    """The stored response to replay, or None when this request should run. Holds a
    transaction-scoped lock on the key until the caller's transaction ends (``conn``: the
    accepting ``tenant_conn`` transaction)."""
    row = await conn.fetchrow(
        _BEGIN.sql,
        *_BEGIN.arguments({"scope": f"{tenant_id}:{key}", "tenant": tenant_id, "key": key}),
    )
    assert row is not None  # the statement always returns one row
    if not row["locked"]:
        msg = "A request with this Idempotency-Key is still being processed; retry shortly."
        raise ConcurrentIdempotentRequests(msg)
    if row["response"] is None:
        return None
    if bytes(row["request_hash"]) != request_hash:
        msg = "This Idempotency-Key was already used with a different request body."
        raise InvalidIdempotentRequest(msg)
    response: dict[str, Any] = json.loads(row["response"])
    return response


async def complete(
    conn: asyncpg.Connection,
    tenant_id: TenantId,
    key: str,
    request_hash: bytes,
    response: dict[str, Any],
) -> None:
    """Store the response under the key (replacing an expired record)."""
    await conn.execute(
        _COMPLETE.sql,
        *_COMPLETE.arguments(
            {
                "tenant": tenant_id,
                "key": key,
                "hash": request_hash,
                "response": json.dumps(response),
                "keep": KEEP_FOR,
            }
        ),
    )


async def forget_expired(session: AsyncSession) -> int:
    """Delete records past their 24 hours (maintenance; session: a system_tx)."""
    result = await session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= func.now())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
