"""SMTP and domains together: the verified-domain rule on SMTP, and SMTP submissions leave
DKIM-signed (both algorithms, checked by dkimpy) with a VERP return path."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import dkim

from postyard.core.clock import SystemClock
from postyard.delivery import verp
from postyard.delivery.identity import IdentityCache
from postyard.delivery.routing import RelayDeliverer
from postyard.delivery.transport import Relay, TlsPolicy
from postyard.delivery.worker import DeliveryWorker, WorkerConfig
from postyard.settings import SendingSettings
from postyard.tenancy import service as tenancy
from postyard.tenancy.types import Scope
from tests.conftest import TEST_KEK, TEST_POLICY, Isolated
from tests.delivery.test_signing import VERP_KEY, _dnsfunc
from tests.delivery.test_worker import _transport
from tests.smtp import compose, queued_id, running_relay, submit
from tests.support.dns_server import DnsServer
from tests.support.domains import verified_domain
from tests.support.smtp_sink import SmtpSink


async def test_smtp_needs_a_verified_domain_and_its_mail_is_signed(
    isolated: Isolated, dns_server: DnsServer, tmp_path: Path
) -> None:
    db = isolated.db
    async with db.system_tx(reason="test") as s:
        org = await tenancy.create_organization(s, name="smtp", slug=f"m-{uuid.uuid4().hex[:8]}")
    async with db.tenant_tx(org.id) as s:
        key = await tenancy.create_api_key(s, org.id, name="k", scope=Scope.SENDING)
    name = f"d{uuid.uuid4().hex[:8]}.example.com"
    sender = f"App <app@{name}>"
    data = compose(sender=sender)
    settings = isolated.runtime.settings.model_copy(
        update={"sending": SendingSettings(require_verified_domain=True)}
    )
    async with running_relay(settings, db, data_dir=tmp_path, tls=None) as relay:
        refused = await asyncio.to_thread(submit, relay.port, key.token, data, f"app@{name}")
        assert refused[0] == 553, refused
        assert b"5.7.1" in refused[1]

        await verified_domain(db, dns_server, org.id, name, kek=TEST_KEK, policy=TEST_POLICY)
        accepted = await asyncio.to_thread(submit, relay.port, key.token, data, f"app@{name}")
        email_id = queued_id(accepted)

    transport = _transport()
    async with SmtpSink() as sink:
        worker = DeliveryWorker(
            db,
            RelayDeliverer(
                transport, Relay("127.0.0.1", sink.port, TlsPolicy.NONE, False, None, None)
            ),
            WorkerConfig(owner="smtp-sig"),
            SystemClock(),
            identities=IdentityCache(db, TEST_KEK, SystemClock()),
            verp_key=VERP_KEY,
        )
        assert await worker.run_once() >= 1
        [received] = await sink.wait_for_messages(1)
    await transport.aclose()
    assert f"<{email_id}@{name}>".encode() in received.data
    assert verp.parse_return_path(received.mail_from, VERP_KEY) is not None
    lookup = _dnsfunc(dns_server.nameserver)
    verifier = dkim.DKIM(received.data)
    for index in (0, 1):
        assert await asyncio.to_thread(verifier.verify, idx=index, dnsfunc=lookup), index
