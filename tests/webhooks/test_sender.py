"""The sender against a real HTTP receiver and a DNS server on loopback.

Tests that must reach the receiver allow 127.0.0.0/8; the SSRF corpus runs with no allowed
network and proves that nothing was even connected (the receiver counts connections).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from ipaddress import ip_network

import pytest
import standardwebhooks
import trustme

from postyard.delivery.mx import make_resolver
from postyard.webhooks.connection import EXCERPT_BYTES, excerpt
from postyard.webhooks.sender import SendResult, Timeouts, WebhookSender
from postyard.webhooks.signing import generate_secret, webhook_headers
from postyard.webhooks.ssrf import AddressPolicy, Network
from tests.support.dns_server import AAAA, A, DnsServer
from tests.support.http_receiver import HttpReceiver, Reply, redirect

LOOPBACK = [ip_network("127.0.0.0/8")]
BODY = b'{"type":"email.delivered","data":{"email_id":"4ef9a417"}}'
SECRET = generate_secret()
GENEROUS = Timeouts(read=10.0, total=20.0)  # a guard against hung tests, never reached
ZONE: dict[str, list[A | AAAA]] = {
    "hooks.test": [A("127.0.0.1")],
    "private.test": [A("10.0.0.5")],
    "mixed.test": [A("93.184.216.34"), A("10.0.0.5")],
    "mixed6.test": [A("93.184.216.34"), AAAA("::1")],
    "mapped.test": [AAAA("::ffff:7f00:1")],
    "half-public.test": [A("127.0.0.1"), A("93.184.216.34")],
}


def headers() -> dict[str, str]:
    return webhook_headers([SECRET], "msg_test", int(time.time()), BODY)


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def server_tls(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


@pytest.fixture
async def dns_server() -> AsyncIterator[DnsServer]:
    async with DnsServer(ZONE) as server:
        yield server


@pytest.fixture
async def receiver() -> AsyncIterator[HttpReceiver]:
    async with HttpReceiver() as server:
        yield server


@contextlib.asynccontextmanager
async def sender_for(
    dns_server: DnsServer,
    allowed: Sequence[Network] = (),
    *,
    ssl_context: ssl.SSLContext | None = None,
    timeouts: Timeouts = GENEROUS,
    max_connections_per_host: int = 16,
    keepalive_expiry: float = 4.0,
) -> AsyncIterator[WebhookSender]:
    sender = WebhookSender(
        resolver=make_resolver([dns_server.nameserver], timeout=2.0, lifetime=4.0, cache=False),
        policy=AddressPolicy(allowed),
        ssl_context=ssl_context,
        timeouts=timeouts,
        max_connections_per_host=max_connections_per_host,
        keepalive_expiry=keepalive_expiry,
    )
    try:
        yield sender
    finally:
        await sender.aclose()


def failed(result: SendResult, *fragments: str) -> bool:
    assert result.error is not None, result
    return all(fragment in result.error for fragment in fragments)


async def test_a_2xx_is_delivered_with_the_signed_request(
    dns_server: DnsServer, receiver: HttpReceiver
) -> None:
    receiver.respond("/hook", Reply(status=204, body=b""))
    sent = headers()
    async with sender_for(dns_server, LOOPBACK) as sender:
        result = await sender.post(receiver.url("/hook?tenant=1"), BODY, sent)
    assert (result.status, result.error, result.refused, result.excerpt) == (204, None, False, "")
    assert result.error is None
    [request] = receiver.requests
    assert (request.method, request.target, request.body) == ("POST", "/hook?tenant=1", BODY)
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert request.headers["content-length"] == str(len(BODY))
    assert {name: request.headers[name] for name in sent} == sent
    payload = standardwebhooks.Webhook(SECRET).verify(request.body, request.headers)
    assert payload["type"] == "email.delivered"


@pytest.mark.parametrize("status", [400, 401, 404, 410, 429, 500, 502, 503])
async def test_error_statuses_are_recorded_with_an_excerpt(
    dns_server: DnsServer, receiver: HttpReceiver, status: int
) -> None:
    receiver.respond("/hook", Reply(status=status, body="maintenance \u00e9".encode()))
    async with sender_for(dns_server, LOOPBACK) as sender:
        result = await sender.post(receiver.url("/hook"), BODY, headers())
    assert (result.status, result.error, result.refused) == (status, f"HTTP {status}", False)
    assert result.excerpt == "maintenance \u00e9"
    assert result.error is not None


@pytest.mark.parametrize(
    ("status", "retry_after"),
    [(429, "120"), (503, "Wed, 02 Dec 2026 12:00:00 GMT"), (500, "60"), (200, "")],
)
async def test_the_retry_after_field_is_passed_on_for_the_retry_ladder(
    dns_server: DnsServer, receiver: HttpReceiver, status: int, retry_after: str
) -> None:
    fields = (("Retry-After", retry_after),) if retry_after else ()
    receiver.respond("/hook", Reply(status=status, headers=fields))
    async with sender_for(dns_server, LOOPBACK) as sender:
        result = await sender.post(receiver.url("/hook"), BODY, headers())
    assert (result.status, result.retry_after) == (status, retry_after)


async def test_nul_bytes_are_replaced_in_the_excerpt(
    dns_server: DnsServer, receiver: HttpReceiver
) -> None:
    receiver.respond("/hook", Reply(status=500, body=b"a\x00b"))
    async with sender_for(dns_server, LOOPBACK) as sender:
        result = await sender.post(receiver.url("/hook"), BODY, headers())
    assert result.excerpt == "a\ufffdb"


def test_the_excerpt_is_the_first_kib_without_a_character_cut_in_two() -> None:
    assert excerpt(b"x" * 2000) == "x" * EXCERPT_BYTES
    assert excerpt(b"x" * (EXCERPT_BYTES - 1) + "\u00e9".encode()) == "x" * (EXCERPT_BYTES - 1)
    assert excerpt(b"\xff\x00ok") == "\ufffd\ufffdok"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirects_are_failures_and_never_followed(
    dns_server: DnsServer, receiver: HttpReceiver, status: int
) -> None:
    receiver.respond("/old", redirect(receiver.url("/new"), status))
    async with sender_for(dns_server, LOOPBACK) as sender:
        result = await sender.post(receiver.url("/old"), BODY, headers())
    assert result.status == status
    assert failed(result, "not followed", "/new")
    assert [request.path for request in receiver.requests] == ["/old"]


async def test_interim_responses_are_skipped(dns_server: DnsServer, receiver: HttpReceiver) -> None:
    receiver.respond("/hook", Reply(interim=True, body=b"done"))
    async with sender_for(dns_server, LOOPBACK) as sender:
        result = await sender.post(receiver.url("/hook"), BODY, headers())
    assert (result.status, result.error, result.excerpt) == (200, None, "done")


async def test_a_silent_endpoint_times_out(dns_server: DnsServer, receiver: HttpReceiver) -> None:
    receiver.respond("/slow", Reply(hold=True))
    async with sender_for(dns_server, LOOPBACK, timeouts=Timeouts(read=0.2)) as sender:
        result = await sender.post(receiver.url("/slow"), BODY, headers())
    assert result.status is None
    assert failed(result, "timed out")
    assert not result.refused


async def test_the_total_timeout_bounds_the_attempt(
    dns_server: DnsServer, receiver: HttpReceiver
) -> None:
    receiver.respond("/slow", Reply(hold=True))
    async with sender_for(dns_server, LOOPBACK, timeouts=Timeouts(total=0.2)) as sender:
        result = await sender.post(receiver.url("/slow"), BODY, headers())
    assert result.status is None
    assert failed(result, "total timeout")


@pytest.mark.parametrize(
    "reply", [Reply(body_size=8 * 1024 * 1024), Reply(endless=True)], ids=["length", "endless"]
)
async def test_a_huge_response_is_cut_at_the_cap(
    dns_server: DnsServer, receiver: HttpReceiver, reply: Reply
) -> None:
    receiver.respond("/huge", reply)
    async with sender_for(dns_server, LOOPBACK) as sender:
        result = await sender.post(receiver.url("/huge"), BODY, headers())
        assert (result.status, result.error) == (200, None)
        assert result.excerpt == "x" * 1024
        # A connection left mid-body is never reused.
        assert (await sender.post(receiver.url("/"), BODY, headers())).error is None
    assert receiver.connections_opened == 2


@pytest.mark.parametrize(
    ("reply", "fragments"),
    [
        (Reply(raw=b"HTTP/1.1 abc\r\n\r\n"), ("malformed",)),
        (Reply(raw=b"SMTP 220 hello\r\n"), ("malformed",)),
        (Reply(raw=b"HTTP/1.1 200 OK\r\n" + b"x-filler: 1\r\n" * 10000), ("too large",)),
        (Reply(drop=True), ("no answer",)),
    ],
    ids=["bad-status", "not-http", "endless-headers", "dropped"],
)
async def test_broken_answers_are_failures(
    dns_server: DnsServer, receiver: HttpReceiver, reply: Reply, fragments: tuple[str, ...]
) -> None:
    receiver.respond("/hook", reply)
    async with sender_for(dns_server, LOOPBACK) as sender:
        result = await sender.post(receiver.url("/hook"), BODY, headers())
    assert failed(result, *fragments)
    assert not result.refused


async def test_connections_are_kept_alive_and_reused(
    dns_server: DnsServer, receiver: HttpReceiver
) -> None:
    receiver.respond("/last", Reply(close=True))
    async with sender_for(dns_server, LOOPBACK) as sender:
        for path in ("/a", "/b", "/last", "/c"):
            assert (await sender.post(receiver.url(path), BODY, headers())).error is None
    assert [request.connection for request in receiver.requests] == [1, 1, 1, 2]


async def test_a_connection_closed_while_idle_is_replaced(
    dns_server: DnsServer, receiver: HttpReceiver
) -> None:
    async with sender_for(dns_server, LOOPBACK) as sender:
        assert (await sender.post(receiver.url("/a"), BODY, headers())).error is None
        await receiver.drop_connections()
        assert (await sender.post(receiver.url("/b"), BODY, headers())).error is None
    assert [request.connection for request in receiver.requests] == [1, 2]


async def test_a_connection_idle_past_its_expiry_is_not_reused(
    dns_server: DnsServer, receiver: HttpReceiver
) -> None:
    async with sender_for(dns_server, LOOPBACK, keepalive_expiry=0.0) as sender:
        for path in ("/a", "/b", "/c"):
            assert (await sender.post(receiver.url(path), BODY, headers())).error is None
    assert [request.connection for request in receiver.requests] == [1, 2, 3]


async def test_attempts_per_endpoint_are_bounded(
    dns_server: DnsServer, receiver: HttpReceiver
) -> None:
    receiver.respond("/hook", Reply(hold=True))
    async with sender_for(dns_server, LOOPBACK, max_connections_per_host=2) as sender:
        attempts = [
            asyncio.ensure_future(sender.post(receiver.url("/hook"), BODY, headers()))
            for _ in range(5)
        ]
        await receiver.wait_for_requests(2)
        receiver.release()
        results = await asyncio.gather(*attempts)
    assert all(result.error is None for result in results)
    assert receiver.connections_opened == 2  # five unbounded attempts would open five


async def test_https_pins_the_resolved_address_and_checks_the_name(
    ca: trustme.CA, client_tls: ssl.SSLContext, dns_server: DnsServer
) -> None:
    server_context = server_tls(ca, "hooks.test")
    names: list[str | None] = []
    server_context.sni_callback = lambda _socket, name, _context: names.append(name)
    async with (
        HttpReceiver(tls_context=server_context) as receiver,
        sender_for(dns_server, LOOPBACK, ssl_context=client_tls) as sender,
    ):
        result = await sender.post(receiver.url("/hook", host="hooks.test"), BODY, headers())
    assert (result.status, result.error) == (200, None)
    assert names == ["hooks.test"]
    assert receiver.requests[0].headers["host"] == f"hooks.test:{receiver.port}"
    # Resolved once (A and AAAA); the connection went to that address, never to the name.
    assert sorted(dns_server.queries) == [("hooks.test", "A"), ("hooks.test", "AAAA")]


async def test_a_certificate_for_another_name_is_rejected(
    ca: trustme.CA, client_tls: ssl.SSLContext, dns_server: DnsServer
) -> None:
    async with (
        HttpReceiver(tls_context=server_tls(ca, "other.test")) as receiver,
        sender_for(dns_server, LOOPBACK, ssl_context=client_tls) as sender,
    ):
        result = await sender.post(receiver.url("/hook", host="hooks.test"), BODY, headers())
        untrusted = await sender.post(receiver.url("/hook", host="hooks.test"), BODY, headers())
    assert failed(result, "certificate", "hooks.test[127.0.0.1]")
    assert failed(untrusted, "certificate")
    assert receiver.requests == []


async def test_tls_to_a_plain_http_endpoint_fails(
    client_tls: ssl.SSLContext, dns_server: DnsServer, receiver: HttpReceiver
) -> None:
    url = receiver.url("/hook", host="hooks.test").replace("http://", "https://")
    async with sender_for(dns_server, LOOPBACK, ssl_context=client_tls) as sender:
        result = await sender.post(url, BODY, headers())
    assert result.status is None
    assert failed(result, "hooks.test[127.0.0.1]")
    assert receiver.requests == []


async def test_dns_and_connection_failures_are_errors_not_refusals(
    dns_server: DnsServer,
) -> None:
    dns_server.fail("broken.test")
    dns_server.set("empty.test")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    async with sender_for(dns_server, LOOPBACK) as sender:
        missing = await sender.post("https://missing.test/", BODY, headers())
        broken = await sender.post("https://broken.test/", BODY, headers())
        empty = await sender.post("https://empty.test/", BODY, headers())
        refused = await sender.post(f"http://127.0.0.1:{closed_port}/", BODY, headers())
    assert failed(missing, "missing.test does not exist")
    assert failed(broken, "DNS lookup of broken.test failed")
    assert failed(empty, "no A or AAAA records")
    assert failed(refused, f"127.0.0.1:{closed_port}")
    assert not any(result.refused for result in (missing, broken, empty, refused))


SSRF_CORPUS = [
    "https://2130706433:{port}/",
    "https://0177.0.0.1:{port}/",
    "https://0x7f.0.0.1:{port}/",
    "https://0x7f000001:{port}/",
    "https://127.1:{port}/",
    "https://[::ffff:127.0.0.1]:{port}/",
    "https://[::ffff:7f00:1]:{port}/",
    "https://[::1]:{port}/",
    "https://[0:0:0:0:0:0:0:1]:{port}/",
    "https://localhost:{port}/",
    "https://LOCALHOST.:{port}/",
    "https://hooks.localhost:{port}/",
    "https://localhost.localdomain:{port}/",
    "https://0.0.0.0:{port}/",
    "https://0:{port}/",
    "https://169.254.169.254:{port}/latest/meta-data/",
    "https://[fd00:ec2::254]:{port}/",
    "https://hooks.test:{port}/",  # 127.0.0.1
    "https://private.test:{port}/",  # 10.0.0.5
    "https://mixed.test:{port}/",  # public + 10.0.0.5
    "https://mixed6.test:{port}/",  # public + ::1
    "https://mapped.test:{port}/",  # ::ffff:127.0.0.1
    "http://127.0.0.1:{port}/",
    "http://hooks.test:{port}/",
    "http://2130706433:{port}/",
    "http://[::1]:{port}/",
    "http://localhost:{port}/",
]


@pytest.mark.parametrize("template", SSRF_CORPUS)
async def test_ssrf_corpus_is_refused_without_a_connection(
    dns_server: DnsServer, receiver: HttpReceiver, template: str
) -> None:
    async with sender_for(dns_server) as sender:
        result = await sender.post(template.format(port=receiver.port), BODY, headers())
    assert result.refused, result
    assert result.status is None
    assert result.error
    assert receiver.connections_opened == 0
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("http://private.test:{port}/", "10.0.0.5, a private network"),
        ("http://half-public.test:{port}/", "http is only allowed"),
        ("https://mixed6.test:{port}/", "::1, loopback"),
    ],
)
async def test_allowed_networks_open_nothing_else(
    dns_server: DnsServer, receiver: HttpReceiver, template: str, fragment: str
) -> None:
    async with sender_for(dns_server, LOOPBACK) as sender:
        result = await sender.post(template.format(port=receiver.port), BODY, headers())
    assert result.refused
    assert failed(result, fragment)
    assert receiver.connections_opened == 0


async def test_headers_the_sender_owns_or_cannot_send_are_programming_errors(
    dns_server: DnsServer, receiver: HttpReceiver
) -> None:
    async with sender_for(dns_server, LOOPBACK) as sender:
        for bad in ({"Host": "evil"}, {"Content-Length": "0"}, {"x-a": "1\r\nx-b: 2"}):
            with pytest.raises(ValueError, match="header"):
                await sender.post(receiver.url("/"), BODY, bad)
        await sender.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            await sender.post(receiver.url("/"), BODY, headers())
    assert receiver.connections_opened == 0
