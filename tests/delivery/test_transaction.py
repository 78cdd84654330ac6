"""SMTP transactions with and without PIPELINING (RFC 2920), against real servers on loopback:
aiosmtpd sinks that advertise it or not, and a strict server that answers nothing until the
whole command group has arrived, which only a pipelining client gets through."""

from __future__ import annotations

import asyncio

import pytest

from postyard.delivery.outcome import OutcomeKind, SmtpReply, SmtpStage
from postyard.delivery.transaction import wire_data
from postyard.delivery.transport import (
    Envelope,
)
from tests.support.scripted_smtp import ScriptedSmtpServer, loopback_transport, relay
from tests.support.smtp_sink import SmtpSink

SENDER = "bounces@sender.test"
BODY = b"From: a@sender.test\r\nSubject: hi\r\n\r\n.dot first\r\nbody\r\n"


def envelope(*recipients: str) -> Envelope:
    return Envelope(SENDER, recipients, BODY)


@pytest.mark.parametrize(
    ("data", "wire"),
    [
        (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
        (b"a\nb", b"a\r\nb\r\n.\r\n"),  # bare LF and no final line end: made CRLF
        (b"a\rb\r\n", b"a\r\nb\r\n.\r\n"),  # a bare CR too
        (b".a\r\n.\r\n..b\r\n", b"..a\r\n..\r\n...b\r\n.\r\n"),  # dot-stuffing
        (b"", b"\r\n.\r\n"),
    ],
)
def test_data_goes_on_the_wire_with_crlf_and_dot_stuffing(data: bytes, wire: bytes) -> None:
    assert wire_data(data) == wire


@pytest.mark.parametrize("pipelining", [True, False])
async def test_each_recipient_keeps_its_own_reply_with_or_without_pipelining(
    pipelining: bool,
) -> None:
    async with SmtpSink(pipelining=pipelining) as sink, loopback_transport() as smtp:
        sink.script_rcpt("gone@example.test", "550 5.1.1 user unknown")
        sink.script_rcpt("full@example.test", "452 4.2.2 mailbox full")
        gone, ok, full = await smtp.deliver_via_relay(
            relay(sink.port), envelope("gone@example.test", "ok@example.test", "full@example.test")
        )
        [message] = await sink.wait_for_messages(1)
    assert (gone.kind, gone.reply, gone.stage) == (
        OutcomeKind.BOUNCED,
        SmtpReply(550, "5.1.1", "user unknown"),
        SmtpStage.RCPT,
    )
    assert (full.kind, full.reply) == (
        OutcomeKind.DEFERRED,
        SmtpReply(452, "4.2.2", "mailbox full"),
    )
    assert (ok.kind, ok.stage) == (OutcomeKind.DELIVERED, SmtpStage.DATA)
    assert message.recipients == ("ok@example.test",)
    assert message.data == BODY


@pytest.mark.parametrize("pipelining", [True, False])
@pytest.mark.parametrize(
    ("reply", "kind"),
    [("550 5.7.1 sender blocked", OutcomeKind.BOUNCED), ("451 4.3.0 later", OutcomeKind.DEFERRED)],
)
async def test_a_mail_from_refusal_decides_for_everyone(
    pipelining: bool, reply: str, kind: OutcomeKind
) -> None:
    async with SmtpSink(pipelining=pipelining) as sink, loopback_transport() as smtp:
        sink.script_mail(reply)
        outcomes = await smtp.deliver_via_relay(
            relay(sink.port), envelope("a@example.test", "b@example.test")
        )
        # The session is still in step: the next message goes through on it.
        [after] = await smtp.deliver_via_relay(relay(sink.port), envelope("c@example.test"))
    assert {o.kind for o in outcomes} == {kind}
    assert all(reply in o.detail for o in outcomes)
    assert after.kind is OutcomeKind.DELIVERED
    assert [m.recipients for m in sink.messages] == [("c@example.test",)]
    assert sink.connections_opened == 1


@pytest.mark.parametrize("pipelining", [True, False])
async def test_when_every_recipient_is_refused_nothing_is_sent_and_the_session_goes_on(
    pipelining: bool,
) -> None:
    async with SmtpSink(pipelining=pipelining) as sink, loopback_transport() as smtp:
        sink.script_rcpt("gone@example.test", "550 5.1.1 user unknown")
        [gone] = await smtp.deliver_via_relay(relay(sink.port), envelope("gone@example.test"))
        [ok] = await smtp.deliver_via_relay(relay(sink.port), envelope("ok@example.test"))
    assert (gone.kind, gone.stage) == (OutcomeKind.BOUNCED, SmtpStage.RCPT)
    assert ok.kind is OutcomeKind.DELIVERED
    assert [m.recipients for m in sink.messages] == [("ok@example.test",)]
    assert sink.connections_opened == 1


class StrictPipeliningServer(ScriptedSmtpServer):
    """Answers a transaction's commands only once MAIL, the RCPTs and DATA have all arrived
    (a client waiting for each reply would wait forever), refuses recipients named
    ``gone@``, and answers DATA with 354 even when every recipient was refused (RFC 2920
    section 3.1 lets it)."""

    NAME = b"strict.test"
    EXTENSIONS = (b"PIPELINING", b"8BITMIME")

    def __init__(self) -> None:
        super().__init__()
        self.groups: list[list[bytes]] = []
        self.bodies: list[bytes] = []

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await self._transaction(reader, writer):
            pass

    async def _transaction(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        group: list[bytes] = []
        while not group or group[-1] != b"DATA":
            line = (await reader.readline()).rstrip(b"\r\n")
            if not line or line == b"QUIT":
                writer.write(b"221 bye\r\n")
                return False
            if line == b"RSET":
                writer.write(b"250 reset\r\n")
                continue
            group.append(line)
        self.groups.append(group)
        rcpt = [b"550 5.1.1 unknown" if b"gone@" in c else b"250 2.1.5 ok" for c in group[1:-1]]
        writer.write(b"".join(r + b"\r\n" for r in [b"250 2.1.0 ok", *rcpt, b"354 go on"]))
        body = b""
        while (line := await reader.readline()) != b".\r\n":
            body += line
        self.bodies.append(body)
        accepted = any(r.startswith(b"250") for r in rcpt)
        writer.write(b"250 2.0.0 queued\r\n" if accepted else b"554 5.5.1 no valid recipients\r\n")
        return True


async def test_mail_rcpt_and_data_go_in_one_group_and_every_reply_is_read() -> None:
    async with StrictPipeliningServer() as server, loopback_transport() as smtp:
        gone, ok = await smtp.deliver_via_relay(
            relay(server.port), envelope("gone@example.test", "ok@example.test")
        )
        # All refused but DATA accepted: a lone dot ends it and the session stays in step.
        [alone] = await smtp.deliver_via_relay(relay(server.port), envelope("gone@example.test"))
        [after] = await smtp.deliver_via_relay(relay(server.port), envelope("ok@example.test"))
    assert [len(g) for g in server.groups] == [4, 3, 3]
    assert server.groups[0][0].startswith(b"MAIL FROM:<bounces@sender.test>")
    assert server.groups[0][1:] == [
        b"RCPT TO:<gone@example.test>",
        b"RCPT TO:<ok@example.test>",
        b"DATA",
    ]
    assert (gone.kind, gone.reply) == (OutcomeKind.BOUNCED, SmtpReply(550, "5.1.1", "unknown"))
    assert ok.kind is OutcomeKind.DELIVERED
    assert ok.reply == SmtpReply(250, "2.0.0", "queued")
    assert (alone.kind, alone.stage) == (OutcomeKind.BOUNCED, SmtpStage.RCPT)
    assert after.kind is OutcomeKind.DELIVERED
    assert server.bodies == [
        b"..dot first\r\n".join(BODY.split(b".dot first\r\n")),
        b"",
        server.bodies[0],
    ]
    assert server.connections == 1


class SlowRepliesServer(ScriptedSmtpServer):
    """Answers each command of a pipelined group ``gap`` seconds after the one before, and
    after ``answers`` replies of a transaction answers nothing more."""

    NAME = b"slow.test"

    def __init__(self, gap: float, answers: int = 100) -> None:
        super().__init__()
        self.gap, self.answers = gap, answers
        self.delivered = 0

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        replies = [b"250 2.1.0 ok", b"250 2.1.5 ok", b"250 2.1.5 ok", b"354 go on"]
        for count, reply in enumerate(replies):
            line = await reader.readline()
            if count >= self.answers or not line:
                await reader.read()  # silent until the client gives up
                return
            await asyncio.sleep(self.gap)
            writer.write(reply + b"\r\n")
        while await reader.readline() not in (b".\r\n", b""):
            pass
        self.delivered += 1
        writer.write(b"250 2.0.0 queued\r\n")
        await reader.read()


async def test_each_reply_gets_the_whole_command_timeout() -> None:
    # Four replies half a second apart: two seconds in all, each within the 1.5 s allowed.
    async with (
        SlowRepliesServer(gap=0.5) as server,
        loopback_transport(command_timeout=1.5) as smtp,
    ):
        outcomes = await smtp.deliver_via_relay(
            relay(server.port), envelope("a@example.test", "b@example.test")
        )
    assert [o.kind for o in outcomes] == [OutcomeKind.DELIVERED, OutcomeKind.DELIVERED]
    assert server.delivered == 1


async def test_a_server_that_stops_answering_mid_group_defers() -> None:
    async with (
        SlowRepliesServer(gap=0, answers=1) as server,
        loopback_transport(command_timeout=0.5) as smtp,
    ):
        outcomes = await smtp.deliver_via_relay(
            relay(server.port), envelope("a@example.test", "b@example.test")
        )
    assert [o.kind for o in outcomes] == [OutcomeKind.DEFERRED, OutcomeKind.DEFERRED]
    assert all("timed out waiting for a reply" in o.detail for o in outcomes), outcomes
    assert server.delivered == 0
