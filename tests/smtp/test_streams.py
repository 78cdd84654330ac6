"""X-Postyard-Stream over SMTP: it picks the stream, is stripped from the stored bytes, and
bulk mail gets Postyard's List-Unsubscribe unless the sender wrote one."""

from __future__ import annotations

import asyncio
import email
import email.policy
import uuid
from pathlib import Path

from sqlalchemy import select

from postyard.core.db import Database
from postyard.sending.models import Message
from postyard.settings import Settings
from tests.conftest import TEST_TRACKING, Tenant
from tests.smtp import TlsFiles, compose, connect, queued_id, running_relay, stored_raw


def _send(port: int, token: str, data: bytes) -> tuple[int, bytes]:
    with connect(port) as client:
        client.ehlo("client.example")
        client.login("anything", token)
        client.mail("app@example.com")
        client.rcpt("ann@example.org")
        return client.data(data)


async def _stream(db: Database, tenant: Tenant, email_id: str) -> str:
    async with db.tenant_tx(tenant.org.id) as s:
        stream = await s.scalar(select(Message.stream).where(Message.id == uuid.UUID(email_id)))
    assert stream is not None
    return stream


async def test_stream_header_picks_the_stream_and_is_stripped(
    settings: Settings, db: Database, tenant: Tenant, tmp_path: Path, tls: TlsFiles
) -> None:
    cases = {
        "bulk": (["X-Postyard-Stream: Bulk"], "bulk", True),
        "transactional": (["X-Postyard-Stream: transactional"], "transactional", False),
        "default": ([], "transactional", False),
        "own link": (
            ["X-Postyard-Stream: bulk", "List-Unsubscribe: <mailto:out@example.com>"],
            "bulk",
            False,
        ),
    }
    async with running_relay(
        settings, db, data_dir=tmp_path, tls=tls, tracking=TEST_TRACKING
    ) as relay:
        for label, (headers, stream, ours) in cases.items():
            reply = await asyncio.to_thread(
                _send, relay.port, tenant.key.token, compose(headers=headers)
            )
            email_id = queued_id(reply)
            assert await _stream(db, tenant, email_id) == stream, label
            raw = await stored_raw(db, tenant.org.id, email_id)
            assert b"X-Postyard-Stream" not in raw, label
            message = email.message_from_bytes(raw, policy=email.policy.default)
            links = [str(v) for v in message.get_all("List-Unsubscribe") or []]
            assert any(v.startswith(f"<{TEST_TRACKING.base_url}/u/") for v in links) is ours
            assert (message["List-Unsubscribe-Post"] is not None) is ours, label
        bad = await asyncio.to_thread(
            _send, relay.port, tenant.key.token, compose(headers=["X-Postyard-Stream: promo"])
        )
    assert bad[0] == 554, bad
    assert b"X-Postyard-Stream" in bad[1]
