"""CHUNKING (RFC 3030): where a server offers it with PIPELINING, the message goes as one
BDAT chunk in the envelope's write. Against a strict server on loopback that answers a
transaction only once its whole group (and the chunk) has arrived, as the pipelining test's
server does: a client that waited for a reply before sending the chunk would wait forever."""

from __future__ import annotations

import asyncio

from postyard.delivery.outcome import OutcomeKind, SmtpReply, SmtpStage
from postyard.delivery.transaction import Envelope, wire_chunk
from tests.support.scripted_smtp import ScriptedSmtpServer, loopback_transport, relay

SENDER = "bounces@sender.test"
# A line that starts with a dot, a bare LF: BDAT sends the dot as is, the LF as CRLF.
BODY = b"From: a@sender.test\r\nSubject: hi\r\n\r\n.dot first\nbody\r\n"
ON_THE_WIRE = b"From: a@sender.test\r\nSubject: hi\r\n\r\n.dot first\r\nbody\r\n"


class ChunkingServer(ScriptedSmtpServer):
    """Offers PIPELINING and CHUNKING (DATA too); refuses RCPT for ``gone@``, answers the
    chunk or the data 451 when a recipient is ``later@`` and 554 for ``never@``."""

    NAME = b"chunk.test"
    EXTENSIONS = (b"PIPELINING", b"CHUNKING", b"8BITMIME")

    def __init__(
        self, *, transactions_per_session: int | None = None, dark_after: int | None = None
    ) -> None:
        super().__init__()
        self.per_session = transactions_per_session
        self.dark_after = dark_after
        """Transactions after which the first session answers nothing more, nor closes."""
        self.groups: list[list[bytes]] = []
        self.bodies: list[bytes] = []

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        done = 0
        dark_after = self.dark_after if self.connections == 1 else None
        while done != dark_after and await self._transaction(
            reader, writer, closing=done == self.per_session
        ):
            done += 1
        if done == dark_after:
            await reader.read()  # until the client gives the session up

    async def _transaction(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, closing: bool
    ) -> bool:
        """One transaction; with ``closing``, a 421 to what comes first, and the end."""
        group: list[bytes] = []
        while not group or not group[-1].startswith((b"BDAT", b"DATA")):
            line = (await reader.readline()).rstrip(b"\r\n")
            if not line or line == b"QUIT":
                writer.write(b"221 bye\r\n")
                return False
            if closing:
                writer.write(b"421 4.4.2 chunk.test idle too long, closing\r\n")
                return False
            group.append(line)
        self.groups.append(group)
        if group[-1].startswith(b"BDAT"):
            body = await reader.readexactly(int(group[-1].split()[1]))
        else:
            body = b""
        rcpts = [c for c in group if c.startswith(b"RCPT")]
        accepted = [c for c in rcpts if b"gone@" not in c]
        replies = [b"250 2.0.0 reset"] if group[0] == b"RSET" else []
        replies.append(b"250 2.1.0 ok")
        replies += [b"550 5.1.1 unknown" if b"gone@" in c else b"250 2.1.5 ok" for c in rcpts]
        if group[-1] == b"DATA":
            writer.write(b"".join(r + b"\r\n" for r in [*replies, b"354 go on"]))
            while (line := await reader.readline()) != b".\r\n":
                body += line[1:] if line.startswith(b".") else line
            replies = []
        self.bodies.append(body)
        if not accepted:
            final = b"554 5.5.1 no valid recipients"
        elif any(b"later@" in c for c in accepted):
            final = b"451 4.3.0 try again later"
        elif any(b"never@" in c for c in accepted):
            final = b"554 5.7.1 rejected"
        else:
            final = b"250 2.0.0 queued as 1234"
        writer.write(b"".join(r + b"\r\n" for r in [*replies, final]))
        return True


def envelope(*recipients: str) -> Envelope:
    return Envelope(SENDER, recipients, BODY)


def test_the_chunk_is_the_message_as_is_with_its_exact_size() -> None:
    assert wire_chunk(BODY) == b"BDAT %d LAST\r\n" % len(ON_THE_WIRE) + ON_THE_WIRE
    assert wire_chunk(b"no final line end") == b"BDAT 19 LAST\r\nno final line end\r\n"


async def test_envelope_and_message_go_in_one_write_and_each_reply_is_kept() -> None:
    async with ChunkingServer() as server, loopback_transport() as smtp:
        gone, ok = await smtp.deliver_via_relay(
            relay(server.port), envelope("gone@example.test", "ok@example.test")
        )
        # Reused: the RSET goes in the same write.
        [again] = await smtp.deliver_via_relay(relay(server.port), envelope("b@example.test"))
    assert server.groups[0] == [
        f"MAIL FROM:<{SENDER}>".encode(),
        b"RCPT TO:<gone@example.test>",
        b"RCPT TO:<ok@example.test>",
        b"BDAT %d LAST" % len(ON_THE_WIRE),
    ]
    assert server.groups[1][0] == b"RSET"
    assert server.groups[1][-1].startswith(b"BDAT")
    assert server.bodies == [ON_THE_WIRE, ON_THE_WIRE]
    assert (gone.kind, gone.stage) == (OutcomeKind.BOUNCED, SmtpStage.RCPT)
    assert (ok.kind, ok.stage) == (OutcomeKind.DELIVERED, SmtpStage.DATA)
    assert ok.reply == SmtpReply(250, "2.0.0", "queued as 1234")
    assert again.kind is OutcomeKind.DELIVERED
    assert server.connections == 1


async def test_refusals_of_the_chunk_and_of_every_recipient_keep_the_session() -> None:
    async with ChunkingServer() as server, loopback_transport() as smtp:
        route = relay(server.port)
        [none] = await smtp.deliver_via_relay(route, envelope("gone@example.test"))
        [later] = await smtp.deliver_via_relay(route, envelope("later@example.test"))
        [never] = await smtp.deliver_via_relay(route, envelope("never@example.test"))
        [ok] = await smtp.deliver_via_relay(route, envelope("ok@example.test"))
    assert (none.kind, none.stage) == (OutcomeKind.BOUNCED, SmtpStage.RCPT)
    assert (later.kind, later.stage) == (OutcomeKind.DEFERRED, SmtpStage.DATA)
    assert later.reply == SmtpReply(451, "4.3.0", "try again later")
    assert (never.kind, never.stage) == (OutcomeKind.BOUNCED, SmtpStage.DATA)
    assert ok.kind is OutcomeKind.DELIVERED
    assert server.connections == 1  # the server read every chunk: still in step
    assert len(server.bodies) == 4


async def test_with_chunking_off_the_message_goes_after_data() -> None:
    async with ChunkingServer() as server, loopback_transport(chunking=False) as smtp:
        [ok] = await smtp.deliver_via_relay(relay(server.port), envelope("ok@example.test"))
    assert ok.kind is OutcomeKind.DELIVERED
    assert server.groups[0][-1] == b"DATA"
    assert server.bodies == [ON_THE_WIRE]  # dot-stuffed on the wire, unstuffed by the server


async def test_a_reused_session_the_server_is_closing_loses_and_doubles_nothing() -> None:
    # The 421 answers the RSET that began the reused session's write; the chunk behind it
    # is never read, so the message goes again on a new session, once.
    async with (
        ChunkingServer(transactions_per_session=1) as server,
        loopback_transport() as smtp,
    ):
        [first] = await smtp.deliver_via_relay(relay(server.port), envelope("a@example.test"))
        [second] = await smtp.deliver_via_relay(relay(server.port), envelope("b@example.test"))
    assert (first.kind, second.kind) == (OutcomeKind.DELIVERED, OutcomeKind.DELIVERED)
    assert server.connections == 2
    assert [g[1] for g in server.groups] == [
        b"RCPT TO:<a@example.test>",
        b"RCPT TO:<b@example.test>",
    ]
    assert server.bodies == [ON_THE_WIRE, ON_THE_WIRE]


async def test_a_session_gone_dark_is_given_up_after_the_rset_timeout() -> None:
    """The reused session's write holds RSET and the whole message; the server answers
    nothing (a connection a firewall forgot): after the RSET timeout, not the command timeout
    (an hour here), the message goes on a new session."""
    async with (
        ChunkingServer(dark_after=1) as server,
        loopback_transport(command_timeout=3600.0, rset_timeout=0.2) as smtp,
    ):
        [first] = await smtp.deliver_via_relay(relay(server.port), envelope("a@example.test"))
        async with asyncio.timeout(60):  # a guard, so that a regression fails, not hangs
            [second] = await smtp.deliver_via_relay(relay(server.port), envelope("b@example.test"))
    assert first.kind is OutcomeKind.DELIVERED
    assert second.kind is OutcomeKind.DELIVERED
    assert server.connections == 2
    assert [group[0] for group in server.groups] == [f"MAIL FROM:<{SENDER}>".encode()] * 2
