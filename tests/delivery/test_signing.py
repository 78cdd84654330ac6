"""Mail from a verified domain leaves DKIM-signed twice (Ed25519 and RSA) with a signed VERP
return path; an independent verifier (dkimpy) checks both signatures with the DNS answers of
the local DNS server."""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Any

import dkim
import dns.resolver
import httpx
import pytest

from postyard.core.clock import SystemClock
from postyard.core.secrets import derive
from postyard.delivery import verp
from postyard.delivery.identity import IdentityCache
from postyard.delivery.routing import RelayDeliverer
from postyard.delivery.transport import Relay, TlsPolicy
from postyard.delivery.worker import DeliveryWorker, WorkerConfig
from postyard.tenancy import service as tenancy
from postyard.tenancy.types import Scope
from tests.conftest import TEST_KEK, TEST_POLICY, Isolated
from tests.delivery.test_worker import _transport
from tests.support.dns_server import DnsServer
from tests.support.domains import verified_domain
from tests.support.smtp_sink import SmtpSink

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
VERP_KEY = derive(b"test-secret", "verp").encode()

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
SHAPES: dict[str, dict[str, Any]] = {
    "plain": {"text": "Hello"},
    "html with generated text": {"html": "<p>Hello <b>world</b></p>" * 50},
    "utf-8": {"subject": "Grüße, 世界 🌍", "text": "Schöne Grüße\nあいう" * 30},
    "long lines": {"text": "x" * 5000 + "\n" + "word " * 3000},
    "attachments and inline image": {
        "html": '<p>Logo: <img src="cid:logo"></p>',
        "attachments": [
            {"filename": "report.pdf", "content": base64.b64encode(b"%PDF" * 500).decode()},
            {
                "filename": "logo.png",
                "content": base64.b64encode(PNG).decode(),
                "content_id": "logo",
            },
            {"filename": "naïve résumé.txt", "content": base64.b64encode("é".encode()).decode()},
        ],
    },
}


def _dnsfunc(nameserver: str) -> Any:
    host, port = nameserver.rsplit(":", 1)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = int(port)

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        answer = resolver.resolve(name.decode().rstrip("."), "TXT")
        return b"".join(b"".join(r.strings) for r in answer)

    return lookup


async def test_signed_twice_with_verp_for_every_shape(
    isolated: Isolated, dns_server: DnsServer
) -> None:
    db = isolated.db
    async with db.system_tx(reason="test") as s:
        org = await tenancy.create_organization(s, name="sig", slug=f"s-{uuid.uuid4().hex[:8]}")
    async with db.tenant_tx(org.id) as s:
        key = await tenancy.create_api_key(s, org.id, name="k", scope=Scope.FULL)
    name = f"sign{uuid.uuid4().hex[:8]}.test"
    await verified_domain(db, dns_server, org.id, name, kek=TEST_KEK, policy=TEST_POLICY)

    auth = {"Authorization": f"Bearer {key.token}"}
    sent: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=isolated.base_url) as http:
        for label, fields in SHAPES.items():
            body = {"from": f"App <app@{name}>", "to": "r@rcpt.test", "subject": "s", **fields}
            response = await http.post("/v1/emails", json=body, headers=auth)
            assert response.status_code == 200, (label, response.text)
            sent[response.json()["id"]] = label

    transport = _transport()
    async with SmtpSink() as sink:
        relay = Relay("127.0.0.1", sink.port, TlsPolicy.NONE, False, None, None)
        worker = DeliveryWorker(
            db,
            RelayDeliverer(transport, relay),
            WorkerConfig(owner="sig"),
            SystemClock(),
            identities=IdentityCache(db, TEST_KEK, SystemClock()),
            verp_key=VERP_KEY,
        )
        assert await worker.run_once() == len(SHAPES)
        received = await sink.wait_for_messages(len(SHAPES))
    await transport.aclose()

    lookup = _dnsfunc(dns_server.nameserver)
    for message in received:
        delivery_id = verp.parse_return_path(message.mail_from, VERP_KEY)
        assert delivery_id is not None, message.mail_from
        assert message.mail_from.endswith(f"@send.{name}")
        verifier = dkim.DKIM(message.data)
        for index in (0, 1):
            ok = await asyncio.to_thread(verifier.verify, idx=index, dnsfunc=lookup)
            assert ok, (index, message.data[:400])
        headers = message.data.split(b"\r\n\r\n", 1)[0]
        assert b"a=ed25519-sha256" in headers
        assert b"a=rsa-sha256" in headers
        tampered = message.data.replace(b"To: r@rcpt.test", b"To: x@rcpt.test", 1)
        assert tampered != message.data
        assert not await asyncio.to_thread(dkim.DKIM(tampered).verify, idx=1, dnsfunc=lookup)


def test_verp_tokens() -> None:
    delivery_id = uuid.uuid4()
    address = verp.return_path(delivery_id, "send.example.com", VERP_KEY)
    assert verp.parse_return_path(address, VERP_KEY) == delivery_id
    assert verp.parse_return_path(address.upper(), VERP_KEY) == delivery_id
    assert verp.parse_return_path(address, b"other key") is None
    forged = address.replace(address[3], "a" if address[3] != "a" else "b", 1)
    assert verp.parse_return_path(forged, VERP_KEY) is None
    assert verp.parse_return_path("someone@example.com", VERP_KEY) is None
    assert verp.parse_return_path("b+zz-zz@example.com", VERP_KEY) is None
