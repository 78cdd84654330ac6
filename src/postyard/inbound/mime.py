"""Reading reports out of MIME (pure): the parts to look at, their text, the quoted
original. Uses the stdlib parser in its lenient compat32 mode: a report is evidence to read,
not mail to display."""

from __future__ import annotations

import email.errors
import email.parser
import email.policy
from email.message import Message

from postyard.inbound.types import OriginalHeaders

# The stdlib parser and header access raise these on hostile input (fuzzing also finds
# AttributeError and TypeError); RecursionError for absurdly nested parts.
PARSE_ERRORS = (
    email.errors.MessageError,
    ValueError,
    LookupError,
    TypeError,
    AttributeError,
    UnicodeError,
    RecursionError,
)
MAX_PARTS = 64  # a report has three parts; more is noise we do not walk
MAX_TEXT_CHARS = 64 * 1024  # the human-readable part of a bounce is short


def header(message: Message, name: str) -> str | None:
    """A header's value as one stripped line, or None when absent or unreadable."""
    try:
        value = message.get(name)
    except PARSE_ERRORS:
        return None
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def parts(message: Message) -> list[Message]:
    """The message and its MIME parts, depth first, without entering quoted messages
    (``message/rfc822`` and the like: a bounce of a bounce is still one bounce)."""
    found: list[Message] = []
    stack = [message]
    while stack and len(found) < MAX_PARTS:
        part = stack.pop()
        found.append(part)
        if part.get_content_maintype() == "multipart":
            payload = part.get_payload()
            if isinstance(payload, list):
                stack.extend(reversed([p for p in payload if isinstance(p, Message)]))
    return found


def text_of(part: Message) -> str:
    """A part's decoded text (transfer encoding undone, charset best effort), capped."""
    try:
        raw = part.get_payload(decode=True)
    except PARSE_ERRORS:
        return ""
    if not isinstance(raw, bytes):
        payload = part.get_payload()
        return payload[:MAX_TEXT_CHARS] if isinstance(payload, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        text = raw[: MAX_TEXT_CHARS * 4].decode(charset, "replace")
    except LookupError:
        text = raw[: MAX_TEXT_CHARS * 4].decode("utf-8", "replace")
    return text[:MAX_TEXT_CHARS]


def original_headers(message: Message | None) -> OriginalHeaders | None:
    if message is None:
        return None
    found = OriginalHeaders(
        message_id=header(message, "Message-ID"),
        return_path=_bare_address(header(message, "Return-Path")),
        feedback_id=header(message, "CFBL-Feedback-ID"),
    )
    return found if found != OriginalHeaders() else None


def quoted_original(part: Message) -> Message | None:
    """The quoted message of a ``message/rfc822`` or ``text/rfc822-headers`` part."""
    kind = part.get_content_type()
    try:
        if kind in {"message/rfc822", "message/global", "message/global-headers"}:
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
            if isinstance(payload, str):
                return email.parser.Parser(policy=email.policy.compat32).parsestr(
                    payload, headersonly=True
                )
        if kind == "text/rfc822-headers":
            return email.parser.Parser(policy=email.policy.compat32).parsestr(
                text_of(part), headersonly=True
            )
    except PARSE_ERRORS:
        return None
    return None


def _bare_address(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if value.startswith("<") and ">" in value:
        value = value[1 : value.index(">")]
    return value or None
