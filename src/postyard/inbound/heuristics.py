"""Bounces that are not RFC 3464 reports (pure): the human-readable texts of Exim, qmail
(and Yahoo, which speaks it), Exchange/Outlook, Gmail and Postfix, when they come without
a delivery-status part.

A format is recognised by phrases its software always writes; the recipients are the
addresses the explanation names (before the quoted original), each with the SMTP reply
that follows it. Mail that matches no format (an auto-reply, a person answering the
return path) is not a bounce: nothing here guesses from a status code alone.
"""

from __future__ import annotations

import email.parser
import email.policy
import re
from dataclasses import dataclass
from email.message import Message

from postyard.inbound.dsn import normalise_status
from postyard.inbound.mime import PARSE_ERRORS, header, original_headers, parts, text_of
from postyard.inbound.types import Action, BounceReport, RecipientStatus

MAX_RECIPIENTS = 20


@dataclass(frozen=True, slots=True)
class Format:
    name: str
    failed: tuple[str, ...]
    """Lowercase phrases that identify the software's failure notice."""
    delayed: tuple[str, ...] = ()
    """Phrases of its delay warning (the message is still being retried)."""
    needs_daemon_sender: bool = False
    """Only trusted when From is a mailer daemon or postmaster (generic phrases)."""


FORMATS = (
    Format(
        "exim",
        ("this message was created automatically by mail delivery software",),
        ("has not yet been delivered to one or more of its recipients",),
    ),
    Format(
        "qmail",
        ("this is the qmail-send program", "i'm afraid i wasn't able to deliver your message"),
        ("has not been delivered yet", "i'm not going to give up just yet"),
    ),
    Format(
        "yahoo",
        ("sorry, we were unable to deliver your message to the following address",),
        ("message will be retried", "temporarily deferred"),
    ),
    Format(
        "exchange",
        (
            "delivery has failed to these recipients or groups",
            "your message couldn't be delivered",
            "remote server returned '",
        ),
        ("delivery is delayed to these recipients or groups", "delivery has been delayed"),
    ),
    Format(
        "gmail",
        (
            "delivery to the following recipient failed permanently",
            "delivery to the following recipients failed permanently",
            "your message wasn't delivered to",
            "address not found",
        ),
        (
            "delivery to the following recipient has been delayed",
            "there was a temporary problem delivering your message",
            "message not delivered yet",
        ),
    ),
    Format(
        "postfix",
        (
            "this is the mail system at host",
            "i'm sorry to have to inform you that your message could not",
        ),
        ("delayed mail (still being retried)", "this is a warning only"),
    ),
    Format(
        "generic",
        (
            "could not be delivered to one or more recipients",
            "permanent error",
            "undeliverable",
            "mail delivery failed",
            "returned mail",
        ),
        ("delivery delayed", "will continue trying", "still trying"),
        needs_daemon_sender=True,
    ),
)

# Where the quoted original begins in the texts above; the explanation is what comes first.
_ORIGINAL_MARKERS = (
    "------ this is a copy of the message",
    "--- below this line is a copy of the message",
    "original message headers:",
    "----- original message -----",
    "------ original message ------",
    "----- message header follows -----",
    "----- the header of the original message is following",
)
_ADDRESS = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+"
)
_CODE = re.compile(
    r"(?<![^\s'\"(:#])[245]\d\d(?:[\s:-]|$)|(?<![\d.])[245]\.\d{1,3}\.\d{1,3}(?!\.?\d)"
)
_NOT_RECIPIENTS = ("mailer-daemon@", "postmaster@")
_TAGS = re.compile(r"<[^<>]{0,2000}>")


def _looks_like_daemon(message: Message) -> bool:
    sender = (header(message, "From") or "").lower()
    return any(name in sender for name in ("mailer-daemon", "postmaster", "mail delivery"))


def _text(message: Message) -> str:
    """The readable text of the notice: its plain parts, else its HTML without tags."""
    plain, html = [], []
    for part in parts(message):
        kind = part.get_content_type()
        if kind == "text/plain":
            plain.append(text_of(part))
        elif kind == "text/html":
            html.append(_TAGS.sub(" ", text_of(part)).replace("&nbsp;", " "))
    return "\n".join(plain or html).replace("\r\n", "\n")


def _split_original(text: str) -> tuple[str, Message | None]:
    lower = text.lower()
    cut = min((i for i in (lower.find(m) for m in _ORIGINAL_MARKERS) if i >= 0), default=-1)
    if cut < 0:
        return text, None
    rest = text[cut:].split("\n", 1)[1] if "\n" in text[cut:] else ""
    try:
        quoted = email.parser.Parser(policy=email.policy.compat32).parsestr(
            rest.lstrip("\n"), headersonly=True
        )
    except PARSE_ERRORS:
        quoted = None
    return text[:cut], quoted


def _format_of(message: Message, lower: str) -> tuple[Format, bool] | None:
    """The first format whose phrases appear, and whether it is a delay warning."""
    daemon = _looks_like_daemon(message)
    for fmt in FORMATS:
        if fmt.needs_daemon_sender and not daemon:
            continue
        if any(phrase in lower for phrase in fmt.delayed):
            return fmt, True
        if any(phrase in lower for phrase in fmt.failed):
            return fmt, False
    return None


def _diagnostic(segment: str) -> tuple[str | None, str | None]:
    """(status, the line that gave it) from the first SMTP code in ``segment``."""
    match = _CODE.search(segment)
    if match is None:
        return None, None
    start = segment.rfind("\n", 0, match.start()) + 1
    end = segment.find("\n", match.end())
    line = " ".join(segment[start : end if end >= 0 else len(segment)].split())
    return normalise_status(line, line), line[:1000] or None


def _recipients(explanation: str) -> list[tuple[str, str]]:
    """(address, the text up to the next different address) for each named recipient."""
    found: list[tuple[str, int]] = []
    seen: set[str] = set()
    for match in _ADDRESS.finditer(explanation):
        address = match.group(0).strip(".")
        lowered = address.lower()
        if lowered.startswith(_NOT_RECIPIENTS) or lowered.startswith(("b+", "u+")):
            continue
        if lowered not in seen:
            seen.add(lowered)
            found.append((address, match.start()))
    segments = []
    for i, (address, start) in enumerate(found[:MAX_RECIPIENTS]):
        end = found[i + 1][1] if i + 1 < len(found) else len(explanation)
        segments.append((address, explanation[start:end]))
    return segments


def parse(message: Message) -> BounceReport | None:
    """The bounce in ``message`` when its text is one of ``FORMATS``, else None."""
    text = _text(message)
    subject = header(message, "Subject") or ""
    explanation, quoted = _split_original(text)
    recognised = _format_of(message, (subject + "\n" + explanation).lower())
    if recognised is None:
        return None
    fmt, delayed = recognised
    fallback_status, fallback_line = _diagnostic(explanation)
    segments = _recipients(explanation) or [("", explanation)]
    recipients = []
    for address, segment in segments:
        status, line = _diagnostic(segment)
        if status is None and len(segments) == 1:
            status, line = fallback_status, fallback_line
        if status is None:
            status = "4.0.0" if delayed else "5.0.0"
        action = Action.DELAYED if delayed or status.startswith("4") else Action.FAILED
        if action is Action.DELAYED and status.startswith("5"):
            status = "4" + status[1:]  # a warning: the software is still retrying
        recipients.append(
            RecipientStatus(
                action=action, status=status, diagnostic=line, final_recipient=address or None
            )
        )
    return BounceReport(
        format=fmt.name,
        recipients=tuple(recipients),
        original=original_headers(quoted),
    )
