"""Delivery outcomes as values: what happened to each recipient, with the reply that said so.

Nothing here does I/O. A delivery attempt never raises for a failure at the remote end; it
returns one ``RecipientOutcome`` per recipient (STYLE: outcomes are values, not exceptions).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

# RFC 3463 §2: class "." subject "." detail, where class is 2, 4 or 5, subject is 1-3 digits
# and detail 1-3 digits. RFC 2034 §4 puts it first in the reply text, followed by a space.
_ENHANCED_STATUS = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")


class OutcomeKind(StrEnum):
    """What a delivery attempt means for one recipient."""

    DELIVERED = "delivered"
    """The remote end took responsibility for the message (2xx after DATA)."""
    DEFERRED = "deferred"
    """A temporary failure: try again later, following the retry policy."""
    BOUNCED = "bounced"
    """A permanent failure: do not retry."""


class SmtpStage(StrEnum):
    """The SMTP command a refusal answered: only RCPT (and DATA for a lone recipient) speaks
    about the recipient's address."""

    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"


@dataclass(frozen=True, slots=True)
class SmtpReply:
    """One SMTP reply: basic code, RFC 3463 enhanced status (if sent) and the text after it."""

    code: int
    enhanced: str | None
    text: str

    def __str__(self) -> str:
        return " ".join(part for part in (str(self.code), self.enhanced, self.text) if part)

    @classmethod
    def parse(cls, code: int, message: str) -> SmtpReply:
        """Build a reply from a code and its (possibly multi-line) text.

        The enhanced status code is taken from the first line when its class agrees with the
        basic code (RFC 3463 §2: they must not disagree); a repetition of it at the start of
        continuation lines is dropped, and lines are joined with a space so that the reply fits
        on one log line. Never raises.
        """
        lines = [line.strip() for line in message.splitlines()] or [""]
        enhanced, first = split_enhanced_status(lines[0])
        if enhanced is not None and enhanced[0] != str(code)[:1]:
            enhanced, first = None, lines[0]
        rest = [
            line[len(enhanced) :].strip() if enhanced and line.startswith(enhanced) else line
            for line in lines[1:]
        ]
        text = " ".join(part for part in (first, *rest) if part)
        return cls(code=code, enhanced=enhanced, text=text)


@dataclass(frozen=True, slots=True)
class RecipientOutcome:
    """The result of one delivery attempt for one recipient.

    ``reply`` is the SMTP reply the outcome rests on (the RCPT reply for a refused recipient,
    the DATA reply for an accepted one), or None when no reply applies (DNS failure,
    connection failure). ``detail`` is a human-readable account naming the remote host.
    ``stage`` is the command ``reply`` answered, when there was one.
    """

    recipient: str
    kind: OutcomeKind
    reply: SmtpReply | None
    detail: str
    stage: SmtpStage | None = None


def split_enhanced_status(text: str) -> tuple[str | None, str]:
    """Split a leading RFC 3463 enhanced status code off reply text.

    Returns ``(code, rest)``, e.g. ``("5.1.1", "user unknown")`` for ``"5.1.1 user unknown"``,
    or ``(None, text)`` when the text does not start with one. Never raises.
    """
    match = _ENHANCED_STATUS.match(text)
    if match is None:
        return None, text
    return match.group(0), text[match.end() :].strip()


def classify_reply(reply: SmtpReply) -> OutcomeKind:
    """Map a final SMTP reply to an outcome (RFC 5321 §4.2.1).

    2yz is DELIVERED, 5yz BOUNCED, 4yz DEFERRED. Anything else (a 1yz or 3yz where a final
    reply was due, or garbage) is a protocol violation by the server; it is DEFERRED, because
    retrying is the safe choice when it is not clear what the server meant. Never raises.
    """
    first_digit = reply.code // 100
    if first_digit == 2:
        return OutcomeKind.DELIVERED
    if first_digit == 5:
        return OutcomeKind.BOUNCED
    return OutcomeKind.DEFERRED
