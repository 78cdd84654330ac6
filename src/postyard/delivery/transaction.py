"""One MAIL/RCPT/DATA transaction on an open session, pipelined where the server allows it.

With PIPELINING (RFC 2920) MAIL FROM, every RCPT TO and DATA go in one write and their
replies come back together: one round trip for the envelope and one for the body, where
one command per round trip takes two more plus one per recipient. Every reply is still
read and kept: each recipient's outcome rests on its own RCPT reply (RFC 2920 section 3.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, overload

from postyard.delivery.exchange import SessionLost, exchange
from postyard.delivery.outcome import (
    OutcomeKind,
    RecipientOutcome,
    SmtpReply,
    SmtpStage,
    classify_reply,
)
from postyard.delivery.pool import Lease, PooledSession
from postyard.delivery.session import HostFailure
from postyard.delivery.wire import (
    END_OF_DATA,
    Envelope,
    envelope_commands,
    wire_chunk,
    wire_data,
)

__all__ = [
    "Envelope",
    "StaleSession",
    "continue_ride",
    "run_transaction",
    "wire_chunk",
    "wire_data",
]

_DATA = b"DATA\r\n"
_RSET = b"RSET\r\n"


@dataclass(frozen=True, slots=True)
class StaleSession:
    """A reused session the server had closed or was closing: the RSET that began the
    transaction got no answer, or not a 2yz one. The server has not taken the message (no
    final dot was sent); it goes on a new session."""

    detail: str


def _ride_commands(session: PooledSession, envelope: Envelope) -> list[bytes] | None:
    commands = envelope_commands(session, envelope)
    return None if commands is None else [*commands, _DATA]


async def continue_ride(
    lease: Lease, envelope: Envelope
) -> tuple[list[RecipientOutcome] | HostFailure | StaleSession, bool]:
    """The transaction of a lease that got its session by a ride: its MAIL, RCPTs and DATA
    went in the holder's write after the holder's message; read their replies and go on as
    ``run_transaction`` does. A session lost before MAIL was answered is a ``StaleSession``
    (no final dot of this message was sent: nothing was taken)."""
    session = lease.session
    assert session is not None and lease.riding > 0
    session.messages += 1
    try:
        replies = await exchange(session, [], expect=lease.riding)
    except SessionLost as exc:
        if not exc.replies:
            return StaleSession(f"{session.label} closed the session before MAIL: {exc}"), False
        return _lost(envelope, session.label, exc.replies, str(exc)), False
    return await _after_envelope(session, envelope, replies, lease=lease)


@overload
async def run_transaction(
    session: PooledSession,
    envelope: Envelope,
    *,
    reset: Literal[False] = False,
    chunking: bool = False,
    reset_timeout: float | None = None,
    lease: Lease | None = None,
) -> tuple[list[RecipientOutcome] | HostFailure, bool]: ...


@overload
async def run_transaction(
    session: PooledSession,
    envelope: Envelope,
    *,
    reset: Literal[True],
    chunking: bool = False,
    reset_timeout: float | None = None,
    lease: Lease | None = None,
) -> tuple[list[RecipientOutcome] | HostFailure | StaleSession, bool]: ...


async def run_transaction(
    session: PooledSession,
    envelope: Envelope,
    *,
    reset: bool = False,
    chunking: bool = False,
    reset_timeout: float | None = None,
    lease: Lease | None = None,
) -> tuple[list[RecipientOutcome] | HostFailure | StaleSession, bool]:
    """One MAIL/RCPT/DATA transaction. Returns the result and whether the session is
    reusable. A 4xx to MAIL FROM, or a connection lost before it was answered, is a
    ``HostFailure`` (the next MX host may take the message); everything after that is
    decided per recipient.

    ``reset`` (a session reused from the pool) starts with RSET (RFC 5321 section
    4.1.1.5), in the same write as the envelope where the server offers PIPELINING: it
    finds the sessions the server has timed out since they were parked, without a round
    trip of its own; such a session gives ``StaleSession`` (only then: every StaleSession
    below is under ``reset``). ``reset_timeout`` bounds the wait for RSET's reply, when
    shorter than the command timeout: a session whose connection went dark while parked (a
    firewall or NAT that forgot it answers nothing, not even a reset) is given up after
    that, not after the whole command timeout.

    ``chunking``: where the server offers CHUNKING (RFC 3030) besides PIPELINING, the message
    goes as one ``BDAT ... LAST`` chunk in that same write, so the whole transaction takes
    one round trip instead of two (MAIL/RCPT/DATA, then the data after the 354).

    ``lease``: the pool's lease of ``session``; with PIPELINING and without CHUNKING the
    message may carry the next waiting lease's envelope in its write (``pool``: a ride), and
    the session then goes to that lease: the caller must not use it afterwards."""
    smtp, label = session.smtp, session.label
    commands = envelope_commands(session, envelope)
    if commands is None:
        # RFC 6531 §3.2: without the extension the message must not be sent this way.
        detail = f"{label} does not support SMTPUTF8 (RFC 6531), which this message needs"
        return _all(envelope, OutcomeKind.BOUNCED, detail, None), True
    session.messages += 1
    if smtp.supports_extension("pipelining"):
        if chunking and smtp.supports_extension("chunking"):
            return await _chunked(session, envelope, commands, reset=reset, within=reset_timeout)
        return await _pipelined(
            session, envelope, commands, reset=reset, within=reset_timeout, lease=lease
        )
    if reset:
        try:
            [reply] = await exchange(session, [_RSET], first_timeout=reset_timeout)
        except SessionLost as exc:
            return StaleSession(f"{label} closed the session before RSET: {exc}"), False
        if reply.code // 100 != 2:
            return StaleSession(f"{label} answered RSET with {reply}"), False
    return await _one_by_one(session, envelope, commands)


async def _pipelined(
    session: PooledSession,
    envelope: Envelope,
    commands: list[bytes],
    *,
    reset: bool,
    within: float | None,
    lease: Lease | None,
) -> tuple[list[RecipientOutcome] | HostFailure | StaleSession, bool]:
    """``within``: the longest wait for RSET's reply (``reset`` only)."""
    label = session.label
    try:
        if reset:
            replies = await exchange(session, [_RSET, *commands, _DATA], first_timeout=within)
        else:
            replies = await exchange(session, [*commands, _DATA])
    except SessionLost as exc:
        return _lost_in_group(envelope, label, exc, reset=reset), False
    if reset:
        if replies[0].code // 100 != 2:
            # Closed without the final dot even if DATA got its 354: no message is taken.
            return StaleSession(f"{label} answered RSET with {replies[0]}"), False
        replies = replies[1:]
    return await _after_envelope(session, envelope, replies, lease=lease)


async def _after_envelope(
    session: PooledSession, envelope: Envelope, replies: list[SmtpReply], *, lease: Lease | None
) -> tuple[list[RecipientOutcome] | HostFailure, bool]:
    """Go on from the replies to a pipelined MAIL, RCPTs and DATA."""
    label = session.label
    mail_reply, rcpt_replies, data_reply = replies[0], replies[1:-1], replies[-1]
    refused_mail = mail_reply.code // 100 != 2
    outcomes, accepted = _rcpt_outcomes(envelope, label, rcpt_replies)
    if refused_mail or not accepted:
        if data_reply.code == 354:
            # RFC 2920 section 3.1: DATA was accepted although nothing else was; an empty
            # message ends it (the server must refuse that for want of recipients).
            try:
                await exchange(session, [END_OF_DATA])
            except SessionLost:
                return _mail_refused_or(envelope, label, mail_reply, outcomes), False
        return _mail_refused_or(envelope, label, mail_reply, outcomes), session.smtp.is_connected
    return await _data(session, envelope, outcomes, data_reply, lease=lease)


async def _chunked(
    session: PooledSession,
    envelope: Envelope,
    commands: list[bytes],
    *,
    reset: bool,
    within: float | None,
) -> tuple[list[RecipientOutcome] | HostFailure | StaleSession, bool]:
    """MAIL, the RCPTs and the message as its last BDAT chunk in one write (RFC 2920 and
    RFC 3030 section 4.2). The server reads the chunk whatever it answered before (its size
    is in the command), so the session stays in step when MAIL or every RCPT was refused.
    ``within``: the longest wait for RSET's reply (``reset`` only); a server that answers
    nothing in that time is taken for gone and the message goes on a new session, which
    duplicates it in the rare case of a server that was only that slow (at least once)."""
    label = session.label
    sent = [*commands, wire_chunk(envelope.data)]
    try:
        if reset:
            replies = await exchange(session, [_RSET, *sent], first_timeout=within)
        else:
            replies = await exchange(session, sent)
    except SessionLost as exc:
        # Lost before the chunk's reply: the server may have the message (RFC 1047);
        # deferring risks a duplicate, which is better than losing it.
        return _lost_in_group(envelope, label, exc, reset=reset), False
    if reset:
        rset, replies = replies[0], replies[1:]
        if rset.code // 100 != 2 and replies[-1].code != 250:
            # Unlike DATA's, this write held the whole message: stale only if it was not taken.
            return StaleSession(f"{label} answered RSET with {rset}"), False
    mail_reply, rcpt_replies, chunk_reply = replies[0], replies[1:-1], replies[-1]
    outcomes, accepted = _rcpt_outcomes(envelope, label, rcpt_replies)
    if mail_reply.code // 100 != 2 or not accepted:
        return _mail_refused_or(envelope, label, mail_reply, outcomes), session.smtp.is_connected
    if chunk_reply.code == 250:
        detail = f"accepted by {label}: {chunk_reply}"
        kind, reusable = OutcomeKind.DELIVERED, True
    else:
        detail = f"{label} refused BDAT: {chunk_reply}"
        kind, reusable = _refusal_kind(chunk_reply), session.smtp.is_connected
    done = _complete(envelope, outcomes, kind, detail, chunk_reply, stage=SmtpStage.DATA)
    return done, reusable


async def _one_by_one(
    session: PooledSession, envelope: Envelope, commands: list[bytes]
) -> tuple[list[RecipientOutcome] | HostFailure, bool]:
    label = session.label
    replies: list[SmtpReply] = []
    try:
        for command in commands:
            replies.extend(await exchange(session, [command]))
            if replies[0].code // 100 != 2:
                return _mail_refused_or(envelope, label, replies[0], {}), session.smtp.is_connected
    except SessionLost as exc:
        return _lost(envelope, label, [*replies, *exc.replies], str(exc)), False
    outcomes, accepted = _rcpt_outcomes(envelope, label, replies[1:])
    if not accepted:
        return _complete(envelope, outcomes, OutcomeKind.DEFERRED, "", None), True
    try:
        [data_reply] = await exchange(session, [_DATA])
    except SessionLost as exc:
        detail = f"connection to {label} lost during DATA: {exc}"
        return _complete(envelope, outcomes, OutcomeKind.DEFERRED, detail, None), False
    return await _data(session, envelope, outcomes, data_reply)


async def _data(
    session: PooledSession,
    envelope: Envelope,
    outcomes: dict[str, RecipientOutcome],
    data_reply: SmtpReply,
    *,
    lease: Lease | None = None,
) -> tuple[list[RecipientOutcome], bool]:
    """The body after DATA was answered ``data_reply``; at least one recipient accepted.
    With ``lease`` (and PIPELINING) the next waiting lease's envelope may ride in the same
    write; the session is then that lease's, whatever became of this message."""
    label = session.label
    if data_reply.code == 354:
        rider = lease.next_rider(session, _ride_commands) if lease is not None else None
        sent = [wire_data(envelope.data)]
        if rider is not None:
            sent += rider.commands
        try:
            [data_reply] = await exchange(session, sent, expect=1, leave_reader=rider is not None)
        except SessionLost as exc:
            # RFC 1047: if the link broke after the final dot the server may have the
            # message; deferring risks a duplicate, which is better than losing it.
            detail = f"connection to {label} lost during DATA: {exc}"
            return _complete(envelope, outcomes, OutcomeKind.DEFERRED, detail, None), False
        except BaseException:
            if rider is not None:  # stopped before its reply came: it would be the rider's
                session.close()
            raise
        finally:
            if rider is not None and lease is not None:
                # A lost or closed session too: the rider finds it so and starts anew.
                lease.hand_over(rider, session)
        if data_reply.code == 250:
            detail = f"accepted by {label}: {data_reply}"
            delivered = _complete(
                envelope, outcomes, OutcomeKind.DELIVERED, detail, data_reply, stage=SmtpStage.DATA
            )
            return delivered, True
    detail = f"{label} refused DATA: {data_reply}"
    kind = _refusal_kind(data_reply)
    refused = _complete(envelope, outcomes, kind, detail, data_reply, stage=SmtpStage.DATA)
    return refused, session.smtp.is_connected


def _rcpt_outcomes(
    envelope: Envelope, label: str, replies: list[SmtpReply]
) -> tuple[dict[str, RecipientOutcome], list[str]]:
    """Refused recipients' outcomes, and the accepted recipients (250 or 251 only)."""
    outcomes: dict[str, RecipientOutcome] = {}
    accepted: list[str] = []
    for rcpt, reply in zip(envelope.recipients, replies, strict=False):
        if reply.code in (250, 251):
            accepted.append(rcpt)
            continue
        detail = f"{label} refused RCPT TO: {reply}"
        outcomes[rcpt] = RecipientOutcome(rcpt, _refusal_kind(reply), reply, detail, SmtpStage.RCPT)
    return outcomes, accepted


def _mail_refused_or(
    envelope: Envelope,
    label: str,
    mail_reply: SmtpReply,
    outcomes: dict[str, RecipientOutcome],
) -> list[RecipientOutcome] | HostFailure:
    """When MAIL FROM was refused: every recipient bounced (5xx) or the host failed (4xx).
    Otherwise every recipient was refused at RCPT and ``outcomes`` says how."""
    if mail_reply.code // 100 == 2:
        return _complete(envelope, outcomes, OutcomeKind.DEFERRED, "", None)
    detail = f"{label} refused MAIL FROM: {mail_reply}"
    if classify_reply(mail_reply) is OutcomeKind.BOUNCED:
        return _all(envelope, OutcomeKind.BOUNCED, detail, mail_reply, stage=SmtpStage.MAIL)
    return HostFailure(detail, mail_reply)


def _lost_in_group(
    envelope: Envelope, label: str, exc: SessionLost, *, reset: bool
) -> list[RecipientOutcome] | HostFailure | StaleSession:
    """The connection broke during a pipelined group; with ``reset`` the group began with
    RSET, and a session that did not answer it 2yz was stale (nothing was taken)."""
    got = exc.replies
    if reset:
        if not got or got[0].code // 100 != 2:
            return StaleSession(f"{label} closed the session before RSET: {exc}")
        got = got[1:]
    return _lost(envelope, label, got, str(exc))


def _lost(
    envelope: Envelope, label: str, replies: list[SmtpReply], reason: str
) -> list[RecipientOutcome] | HostFailure:
    """Outcomes when the connection broke after ``replies`` (MAIL's first, then RCPTs')."""
    if not replies:
        return HostFailure(f"connection to {label} lost at MAIL FROM: {reason}")
    if replies[0].code // 100 != 2:
        return _mail_refused_or(envelope, label, replies[0], {})
    outcomes, _ = _rcpt_outcomes(envelope, label, replies[1:])
    stage = "RCPT TO" if len(replies) <= len(envelope.recipients) else "DATA"
    detail = f"connection to {label} lost at {stage}: {reason}"
    return _complete(envelope, outcomes, OutcomeKind.DEFERRED, detail, None)


def _refusal_kind(reply: SmtpReply) -> OutcomeKind:
    # Only 250/251 accept a RCPT and 354 then 250 a DATA; a stray 2yz there was not an
    # acceptance, so it must not count as one.
    kind = classify_reply(reply)
    return OutcomeKind.DEFERRED if kind is OutcomeKind.DELIVERED else kind


def _complete(
    envelope: Envelope,
    decided: dict[str, RecipientOutcome],
    kind: OutcomeKind,
    detail: str,
    reply: SmtpReply | None,
    *,
    stage: SmtpStage | None = None,
) -> list[RecipientOutcome]:
    """Outcomes in envelope order: those already decided, and ``kind`` for the rest."""
    return [
        decided.get(rcpt) or RecipientOutcome(rcpt, kind, reply, detail, stage)
        for rcpt in envelope.recipients
    ]


def _all(
    envelope: Envelope,
    kind: OutcomeKind,
    detail: str,
    reply: SmtpReply | None,
    *,
    stage: SmtpStage | None = None,
) -> list[RecipientOutcome]:
    return _complete(envelope, {}, kind, detail, reply, stage=stage)
