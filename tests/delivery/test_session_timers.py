"""Each session keeps one timer for the deadline of a reply (``exchange``) and one for its
parking in the pool (``pool``), moved on rather than made anew: neither outlives what it
was set for."""

from __future__ import annotations

import asyncio

import pytest

from postyard.delivery.exchange import exchange
from postyard.delivery.outcome import OutcomeKind
from postyard.delivery.pool import ConnectionPool, PooledSession
from postyard.delivery.session import Route, TlsPolicy, open_session
from postyard.delivery.transport import Envelope, opportunistic_tls_context
from tests.support.scripted_smtp import ScriptedSmtpServer, loopback_transport, relay
from tests.support.smtp_sink import SmtpSink

BODY = b"Subject: hi\r\n\r\nbody\r\n"


class GoesSilentServer(ScriptedSmtpServer):
    """Takes one message per connection and answers nothing after it on the first; later
    connections take messages until the client leaves."""

    NAME = b"silent.test"

    def __init__(self) -> None:
        super().__init__()
        self.delivered = 0

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = self.connections == 1
        while True:
            group = [await reader.readline()]
            while group[-1] not in (b"DATA\r\n", b""):
                group.append(await reader.readline())
            if group[-1] == b"":
                return
            replies = [b"250 2.0.0 ok" for _ in group[:-1]]
            writer.write(b"".join(r + b"\r\n" for r in [*replies, b"354 go on"]))
            while await reader.readline() not in (b".\r\n", b""):
                pass
            self.delivered += 1
            writer.write(b"250 2.0.0 queued\r\n")
            if first:
                await reader.read()  # silent until the client gives up
                return


async def test_a_session_parked_past_its_timer_still_times_out_and_the_message_goes_anew() -> None:
    async with (
        GoesSilentServer() as server,
        loopback_transport(command_timeout=0.3, chunking=False) as smtp,
    ):
        envelope = Envelope("a@sender.test", ("b@example.test",), BODY)
        [first] = await smtp.deliver_via_relay(relay(server.port), envelope)
        await asyncio.sleep(0.6)  # the session's timer fires while it is parked
        # A guard against a hang only: the reused session's RSET must time out on its own.
        async with asyncio.timeout(10):
            [second] = await smtp.deliver_via_relay(relay(server.port), envelope)
    assert (first.kind, second.kind) == (OutcomeKind.DELIVERED, OutcomeKind.DELIVERED)
    assert server.connections == 2  # the silent session was given up, the message sent once
    assert server.delivered == 2


async def test_a_session_parked_again_gets_the_whole_idle_timeout_again() -> None:
    # Parked at 0 and 1 with an idle timeout of 2 s: still open at 2.4, closed after 3
    # (margins of 0.4 s and 0.6 s for a loaded machine).
    async with SmtpSink() as sink, loopback_transport(idle_timeout=2.0) as smtp:
        envelope = Envelope("a@sender.test", ("b@example.test",), BODY)
        outcomes = [await smtp.deliver_via_relay(relay(sink.port), envelope)]
        await asyncio.sleep(1.0)
        outcomes.append(await smtp.deliver_via_relay(relay(sink.port), envelope))
        await asyncio.sleep(1.4)  # past the first parking's timeout, within the second's
        outcomes.append(await smtp.deliver_via_relay(relay(sink.port), envelope))
        assert sink.connections_opened == 1
        await sink.wait_for_no_connections()  # and the idle timeout still closes it
    assert [o.kind for [o] in outcomes] == [OutcomeKind.DELIVERED] * 3


@pytest.mark.parametrize("reusable", [False, True])
async def test_a_session_the_pool_closes_keeps_no_reply_timer(reusable: bool) -> None:
    # Closed at the end of its lease, or parked and closed with QUIT by aclose.
    pool = ConnectionPool(max_connections=1, max_messages=10, idle_timeout=30, command_timeout=5)
    async with SmtpSink() as sink:
        route = Route(
            key=("sink",),
            host="127.0.0.1",
            port=sink.port,
            tls=TlsPolicy.NONE,
            implicit_tls=False,
            tls_context=opportunistic_tls_context(),
        )
        async with pool.lease(route.key) as lease:
            opened = await open_session(
                route, "127.0.0.1", helo_name="postyard.test", connect_timeout=5, command_timeout=5
            )
            assert isinstance(opened, PooledSession)
            lease.session, lease.reusable = opened, reusable
            [reply] = await exchange(opened, [b"NOOP\r\n"])
            assert reply.code == 250
            assert opened.reader is not None and opened.reader.timer_pending
        await pool.aclose()
        await sink.wait_for_no_connections()
    assert not opened.reader.timer_pending
