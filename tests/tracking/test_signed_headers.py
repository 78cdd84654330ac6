"""Bulk mail from a verified domain, delivered by the real worker to a sink: the mailto
unsubscribe and CFBL headers name the return-path domain, and the DKIM signatures (checked
by dkimpy against the local DNS server) cover List-Unsubscribe, List-Unsubscribe-Post and
the CFBL fields. Domain-level tracking is switched on with PATCH /v1/domains/{id}."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import uuid

import dkim
import httpx
import pytest

from postyard.core.clock import SystemClock
from postyard.core.db import TenantId
from postyard.delivery.identity import IdentityCache
from postyard.delivery.routing import RelayDeliverer
from postyard.delivery.transport import Relay, TlsPolicy
from postyard.delivery.worker import DeliveryWorker, WorkerConfig
from postyard.suppression import suppressed_among
from postyard.tenancy import service as tenancy
from postyard.tenancy.types import Scope
from postyard.tracking import service, tokens
from postyard.tracking.feedback import parse_feedback_id
from postyard.tracking.unsubscribe import token_from_address
from tests.conftest import TEST_KEK, TEST_POLICY, TEST_TRACKING, Isolated
from tests.delivery.test_signing import VERP_KEY, _dnsfunc
from tests.delivery.test_worker import _transport
from tests.support.dns_server import DnsServer
from tests.support.domains import verified_domain
from tests.support.smtp_sink import SmtpSink
from tests.tracking.helpers import BASE, HTML, paths

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def _signed_names(data: bytes) -> list[set[str]]:
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    found = []
    for signature in message.get_all("DKIM-Signature") or []:
        unfolded = re.sub(r"\s+", "", str(signature))
        match = re.search(r"(?:^|;)h=([^;]+)", unfolded)
        assert match is not None, signature
        found.append({name.lower() for name in match.group(1).split(":")})
    return found


async def test_bulk_mail_from_a_verified_domain_is_signed_with_its_headers(
    isolated: Isolated, dns_server: DnsServer
) -> None:
    db = isolated.db
    async with db.system_tx(reason="test") as s:
        org = await tenancy.create_organization(s, name="trk", slug=f"t-{uuid.uuid4().hex[:8]}")
    async with db.tenant_tx(org.id) as s:
        key = await tenancy.create_api_key(s, org.id, name="k", scope=Scope.FULL)
    name = f"trk{uuid.uuid4().hex[:8]}.test"
    domain = await verified_domain(db, dns_server, org.id, name, kek=TEST_KEK, policy=TEST_POLICY)
    auth = {"Authorization": f"Bearer {key.token}"}
    async with httpx.AsyncClient(base_url=isolated.base_url) as http:
        patched = await http.patch(
            f"/v1/domains/{domain.id}",
            json={"open_tracking": True, "click_tracking": True},
            headers=auth,
        )
        assert patched.status_code == 200, patched.text
        body = {"from": f"News <news@{name}>", "to": "r@rcpt.test", "subject": "s", "html": HTML}
        sent = await http.post("/v1/emails", json={**body, "stream": "bulk"}, headers=auth)
        assert sent.status_code == 200, sent.text
        untracked = await http.post(
            "/v1/emails", json={**body, "open_tracking": False}, headers=auth
        )
        assert untracked.status_code == 200, untracked.text

    transport = _transport()
    async with SmtpSink() as sink:
        relay = Relay("127.0.0.1", sink.port, TlsPolicy.NONE, False, None, None)
        worker = DeliveryWorker(
            db,
            RelayDeliverer(transport, relay),
            WorkerConfig(owner="trk"),
            SystemClock(),
            identities=IdentityCache(db, TEST_KEK, SystemClock()),
            verp_key=VERP_KEY,
        )
        assert await worker.run_once() == 2
        received = await sink.wait_for_messages(2)
    await transport.aclose()

    by_stream = {
        b"List-Unsubscribe" in message.data.split(b"\r\n\r\n", 1)[0]: message
        for message in received
    }
    bulk, transactional = by_stream[True], by_stream[False]
    parsed = email.message_from_bytes(bulk.data, policy=email.policy.default)

    # Domain tracking: the bulk message has both; the override turned the pixel off.
    html = str(parsed.get_body(("html",)).get_content())  # type: ignore[union-attr] # the message has an HTML part
    assert len(paths(html, "o")) == 1
    assert len(paths(html, "c")) == 2
    plain = email.message_from_bytes(transactional.data, policy=email.policy.default)
    other_html = str(plain.get_body(("html",)).get_content())  # type: ignore[union-attr] # as above
    assert paths(other_html, "o") == []
    assert len(paths(other_html, "c")) == 2

    # List-Unsubscribe: https first, then mailto on the return-path domain.
    https, mailto = (part.strip() for part in str(parsed["List-Unsubscribe"]).split(","))
    assert https.startswith(f"<{BASE}/u/")
    address = mailto.removeprefix("<mailto:").removesuffix("?subject=unsubscribe>")
    assert address.endswith(f"@send.{name}")
    mailto_token = token_from_address(address)
    assert mailto_token is not None
    claim = tokens.verify_mailto_unsubscribe_token(
        TEST_TRACKING.key,
        mailto_token,
        now=SystemClock().now(),
        max_age=TEST_TRACKING.unsubscribe_max_age,
    )
    assert claim.delivery_id is not None
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["CFBL-Address"] == f"fbl@send.{name}; report=arf"
    ref = parse_feedback_id(TEST_TRACKING.key, str(parsed["CFBL-Feedback-ID"]))
    assert ref is not None
    assert ref.tenant_id == TenantId(org.id)
    assert str(ref.message_id) == sent.json()["id"]
    assert plain["CFBL-Address"] is None  # transactional

    lookup = _dnsfunc(dns_server.nameserver)
    for index in (0, 1):
        ok = await asyncio.to_thread(dkim.DKIM(bulk.data).verify, idx=index, dnsfunc=lookup)
        assert ok, index
    for names in _signed_names(bulk.data):
        assert {
            "list-unsubscribe",
            "list-unsubscribe-post",
            "cfbl-address",
            "cfbl-feedback-id",
        } <= names
    tampered = bulk.data.replace(b"=One-Click\r\n", b"=One-Clack\r\n", 1)
    assert tampered != bulk.data
    assert not await asyncio.to_thread(dkim.DKIM(tampered).verify, idx=1, dnsfunc=lookup)

    # The mailto link, as the MX listener will act on it: found through a system
    # transaction, acted on in the tenant's own.
    now = SystemClock().now()
    async with db.system_tx(reason="test: mailto unsubscribe") as s:
        found = await service.find_mailto_unsubscribe_unscoped(
            s, TEST_TRACKING, mailto_token, now=now
        )
        forged = await service.find_mailto_unsubscribe_unscoped(
            s, TEST_TRACKING, mailto_token[:-1] + ("a" if mailto_token[-1] != "a" else "b"), now=now
        )
    assert forged is None
    assert found is not None
    assert (found.tenant_id, found.address) == (org.id, "r@rcpt.test")
    async with db.tenant_tx(found.tenant_id) as s:
        changed = await service.unsubscribe(
            s, service.mailto_claim(found, now=now), method="mailto", now=now
        )
        assert await suppressed_among(s, found.tenant_id, ["r@rcpt.test"], now) == {"r@rcpt.test"}
    assert changed
