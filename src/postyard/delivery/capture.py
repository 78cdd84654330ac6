"""The capture server (capture mode): a real SMTP server in the same process tree that
receives everything the worker delivers and keeps it, so that a newcomer sees real delivery
and ``GET /v1/emails/{id}/content`` shows the bytes that arrived."""

from __future__ import annotations

import asyncio
import logging
import uuid
import warnings
from dataclasses import dataclass
from datetime import datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from postyard.core.db import Database, TenantId
from postyard.core.ids import uuid7
from postyard.delivery import verp
from postyard.delivery.models import CapturedMessage

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from aiosmtpd.smtp import SMTP

log = logging.getLogger(__name__)
MAX_CAPTURE_BYTES = 64 * 1024 * 1024
# Without a VERP return path, a message is found by its Message-ID *and* envelope sender:
# Message-IDs chosen by SMTP clients are not unique across tenants.
_FIND_MESSAGE = text(
    "SELECT id, tenant_id FROM messages WHERE message_id_header = :header "
    "AND envelope_from = :mail_from ORDER BY id DESC LIMIT 1"
)
_FIND_DELIVERY = text("SELECT message_id AS id, tenant_id FROM deliveries WHERE id = :delivery_id")


@dataclass(frozen=True, slots=True)
class CapturedView:
    recipients: list[str]
    mail_from: str
    received_at: datetime
    raw: bytes


def message_id_of(raw: bytes) -> str | None:
    """The Message-ID header of a raw message (pure)."""
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw, headersonly=True)
    value = headers.get("Message-ID")
    return str(value).strip() if value else None


async def store_capture(
    session: AsyncSession,
    *,
    mail_from: str,
    recipients: list[str],
    raw: bytes,
    verp_key: bytes = b"",
) -> uuid.UUID | None:
    """Keep a received message with the message it belongs to (session: a system_tx);
    None when it is not a message this Postyard sent."""
    delivery_id = verp.parse_return_path(mail_from, verp_key) if verp_key else None
    if delivery_id is not None:
        found = (await session.execute(_FIND_DELIVERY, {"delivery_id": delivery_id})).first()
    else:
        header = message_id_of(raw)
        if header is None:
            return None
        found = (
            await session.execute(_FIND_MESSAGE, {"header": header, "mail_from": mail_from})
        ).first()
    if found is None:
        return None
    captured = CapturedMessage(
        id=uuid7(),
        tenant_id=found.tenant_id,
        message_id=found.id,
        mail_from=mail_from,
        recipients=recipients,
        raw=raw,
    )
    session.add(captured)
    await session.flush()
    return captured.id


async def captured_for(
    session: AsyncSession, tenant_id: TenantId, message_id: uuid.UUID
) -> list[CapturedView]:
    rows = await session.scalars(
        select(CapturedMessage)
        .where(CapturedMessage.tenant_id == tenant_id, CapturedMessage.message_id == message_id)
        .order_by(CapturedMessage.id)
    )
    return [CapturedView(c.recipients, c.mail_from, c.received_at, c.raw) for c in rows]


class _CaptureHandler:
    def __init__(self, db: Database, verp_key: bytes) -> None:
        self._db = db
        self._verp_key = verp_key

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802  (aiosmtpd's hook name)
        raw = envelope.original_content or envelope.content
        async with self._db.system_tx(reason="capture server: store a received message") as s:
            stored = await store_capture(
                s,
                mail_from=envelope.mail_from,
                recipients=list(envelope.rcpt_tos),
                raw=raw,
                verp_key=self._verp_key,
            )
        if stored is None:
            return "554 5.6.0 Not a message this Postyard sent"
        return f"250 2.0.0 Captured as {stored}"


async def start_capture_server(
    db: Database, *, verp_key: bytes = b"", host: str = "127.0.0.1", port: int = 0
) -> asyncio.Server:
    """Listen in the running loop; the caller closes the returned server."""
    handler = _CaptureHandler(db, verp_key)
    loop = asyncio.get_running_loop()

    def factory() -> SMTP:
        return SMTP(
            handler,
            hostname="capture.postyard",
            data_size_limit=MAX_CAPTURE_BYTES,
            enable_SMTPUTF8=True,
            decode_data=False,
            ident="Postyard capture",
        )

    return await loop.create_server(factory, host, port)
