"""RFC 5965 Abuse Reporting Format: complaints from feedback loops (pure).

A report is ``multipart/report; report-type=feedback-report``: a human-readable part, a
``message/feedback-report`` part of fields (``Feedback-Type``, ``User-Agent``, ``Version``,
``Original-Mail-From``, ``Original-Rcpt-To`` (repeatable), ``Arrival-Date``,
``Source-IP``, ``Reported-Domain``), and the original message or its headers (often
redacted), which is how the complained-about message is found: its VERP ``Return-Path``,
``CFBL-Feedback-ID`` (RFC 9477) or ``Message-ID``.
"""

from __future__ import annotations

from email.message import Message

from postyard.inbound.dsn import ORIGINAL_PARTS
from postyard.inbound.mime import PARSE_ERRORS, original_headers, parts, quoted_original, text_of
from postyard.inbound.types import ComplaintReport

FEEDBACK_PART = "message/feedback-report"
MAX_RCPT = 20


def _fields(part: Message) -> list[tuple[str, str]]:
    """The report's fields in order (repeatable ones kept), lowercase names."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        inner = payload[0]
        pairs = [(k.strip().lower(), " ".join(str(v).split())) for k, v in inner.items()]
        rest = inner.get_payload()
        text = rest if isinstance(rest, str) else ""
    else:
        pairs, text = [], text_of(part)
    for line in text.replace("\r\n", "\n").split("\n"):
        name, colon, value = line.partition(":")
        if colon and name.strip() and " " not in name.strip():
            pairs.append((name.strip().lower(), value.strip()))
    return pairs


def _address(value: str) -> str:
    value = value.strip()
    if value.startswith("<") and ">" in value:
        value = value[1 : value.index(">")]
    return value.strip()


def parse(message: Message) -> ComplaintReport | None:
    """The feedback report in ``message``, or None when it has no ``message/feedback-report``
    part with a ``Feedback-Type``."""
    feedback: Message | None = None
    original: Message | None = None
    for part in parts(message):
        kind = part.get_content_type()
        if kind == FEEDBACK_PART and feedback is None:
            feedback = part
        elif kind in ORIGINAL_PARTS and original is None:
            original = quoted_original(part)
    if feedback is None:
        return None
    try:
        pairs = _fields(feedback)
    except PARSE_ERRORS:
        return None
    first: dict[str, str] = {}
    for name, value in pairs:
        first.setdefault(name, value)
    feedback_type = first.get("feedback-type", "").split(";")[0].strip().lower()
    if not feedback_type:
        return None
    rcpt = tuple(
        dict.fromkeys(_address(v) for n, v in pairs if n == "original-rcpt-to" and "@" in v)
    )[:MAX_RCPT]
    return ComplaintReport(
        feedback_type=feedback_type,
        original_rcpt_to=rcpt,
        user_agent=first.get("user-agent"),
        original_mail_from=_address(first["original-mail-from"])
        if "original-mail-from" in first
        else None,
        reported_domain=first.get("reported-domain"),
        source_ip=first.get("source-ip"),
        arrival_date=first.get("arrival-date") or first.get("received-date"),
        original=original_headers(original),
    )
