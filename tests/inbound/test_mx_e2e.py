"""End to end: the worker sends a message from a verified domain with its VERP return path
to a remote server (an aiosmtpd sink), and the remote side's DSN for it, addressed to that
return path, comes back to the MX listener. Runs on a database of its own (the worker
claims across tenants)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import uuid
from pathlib import Path

import httpx
import pytest

from postyard.core.clock import SystemClock
from postyard.delivery.identity import IdentityCache
from postyard.delivery.mx import make_resolver
from postyard.delivery.retry import RetryPolicy
from postyard.delivery.routing import RelayDeliverer
from postyard.delivery.transport import Relay, SmtpTransport, TlsPolicy
from postyard.delivery.worker import DeliveryWorker, WorkerConfig
from postyard.mxd import intake_config
from postyard.tenancy import service as tenancy
from postyard.tenancy.types import Scope
from tests.conftest import TEST_KEK, TEST_POLICY, Isolated
from tests.inbound import deliver, delivery_row, event_types, running_mx, suppression_reason
from tests.support.dns_server import DnsServer
from tests.support.domains import verified_domain
from tests.support.smtp_sink import SmtpSink

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def _dsn_for(returned: bytes, return_path: str, recipient: str) -> bytes:
    """What a remote MTA sends back after accepting ``returned`` and then failing to put it
    in a mailbox: a DSN to the envelope sender, quoting the original headers."""
    original = email.message_from_bytes(returned, policy=email.policy.SMTP)
    headers = "".join(f"{k}: {v}\r\n" for k, v in original.items() if k.lower() != "dkim-signature")
    return (
        "From: MAILER-DAEMON@sink.test (Mail Delivery System)\r\n"
        f"To: {return_path}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="e2e"\r\n'
        "\r\n--e2e\r\nContent-Type: text/plain\r\n\r\n"
        "This is the mail system at host sink.test.\r\n"
        "\r\n--e2e\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; sink.test\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: mailbox does not exist\r\n"
        "\r\n--e2e\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"{headers}"
        "\r\n--e2e--\r\n"
    ).encode()


async def test_a_sent_message_bounces_back_through_the_mx(
    isolated: Isolated, dns_server: DnsServer, tmp_path: Path
) -> None:
    db, clock = isolated.db, SystemClock()
    async with db.system_tx(reason="test") as s:
        org = await tenancy.create_organization(s, name="e", slug=f"e-{uuid.uuid4().hex[:10]}")
    async with db.tenant_tx(org.id) as s:
        key = await tenancy.create_api_key(s, org.id, name="k", scope=Scope.FULL)
    name = f"e2e-{uuid.uuid4().hex[:8]}.example"
    await verified_domain(db, dns_server, org.id, name, kek=TEST_KEK, policy=TEST_POLICY)
    recipient = "gone@remote.example"
    async with httpx.AsyncClient(base_url=isolated.base_url) as http:
        response = await http.post(
            "/v1/emails",
            json={"from": f"Shop <orders@{name}>", "to": [recipient], "subject": "Hi", "text": "x"},
            headers={"Authorization": f"Bearer {key.token}"},
        )
    assert response.status_code == 200, response.text
    email_id = uuid.UUID(response.json()["id"])

    runtime = isolated.runtime
    keys = intake_config(runtime.settings, runtime.secret)
    transport = SmtpTransport(
        ssl_context=ssl.create_default_context(),
        opportunistic_context=ssl.create_default_context(),
        resolver=make_resolver([]),
        helo_name="worker.test",
    )
    async with SmtpSink() as sink:
        worker = DeliveryWorker(
            db,
            RelayDeliverer(
                transport, Relay("127.0.0.1", sink.port, TlsPolicy.NONE, False, None, None)
            ),
            WorkerConfig(owner=f"e2e-{uuid.uuid4().hex[:6]}", policy=RetryPolicy()),
            clock,
            identities=IdentityCache(db, TEST_KEK, clock),
            verp_key=keys.verp_key,
        )
        assert await worker.run_once() == 1
        [received] = await sink.wait_for_messages(1)
    await transport.aclose()
    assert received.mail_from.startswith("b+")
    assert received.mail_from.endswith(f"@send.{name}")

    async with running_mx(runtime.settings, db, data_dir=tmp_path, secret=runtime.secret) as mx:
        report = _dsn_for(received.data, received.mail_from, recipient)
        exchange = await asyncio.to_thread(deliver, mx.port, [received.mail_from], report)
    assert exchange.data is not None
    assert exchange.data[0] == 250

    [delivery_id] = await _delivery_ids(isolated, email_id)
    row = await delivery_row(db, delivery_id)
    assert (row.status, row.bounce_type) == ("bounced", "permanent")
    assert await suppression_reason(db, row) == "hard_bounce"
    kinds = [kind for kind, _ in await event_types(db, email_id)]
    assert kinds == ["email.sent", "email.delivered", "email.bounced"]


async def _delivery_ids(isolated: Isolated, email_id: uuid.UUID) -> list[uuid.UUID]:
    from sqlalchemy import select

    from postyard.sending.models import Delivery

    async with isolated.db.system_tx(reason="test") as s:
        return list(await s.scalars(select(Delivery.id).where(Delivery.message_id == email_id)))
