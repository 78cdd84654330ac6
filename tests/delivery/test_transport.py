"""SMTP delivery end to end: our transport against aiosmtpd sinks and a DNS server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trustme

from postyard.delivery.mx import make_resolver
from postyard.delivery.outcome import (
    OutcomeKind,
    RecipientOutcome,
    SmtpReply,
    classify_reply,
    split_enhanced_status,
)
from postyard.delivery.transport import (
    Envelope,
    Relay,
    SmtpTransport,
    TlsPolicy,
    opportunistic_tls_context,
)
from tests.support.dns_server import MX, A, DnsServer
from tests.support.smtp_sink import SmtpSink

SENDER = "bounces@sender.test"
BODY = (
    b"From: Sender <news@sender.test>\r\n"
    b"To: someone@example.test\r\n"
    b"Subject: hello\r\n"
    b"\r\n"
    b".a line that starts with a dot\r\n"
    b"..and one with two\r\n"
    b"caf\xc3\xa9\r\n"
)


def zone() -> dict[str, list[MX | A]]:
    # mx1.test is preferred; 127.0.0.2 is loopback too, but the sinks listen on 127.0.0.1.
    return {
        "example.test": [MX(10, "mx1.test")],
        "fallback.test": [MX(10, "down.test"), MX(20, "mx1.test")],
        "mx1.test": [A("127.0.0.1")],
        "down.test": [A("127.0.0.2")],
    }


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost", "mx1.test").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(context)
    return context


@pytest.fixture
async def dns_server() -> AsyncIterator[DnsServer]:
    async with DnsServer(zone()) as server:
        yield server


@contextlib.asynccontextmanager
async def transport_for(
    dns_server: DnsServer, port: int, client_tls: ssl.SSLContext, **options: Any
) -> AsyncIterator[SmtpTransport]:
    transport = SmtpTransport(
        ssl_context=client_tls,
        opportunistic_context=opportunistic_tls_context(),
        resolver=make_resolver([dns_server.nameserver], timeout=2.0, lifetime=4.0),
        helo_name="postyard.test",
        connect_timeout=options.pop("connect_timeout", 10.0),
        command_timeout=options.pop("command_timeout", 10.0),
        mx_port=port,
        **options,
    )
    try:
        yield transport
    finally:
        await transport.aclose()


def envelope(*recipients: str, data: bytes = BODY, smtputf8: bool = False) -> Envelope:
    return Envelope(SENDER, recipients, data, smtputf8=smtputf8)


def kinds(outcomes: list[RecipientOutcome]) -> dict[str, OutcomeKind]:
    return {outcome.recipient: outcome.kind for outcome in outcomes}


def test_replies_are_parsed_into_code_enhanced_status_and_text() -> None:
    multi = SmtpReply.parse(550, "5.1.1 user unknown\n5.1.1 see https://example.test/help")
    assert multi == SmtpReply(550, "5.1.1", "user unknown see https://example.test/help")
    assert SmtpReply.parse(250, "OK") == SmtpReply(250, None, "OK")
    assert SmtpReply.parse(451, "5.1.1 contradicts the code") == SmtpReply(
        451, None, "5.1.1 contradicts the code"
    )  # RFC 3463 §2: the classes must agree, so this is not an enhanced code
    assert split_enhanced_status("4.7.10 slow down") == ("4.7.10", "slow down")
    assert split_enhanced_status("3.1.1 nope") == (None, "3.1.1 nope")
    assert [classify_reply(SmtpReply(code, None, "")) for code in (250, 451, 550, 354)] == [
        OutcomeKind.DELIVERED,
        OutcomeKind.DEFERRED,
        OutcomeKind.BOUNCED,
        OutcomeKind.DEFERRED,
    ]


async def test_bytes_arrive_exactly_as_sent(
    dns_server: DnsServer, client_tls: ssl.SSLContext
) -> None:
    async with SmtpSink() as sink, transport_for(dns_server, sink.port, client_tls) as transport:
        [outcome] = await transport.deliver_direct("example.test", envelope("a@example.test"))
        [message] = await sink.wait_for_messages(1)
    assert outcome.kind is OutcomeKind.DELIVERED
    assert outcome.reply is not None and outcome.reply.code == 250
    assert f"mx1.test[127.0.0.1]:{sink.port}" in outcome.detail
    assert message.data == BODY
    assert (message.mail_from, message.recipients) == (SENDER, ("a@example.test",))
    assert message.helo == "postyard.test"
    assert "BODY=8BITMIME" in message.mail_options  # RFC 6152: the body has 8-bit bytes
    assert ("mx1.test", "A") in dns_server.queries  # the MX host came from our DNS


async def test_recipients_of_one_domain_share_one_transaction(
    dns_server: DnsServer, client_tls: ssl.SSLContext
) -> None:
    async with SmtpSink() as sink, transport_for(dns_server, sink.port, client_tls) as transport:
        outcomes = await transport.deliver_direct(
            "example.test", envelope("a@example.test", "b@example.test")
        )
    assert kinds(outcomes) == {
        "a@example.test": OutcomeKind.DELIVERED,
        "b@example.test": OutcomeKind.DELIVERED,
    }
    [message] = sink.messages
    assert message.recipients == ("a@example.test", "b@example.test")
    assert sink.connections_opened == 1


async def test_each_recipient_gets_its_own_rcpt_reply(
    dns_server: DnsServer, client_tls: ssl.SSLContext
) -> None:
    async with SmtpSink() as sink, transport_for(dns_server, sink.port, client_tls) as transport:
        sink.script_rcpt("gone@example.test", "550 5.1.1 user unknown")
        sink.script_rcpt("full@example.test", "452 4.2.2 mailbox full")
        outcomes = await transport.deliver_direct(
            "example.test",
            envelope("gone@example.test", "ok@example.test", "full@example.test"),
        )
    gone, ok, full = outcomes
    assert (gone.kind, gone.reply) == (
        OutcomeKind.BOUNCED,
        SmtpReply(550, "5.1.1", "user unknown"),
    )
    assert str(gone.reply) == "550 5.1.1 user unknown"
    assert (full.kind, full.reply) == (
        OutcomeKind.DEFERRED,
        SmtpReply(452, "4.2.2", "mailbox full"),
    )
    assert ok.kind is OutcomeKind.DELIVERED
    assert [m.recipients for m in sink.messages] == [("ok@example.test",)]


async def test_a_451_defers_and_the_next_attempt_succeeds(
    dns_server: DnsServer, client_tls: ssl.SSLContext
) -> None:
    async with SmtpSink() as sink, transport_for(dns_server, sink.port, client_tls) as transport:
        sink.script_rcpt("x@example.test", "451 4.3.0 try later")
        [first] = await transport.deliver_direct("example.test", envelope("x@example.test"))
        [second] = await transport.deliver_direct("example.test", envelope("x@example.test"))
    assert first.kind is OutcomeKind.DEFERRED
    assert first.reply == SmtpReply(451, "4.3.0", "try later")
    assert second.kind is OutcomeKind.DELIVERED
    assert len(sink.messages) == 1


@pytest.mark.parametrize(
    ("reply", "kind"),
    [("554 5.6.0 rejected", OutcomeKind.BOUNCED), ("451 4.7.1 later", OutcomeKind.DEFERRED)],
)
async def test_the_data_reply_decides_for_accepted_recipients(
    dns_server: DnsServer, client_tls: ssl.SSLContext, reply: str, kind: OutcomeKind
) -> None:
    async with SmtpSink() as sink, transport_for(dns_server, sink.port, client_tls) as transport:
        sink.script_rcpt("gone@example.test", "550 5.1.1 user unknown")
        sink.script_data(reply)
        outcomes = await transport.deliver_direct(
            "example.test", envelope("a@example.test", "gone@example.test")
        )
    assert kinds(outcomes) == {"a@example.test": kind, "gone@example.test": OutcomeKind.BOUNCED}
    assert outcomes[0].reply is not None and str(outcomes[0].reply) == reply
    assert sink.messages == []


async def test_a_permanent_mail_from_refusal_bounces_everyone(
    dns_server: DnsServer, client_tls: ssl.SSLContext
) -> None:
    async with SmtpSink() as sink, transport_for(dns_server, sink.port, client_tls) as transport:
        sink.script_mail("550 5.7.1 sender blocked")
        outcomes = await transport.deliver_direct(
            "example.test", envelope("a@example.test", "b@example.test")
        )
    assert set(kinds(outcomes).values()) == {OutcomeKind.BOUNCED}
    assert "refused MAIL FROM: 550 5.7.1 sender blocked" in outcomes[0].detail


async def test_connection_refused_defers(dns_server: DnsServer, client_tls: ssl.SSLContext) -> None:
    dns_server.add("refusing.test", MX(10, "down.test"))
    async with SmtpSink() as sink, transport_for(dns_server, sink.port, client_tls) as transport:
        [outcome] = await transport.deliver_direct("refusing.test", envelope("a@refusing.test"))
    assert outcome.kind is OutcomeKind.DEFERRED
    assert outcome.reply is None
    assert outcome.detail == f"connection refused by down.test[127.0.0.2]:{sink.port}"


async def test_an_mx_host_without_addresses_defers(
    dns_server: DnsServer, client_tls: ssl.SSLContext
) -> None:
    dns_server.add("ghost.test", MX(10, "nohost.test"))
    async with transport_for(dns_server, 9, client_tls) as transport:
        [outcome] = await transport.deliver_direct("ghost.test", envelope("a@ghost.test"))
    assert (outcome.kind, outcome.detail) == (
        OutcomeKind.DEFERRED,
        "no address found for nohost.test",
    )


async def test_after_a_refused_connection_the_next_mx_host_is_used(
    dns_server: DnsServer, client_tls: ssl.SSLContext
) -> None:
    async with SmtpSink() as sink, transport_for(dns_server, sink.port, client_tls) as transport:
        [outcome] = await transport.deliver_direct("fallback.test", envelope("a@fallback.test"))
    assert outcome.kind is OutcomeKind.DELIVERED
    assert "mx1.test" in outcome.detail
    assert [m.recipients for m in sink.messages] == [("a@fallback.test",)]


async def test_a_4xx_at_mail_from_moves_on_to_the_next_host(
    dns_server: DnsServer, client_tls: ssl.SSLContext
) -> None:
    dns_server.add("busy.test", MX(10, "mx1.test"), MX(20, "mx2.test"))
    dns_server.add("mx2.test", A("127.0.0.2"))
    async with SmtpSink() as busy, SmtpSink(host="127.0.0.2", port=busy.port) as spare:
        busy.script_mail("421 4.7.0 too busy")
        async with transport_for(dns_server, busy.port, client_tls) as transport:
            [outcome] = await transport.deliver_direct("busy.test", envelope("a@busy.test"))
    assert outcome.kind is OutcomeKind.DELIVERED
    assert busy.messages == []
    assert [m.recipients for m in spare.messages] == [("a@busy.test",)]


async def test_every_host_failing_defers_with_all_the_reasons(
    dns_server: DnsServer, client_tls: ssl.SSLContext
) -> None:
    async with SmtpSink() as sink, transport_for(dns_server, sink.port, client_tls) as transport:
        sink.script_mail("451 4.3.2 shutting down")
        [outcome] = await transport.deliver_direct("fallback.test", envelope("a@fallback.test"))
    assert outcome.kind is OutcomeKind.DEFERRED
    assert outcome.reply == SmtpReply(451, "4.3.2", "shutting down")
    assert "connection refused by down.test" in outcome.detail
    assert "refused MAIL FROM: 451 4.3.2 shutting down" in outcome.detail


async def test_dns_failures_decide_every_recipient(
    dns_server: DnsServer, client_tls: ssl.SSLContext
) -> None:
    async with transport_for(dns_server, 9, client_tls) as transport:
        outcomes = await transport.deliver_direct(
            "nowhere.test", envelope("a@nowhere.test", "b@nowhere.test")
        )
    assert set(kinds(outcomes).values()) == {OutcomeKind.BOUNCED}
    assert all(outcome.reply is None for outcome in outcomes)


async def test_a_server_that_never_greets_times_out_into_a_deferral(
    dns_server: DnsServer, client_tls: ssl.SSLContext
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # say nothing until the client gives up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with transport_for(dns_server, port, client_tls, connect_timeout=0.2) as transport:
            [outcome] = await transport.deliver_direct("example.test", envelope("a@example.test"))
    finally:
        server.close()
        await server.wait_closed()
    assert outcome.kind is OutcomeKind.DEFERRED
    assert outcome.detail == f"timed out connecting to mx1.test[127.0.0.1]:{port}"


async def test_mx_delivery_uses_starttls_when_offered(
    dns_server: DnsServer, client_tls: ssl.SSLContext, server_tls: ssl.SSLContext
) -> None:
    async with (
        SmtpSink(tls_context=server_tls) as sink,
        transport_for(dns_server, sink.port, client_tls) as transport,
    ):
        [outcome] = await transport.deliver_direct("example.test", envelope("a@example.test"))
    assert outcome.kind is OutcomeKind.DELIVERED
    assert sink.messages[0].tls


async def test_required_tls_to_mx_hosts_is_verified_or_nothing_is_sent(
    dns_server: DnsServer, client_tls: ssl.SSLContext, server_tls: ssl.SSLContext
) -> None:
    required = TlsPolicy.REQUIRED
    async with (
        SmtpSink(tls_context=server_tls) as sink,
        transport_for(dns_server, sink.port, client_tls) as transport,
    ):
        [outcome] = await transport.deliver_direct(
            "example.test", envelope("a@example.test"), tls=required
        )
    assert outcome.kind is OutcomeKind.DELIVERED
    assert sink.messages[0].tls
    async with SmtpSink() as plain, transport_for(dns_server, plain.port, client_tls) as transport:
        [outcome] = await transport.deliver_direct(
            "example.test", envelope("a@example.test"), tls=required
        )
    assert outcome.kind is OutcomeKind.DEFERRED
    assert "does not offer STARTTLS" in outcome.detail
    assert plain.mail_commands == 0


async def test_smtputf8_is_used_when_offered_and_bounces_when_not(
    dns_server: DnsServer, client_tls: ssl.SSLContext
) -> None:
    utf8 = Envelope("expéditeur@sender.test", ("josé@example.test",), BODY, smtputf8=True)
    async with SmtpSink(smtputf8=True) as sink:
        async with transport_for(dns_server, sink.port, client_tls) as transport:
            [outcome] = await transport.deliver_direct("example.test", utf8)
        assert outcome.kind is OutcomeKind.DELIVERED
        [message] = sink.messages
        assert "SMTPUTF8" in message.mail_options
        assert (message.mail_from, message.recipients) == (
            "expéditeur@sender.test",
            ("josé@example.test",),
        )
    async with SmtpSink() as plain, transport_for(dns_server, plain.port, client_tls) as transport:
        [outcome] = await transport.deliver_direct("example.test", utf8)
    assert outcome.kind is OutcomeKind.BOUNCED
    assert "SMTPUTF8" in outcome.detail
    assert plain.messages == []


async def test_one_connection_carries_many_messages(
    dns_server: DnsServer, client_tls: ssl.SSLContext
) -> None:
    async with SmtpSink() as sink, transport_for(dns_server, sink.port, client_tls) as transport:
        for n in range(5):
            [outcome] = await transport.deliver_direct(
                "example.test", envelope(f"{n}@example.test")
            )
            assert outcome.kind is OutcomeKind.DELIVERED
        assert sink.connections_opened == 1
        assert {message.connection for message in sink.messages} == {1}
        assert sink.rsets == 4  # RFC 5321 §4.1.1.5: a clean state before each reuse
    assert len(sink.messages) == 5


async def test_a_connection_is_retired_after_max_messages(
    dns_server: DnsServer, client_tls: ssl.SSLContext
) -> None:
    async with (
        SmtpSink() as sink,
        transport_for(
            dns_server, sink.port, client_tls, max_messages_per_connection=2
        ) as transport,
    ):
        for n in range(5):
            await transport.deliver_direct("example.test", envelope(f"{n}@example.test"))
    assert [message.connection for message in sink.messages] == [1, 1, 2, 2, 3]


async def test_concurrent_deliveries_respect_the_connection_cap(
    dns_server: DnsServer, client_tls: ssl.SSLContext
) -> None:
    async with (
        SmtpSink() as sink,
        transport_for(
            dns_server, sink.port, client_tls, max_connections_per_destination=3
        ) as transport,
    ):
        results = await asyncio.gather(
            *(
                transport.deliver_direct("example.test", envelope(f"{n}@example.test"))
                for n in range(30)
            )
        )
    assert all(outcome.kind is OutcomeKind.DELIVERED for [outcome] in results)
    assert len(sink.messages) == 30
    assert sink.max_open_connections == 3
    assert sink.connections_opened == 3


async def test_a_connection_the_server_dropped_is_replaced(
    dns_server: DnsServer, client_tls: ssl.SSLContext
) -> None:
    async with SmtpSink() as sink, transport_for(dns_server, sink.port, client_tls) as transport:
        await transport.deliver_direct("example.test", envelope("a@example.test"))
        sink.drop_connections()
        await sink.wait_for_no_connections()
        [outcome] = await transport.deliver_direct("example.test", envelope("b@example.test"))
    assert outcome.kind is OutcomeKind.DELIVERED
    assert [message.connection for message in sink.messages] == [1, 2]


@pytest.mark.parametrize("pipelining", [True, False])
@pytest.mark.parametrize("stale", ["closing", "dark"])
async def test_a_stale_session_is_replaced_and_nothing_is_lost(
    dns_server: DnsServer, client_tls: ssl.SSLContext, pipelining: bool, stale: str
) -> None:
    """The RSET that starts a reused session's transaction (in the envelope's write with
    PIPELINING) finds the session stale: the server answers 421 and closes, or the
    connection went dark while parked (no reply and no close: a firewall forgot the flow),
    given up after the RSET timeout, not the command timeout (an hour here). Either way the
    message goes on a new session, once."""
    async with (
        SmtpSink(pipelining=pipelining) as sink,
        transport_for(
            dns_server, sink.port, client_tls, command_timeout=3600.0, rset_timeout=0.2
        ) as transport,
    ):
        await transport.deliver_direct("example.test", envelope("a@example.test"))
        if stale == "closing":
            sink.script_rset("421 4.4.2 sink.test closing: idle too long")
        else:
            sink.go_dark_at_next_rset()
        async with asyncio.timeout(60):  # a guard, so that a regression fails, not hangs
            [outcome] = await transport.deliver_direct("example.test", envelope("b@example.test"))
        assert outcome.kind is OutcomeKind.DELIVERED
        [outcome] = await transport.deliver_direct("example.test", envelope("c@example.test"))
        assert outcome.kind is OutcomeKind.DELIVERED
    assert [(m.recipients, m.connection) for m in sink.messages] == [
        (("a@example.test",), 1),
        (("b@example.test",), 2),
        (("c@example.test",), 2),
    ]
    assert sink.rsets == 2  # one on the stale session, one before c on the new one


async def test_idle_connections_are_closed(
    dns_server: DnsServer, client_tls: ssl.SSLContext
) -> None:
    async with (
        SmtpSink() as sink,
        transport_for(dns_server, sink.port, client_tls, idle_timeout=0.05) as transport,
    ):
        await transport.deliver_direct("example.test", envelope("a@example.test"))
        await sink.wait_for_no_connections()
        [outcome] = await transport.deliver_direct("example.test", envelope("b@example.test"))
        assert outcome.kind is OutcomeKind.DELIVERED
    assert sink.connections_opened == 2


async def test_aclose_closes_pooled_connections(
    dns_server: DnsServer, client_tls: ssl.SSLContext
) -> None:
    async with SmtpSink() as sink:
        async with transport_for(dns_server, sink.port, client_tls) as transport:
            await transport.deliver_direct("example.test", envelope("a@example.test"))
            assert sink.open_connections == 1
        await sink.wait_for_no_connections()
        with pytest.raises(RuntimeError):
            await transport.deliver_direct("example.test", envelope("a@example.test"))


async def test_recipients_of_another_domain_are_a_programming_error(
    dns_server: DnsServer, client_tls: ssl.SSLContext
) -> None:
    async with transport_for(dns_server, 9, client_tls) as transport:
        with pytest.raises(ValueError):
            await transport.deliver_direct("example.test", envelope("a@other.test"))


def relay_to(sink: SmtpSink, tls: TlsPolicy, *, scheme: str = "smtp", auth: str = "") -> Relay:
    return Relay.from_url(f"{scheme}://{auth}127.0.0.1:{sink.port}", tls=tls)


async def test_a_required_tls_relay_gets_verified_starttls(
    dns_server: DnsServer, client_tls: ssl.SSLContext, server_tls: ssl.SSLContext
) -> None:
    async with (
        SmtpSink(tls_context=server_tls) as sink,
        transport_for(dns_server, 9, client_tls) as transport,
    ):
        relay = relay_to(sink, TlsPolicy.REQUIRED)
        [outcome] = await transport.deliver_via_relay(relay, envelope("a@example.test"))
    assert outcome.kind is OutcomeKind.DELIVERED
    assert sink.messages[0].tls
    assert sink.messages[0].data == BODY


async def test_a_required_tls_relay_without_starttls_gets_nothing(
    dns_server: DnsServer, client_tls: ssl.SSLContext
) -> None:
    async with SmtpSink() as sink, transport_for(dns_server, 9, client_tls) as transport:
        relay = relay_to(sink, TlsPolicy.REQUIRED)
        [outcome] = await transport.deliver_via_relay(relay, envelope("a@example.test"))
    assert outcome.kind is OutcomeKind.DEFERRED
    assert "does not offer STARTTLS" in outcome.detail
    assert sink.mail_commands == 0


async def test_a_required_tls_relay_with_an_untrusted_certificate_gets_nothing(
    dns_server: DnsServer, server_tls: ssl.SSLContext
) -> None:
    stranger = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    trustme.CA().configure_trust(stranger)
    async with (
        SmtpSink(tls_context=server_tls) as sink,
        transport_for(dns_server, 9, stranger) as transport,
    ):
        [outcome] = await transport.deliver_via_relay(
            relay_to(sink, TlsPolicy.REQUIRED), envelope("a@example.test")
        )
    assert outcome.kind is OutcomeKind.DEFERRED
    assert "certificate verify failed" in outcome.detail
    assert sink.mail_commands == 0


async def test_an_smtps_relay_speaks_tls_from_the_first_byte(
    dns_server: DnsServer, client_tls: ssl.SSLContext, server_tls: ssl.SSLContext
) -> None:
    async with (
        SmtpSink(tls_context=server_tls, implicit_tls=True) as sink,
        transport_for(dns_server, 9, client_tls) as transport,
    ):
        relay = relay_to(sink, TlsPolicy.REQUIRED, scheme="smtps")
        [outcome] = await transport.deliver_via_relay(relay, envelope("a@example.test"))
    assert outcome.kind is OutcomeKind.DELIVERED
    assert sink.messages[0].tls


async def test_tls_policy_none_never_starts_tls(
    dns_server: DnsServer, client_tls: ssl.SSLContext, server_tls: ssl.SSLContext
) -> None:
    async with (
        SmtpSink(tls_context=server_tls) as sink,
        transport_for(dns_server, 9, client_tls) as transport,
    ):
        [outcome] = await transport.deliver_via_relay(
            relay_to(sink, TlsPolicy.NONE), envelope("a@example.test")
        )
    assert outcome.kind is OutcomeKind.DELIVERED
    assert not sink.messages[0].tls


async def test_relay_authentication(
    dns_server: DnsServer, client_tls: ssl.SSLContext, server_tls: ssl.SSLContext
) -> None:
    async with (
        SmtpSink(tls_context=server_tls, credentials=("user@sender.test", "s3cret")) as sink,
        transport_for(dns_server, 9, client_tls) as transport,
    ):
        good = relay_to(sink, TlsPolicy.REQUIRED, auth="user%40sender.test:s3cret@")
        [delivered] = await transport.deliver_via_relay(good, envelope("a@example.test"))
        bad = relay_to(sink, TlsPolicy.REQUIRED, auth="user%40sender.test:wrong@")
        [refused] = await transport.deliver_via_relay(bad, envelope("b@example.test"))
    assert delivered.kind is OutcomeKind.DELIVERED
    assert [(m.auth_login, m.tls) for m in sink.messages] == [("user@sender.test", True)]
    # A refused login is the operator's mistake, not the recipient's: keep the mail, retry.
    assert refused.kind is OutcomeKind.DEFERRED
    assert refused.reply is not None and refused.reply.code == 535
    assert "refused authentication as user@sender.test" in refused.detail


def test_relay_urls() -> None:
    relay = Relay.from_url(
        "smtp://me%40x.test:p%3Ass@Smtp.Example.test", tls=TlsPolicy.OPPORTUNISTIC
    )
    assert (relay.host, relay.port, relay.implicit_tls) == ("smtp.example.test", 587, False)
    assert (relay.username, relay.password, relay.tls) == (
        "me@x.test",
        "p:ss",
        TlsPolicy.OPPORTUNISTIC,
    )
    assert "p:ss" not in repr(relay)
    smtps = Relay.from_url("smtps://relay.test")
    assert (smtps.port, smtps.implicit_tls, smtps.tls, smtps.username) == (
        465,
        True,
        TlsPolicy.REQUIRED,
        None,
    )
    for bad in ("http://relay.test", "smtp://", "smtp://relay.test/path", "smtp://relay.test:0"):
        with pytest.raises(ValueError):
            Relay.from_url(bad)
    with pytest.raises(ValueError):
        Relay.from_url("smtps://relay.test", tls=TlsPolicy.NONE)


def test_envelopes_no_server_could_take_are_refused() -> None:
    with pytest.raises(ValueError):
        Envelope(SENDER, (), BODY)
    with pytest.raises(ValueError):
        Envelope(SENDER, ("a@example.test\r\nRCPT TO:<b@example.test>",), BODY)
    with pytest.raises(ValueError):
        Envelope(SENDER, ("josé@example.test",), BODY)
