"""Rides (RFC 2920 section 3.1): a lease waiting for a destination's session sends its
envelope in the write that carries the holder's message and final dot, and gets the session
once the holder has its reply. Against an aiosmtpd sink and a strict server on loopback, and
the pool's hand-over on its own when the rider stops waiting."""

from __future__ import annotations

import asyncio

import aiosmtplib
import pytest

from postyard.delivery.outcome import OutcomeKind
from postyard.delivery.pool import ConnectionPool, PooledSession
from postyard.delivery.transaction import Envelope
from tests.support.scripted_smtp import ScriptedSmtpServer, loopback_transport, relay
from tests.support.smtp_sink import SmtpSink

SENDER = "bounces@sender.test"
GUARD = 30.0  # seconds: a regression fails the test instead of hanging it


def envelope(n: int) -> Envelope:
    data = b"Subject: %d\r\n\r\n.a line with a dot first\r\nmessage %d\r\n" % (n, n)
    return Envelope(SENDER, (f"r{n}@example.test",), data)


async def test_waiting_messages_ride_on_the_message_before() -> None:
    """One session, eight messages at once: the first opens it, each other one rides on the
    one before (no RSET: none of them took the session from the idle list)."""
    async with SmtpSink() as sink, loopback_transport(chunking=False, max_connections=1) as smtp:
        async with asyncio.timeout(GUARD):
            results = await asyncio.gather(
                *(smtp.deliver_via_relay(relay(sink.port), envelope(n)) for n in range(8))
            )
    assert [outcome.kind for [outcome] in results] == [OutcomeKind.DELIVERED] * 8
    assert sink.connections_opened == 1
    assert sink.rsets == 0
    assert sorted((m.recipients[0], m.data) for m in sink.messages) == sorted(
        (f"r{n}@example.test", envelope(n).data) for n in range(8)
    )


async def test_a_session_takes_no_ride_past_its_message_limit() -> None:
    async with (
        SmtpSink() as sink,
        loopback_transport(chunking=False, max_connections=1, max_messages=3) as smtp,
    ):
        async with asyncio.timeout(GUARD):
            await asyncio.gather(
                *(smtp.deliver_via_relay(relay(sink.port), envelope(n)) for n in range(7))
            )
    assert [m.connection for m in sink.messages] == [1, 1, 1, 2, 2, 2, 3]
    assert sink.rsets == 0


async def test_a_refused_message_leaves_its_rider_alone() -> None:
    async with SmtpSink() as sink, loopback_transport(chunking=False, max_connections=1) as smtp:
        sink.script_data("554 5.7.1 refused by policy")
        async with asyncio.timeout(GUARD):
            results = await asyncio.gather(
                *(smtp.deliver_via_relay(relay(sink.port), envelope(n)) for n in range(3))
            )
    assert [outcome.kind for [outcome] in results] == [
        OutcomeKind.BOUNCED,
        OutcomeKind.DELIVERED,
        OutcomeKind.DELIVERED,
    ]
    assert [m.recipients for m in sink.messages] == [("r1@example.test",), ("r2@example.test",)]
    assert sink.connections_opened == 1


class ClosingServer(ScriptedSmtpServer):
    """PIPELINING; reads one command per line as a strict server does. The first session
    answers its first message's final dot with 421 and closes, with the next envelope
    already sent after that dot."""

    NAME = b"closing.test"

    def __init__(self) -> None:
        super().__init__()
        self.taken: list[tuple[int, bytes]] = []
        self.after_first_dot = b""

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = self.connections
        while line := (await reader.readline()).rstrip(b"\r\n"):
            if line == b"QUIT":
                writer.write(b"221 bye\r\n")
                return
            if line != b"DATA":
                writer.write(b"250 ok\r\n")
                continue
            writer.write(b"354 go on\r\n")
            data = await reader.readuntil(b"\r\n.\r\n")
            if connection == 1:
                # Sent before this reply was: the rider's envelope (the client has not read
                # the reply yet, so this line can only come from a ride).
                self.after_first_dot = await reader.readline()
                writer.write(b"421 4.3.2 closing.test shutting down\r\n")
                return
            self.taken.append((connection, data))
            writer.write(b"250 2.0.0 taken\r\n")


async def test_when_the_session_closes_after_a_ride_the_rider_goes_on_a_new_one() -> None:
    async with (
        ClosingServer() as server,
        loopback_transport(chunking=False, max_connections=1) as smtp,
    ):
        async with asyncio.timeout(GUARD):
            first, second = await asyncio.gather(
                *(smtp.deliver_via_relay(relay(server.port), envelope(n)) for n in range(2))
            )
    assert [outcome.kind for outcome in first] == [OutcomeKind.DEFERRED]
    assert "421" in first[0].detail
    assert [outcome.kind for outcome in second] == [OutcomeKind.DELIVERED]
    assert server.after_first_dot == b"MAIL FROM:<bounces@sender.test>\r\n"
    assert [(connection, b"message 1" in data) for connection, data in server.taken] == [(2, True)]


@pytest.mark.parametrize("when", ["before the hand-over", "after the hand-over"])
async def test_a_rider_that_stops_waiting_leaves_no_slot_taken(when: str) -> None:
    """A rider cancelled (the worker stopping) after a holder took it out of the queue, and
    before or after it was handed the session: the session, with replies to the rider on
    their way, is closed, and the slot is free again. Of two slots, ``keeper`` holds one
    throughout (else the pool forgets the unused destination, slots and all)."""
    pool = ConnectionPool(max_connections=2, max_messages=10, idle_timeout=30, command_timeout=5)
    entered = asyncio.Event()

    async def wait_for_a_ride() -> None:
        async with pool.lease("dest", envelope=envelope(1)):
            entered.set()

    async with SmtpSink() as sink, asyncio.timeout(GUARD), pool.lease("dest") as keeper:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port)
        await smtp.connect()
        session = PooledSession(smtp, "sink")
        async with pool.lease("dest") as holder:
            holder.session, holder.reusable = session, True
            rider_task = asyncio.create_task(wait_for_a_ride())
            await asyncio.sleep(0)  # the rider queues for the slot
            rider = holder.next_rider(session, lambda _s, _e: [b"MAIL FROM:<>\r\n"])
            assert rider is not None
            if when == "after the hand-over":
                holder.hand_over(rider, session)
                assert holder.handed_over
            rider_task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await rider_task
            if when == "before the hand-over":
                holder.hand_over(rider, session)
                assert not holder.handed_over
        assert not entered.is_set()
        async with pool.lease("dest") as later:  # would wait for ever if the slot were lost
            assert later.session is None  # the session was closed, not parked
        assert keeper.session is None
    assert not smtp.is_connected
