"""Internet messages (RFC 5322 + MIME) built from a validated send request (pure).

The top-level header block is written here, not by ``email.message.EmailMessage``: every
value is checked first (CR, LF, NUL and other controls never reach a header) and folded by
rules we can state and test, because the stdlib header folder has had injection bugs
(CVE-2024-6923; our 3.11 has no ``verify_generated_headers``). The MIME body of a text or
HTML message is written directly (``mime_text``); with attachments or inline images it is
built with ``email.message.MIMEPart`` under ``email.policy.SMTP`` (``mime_parts``).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import lru_cache

from postyard.sending.addresses import Address, encode_rfc2047_words, header_text_problem
from postyard.sending.html_text import html_to_text
from postyard.sending.message_spec import Attachment, InvalidHeader, MessageSpec
from postyard.sending.mime_parts import build_body_with_stdlib
from postyard.sending.mime_text import alternative, single, text_part

__all__ = [
    "MAX_MESSAGE_BYTES",
    "Attachment",
    "InvalidHeader",
    "MessageSpec",
    "build_body_with_stdlib",
    "build_message",
    "needs_smtputf8",
    "only_crlf",
]

MAX_MESSAGE_BYTES = 40 * 1024 * 1024  # enforced by the caller, not here

_FOLD_AT = 78  # RFC 5322 section 2.1.1: lines SHOULD be at most 78 characters ...
_LINE_LIMIT = 998  # ... and MUST be at most 998 octets, CRLF excluded
# RFC 5322 section 3.6.8 ftext; short enough that "Name: " fits the first line.
_FIELD_NAME = re.compile(rf"[!-9;-~]{{1,{_FOLD_AT - 2}}}")
# Headers that Postyard writes, or that MTAs and signers add, and a caller may not set.
_PROTECTED = frozenset(
    {
        "from", "to", "cc", "bcc", "subject", "date", "message-id", "mime-version",
        "reply-to", "sender", "return-path", "dkim-signature", "received",
        "authentication-results", "received-spf", "domainkey-signature",
    }
)  # fmt: skip
_PROTECTED_PREFIXES = ("content-", "arc-")
_MESSAGE_ID = re.compile(r"<[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,200}@[A-Za-z0-9.-]{1,253}>")
_UNSTRUCTURED_TOKEN = re.compile(r"[ \t]*[^ \t]+|[ \t]+")


def needs_smtputf8(spec: MessageSpec) -> bool:
    """True when any address, Bcc included (it is in the envelope), has a non-ASCII local
    part: the message can then only be relayed with SMTPUTF8 (RFC 6531, RFC 6532)."""
    addresses = (spec.sender, *spec.to, *spec.cc, *spec.bcc, *spec.reply_to)
    return any(address.needs_smtputf8 for address in addresses)


class _LineTooLong(Exception):
    pass


def _fold(name: str, tokens: list[str]) -> str:
    """``name: tokens`` as header lines joined by CRLF; a line break is only ever put in
    front of the whitespace that starts a token (RFC 5322 section 3.2.2 folding), so
    unfolding gives back the exact value. Raises ``_LineTooLong`` past 998 octets."""
    lines: list[str] = []
    line = f"{name}:"
    for index, token in enumerate(tokens):
        foldable = index > 0 and token[:1] in " \t" and bool(token.strip(" \t"))
        if foldable and len(line) + len(token) > _FOLD_AT:
            lines.append(line)
            line = token
        else:
            line += token if index else f" {token}"
    lines.append(line)
    if any(len(item.encode("utf-8")) > _LINE_LIMIT for item in lines):
        raise _LineTooLong
    return "\r\n".join(lines)


def _spaced(words: list[str]) -> list[str]:
    return words[:1] + [f" {word}" for word in words[1:]]


def _split_outside_quotes(value: str) -> list[str]:
    """Split at the single spaces of ``Address.header_value`` that are not quoted."""
    words: list[str] = []
    start, in_quotes, escaped = 0, False, False
    for index, char in enumerate(value):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = in_quotes
        elif char == '"':
            in_quotes = not in_quotes
        elif char == " " and not in_quotes:
            words.append(value[start:index])
            start = index + 1
    words.append(value[start:])
    return words


def _address_header(name: str, addresses: tuple[Address, ...]) -> str:
    tokens: list[str] = []
    for position, address in enumerate(addresses):
        value = address.header_value()
        # Without quotes (or escapes, only found in them) every space splits.
        words = _split_outside_quotes(value) if '"' in value else value.split(" ")
        if position < len(addresses) - 1:
            words[-1] += ","
        tokens.extend(words)
    # Addr-specs are at most 254 octets (email-validator) and other tokens are short.
    return _fold(name, _spaced(tokens))


@lru_cache(maxsize=256)
def _from_header(sender: Address) -> str:
    """The From header of ``sender``: a tenant's messages share a few senders, and
    ``Address`` is immutable, so its rendering is memoised."""
    return _address_header("From", (sender,))


def _unstructured(name: str, value: str) -> str:
    """RFC 5322 unstructured text: folded at its own whitespace when ASCII, otherwise (or
    when it holds text that decoders would take for an encoded word, or cannot be folded
    within 998 octets) sent as RFC 2047 encoded words, which decode to exactly ``value``."""
    if value.isascii() and "=?" not in value:
        try:
            return _fold(name, _UNSTRUCTURED_TOKEN.findall(value))
        except _LineTooLong:
            pass
    return _fold(name, _spaced(_header_words(name, value)))


def _header_words(name: str, value: str) -> list[str]:
    return encode_rfc2047_words(value, first_word_max=_FOLD_AT - len(name) - 2)


def _subject_header(subject: str) -> str:
    if not isinstance(subject, str):
        raise InvalidHeader("subject", "Invalid `subject` field: expected a string.")
    if len(subject) <= _CACHED_SUBJECT:
        return _short_subject_header(subject)
    return _checked_subject_header(subject)


# Bulk and transactional mail repeat a few subjects; only short ones are memoised, so that
# the cache stays small whatever the requests hold.
_CACHED_SUBJECT = 200


@lru_cache(maxsize=256)
def _short_subject_header(subject: str) -> str:
    return _checked_subject_header(subject)


def _checked_subject_header(subject: str) -> str:
    problem = header_text_problem(subject, allow_tab=True)
    if problem is not None:
        raise InvalidHeader("subject", f"Invalid `subject` field: the subject contains {problem}.")
    return _unstructured("Subject", subject)


def _custom_headers(headers: tuple[tuple[str, str], ...]) -> list[str]:
    lines: list[str] = []
    seen: set[str] = set()
    for name, value in headers:
        prefix = "Invalid `headers` field:"
        if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
            raise InvalidHeader("headers", f"{prefix} {name!r} is not a valid header name.")
        key = name.lower()
        if key in _PROTECTED or key.startswith(_PROTECTED_PREFIXES):
            raise InvalidHeader("headers", f"{prefix} the `{name}` header cannot be set.")
        if key in seen:
            raise InvalidHeader("headers", f"{prefix} the `{name}` header is given twice.")
        seen.add(key)
        if not isinstance(value, str):
            raise InvalidHeader("headers", f"{prefix} the `{name}` value must be a string.")
        problem = header_text_problem(value, allow_tab=True)
        if problem is not None:
            raise InvalidHeader("headers", f"{prefix} the `{name}` value contains {problem}.")
        content = value.strip(" \t")  # surrounding blanks are not content
        if not content.isascii():
            lines.append(_fold(name, _spaced(_header_words(name, content))))
            continue
        try:
            lines.append(_fold(name, _UNSTRUCTURED_TOKEN.findall(content)))
        except _LineTooLong:
            msg = f"{prefix} the `{name}` value has a word too long for a header line."
            raise InvalidHeader("headers", msg) from None
    return lines


@lru_cache(maxsize=8)
def _date_header(seconds: int) -> str:
    """RFC 5322 section 3.3, in UTC to the second: the messages of a second share it."""
    return f"Date: {format_datetime(datetime.fromtimestamp(seconds, UTC))}"


def _header_block(spec: MessageSpec) -> str:
    if spec.date.tzinfo is None:
        raise InvalidHeader("date", "Invalid `date`: the date must be timezone-aware.")
    if not _MESSAGE_ID.fullmatch(spec.message_id):
        msg = f"Invalid `message_id`: {spec.message_id!r} is not <id@domain>."
        raise InvalidHeader("message_id", msg)
    lines = [_from_header(spec.sender)]
    for name, addresses in (("To", spec.to), ("Cc", spec.cc), ("Reply-To", spec.reply_to)):
        if addresses:
            lines.append(_address_header(name, addresses))
    # Bcc is deliberately absent: its recipients exist only in the SMTP envelope.
    lines += [
        _subject_header(spec.subject),
        _date_header(math.floor(spec.date.timestamp())),
        f"Message-ID: {spec.message_id}",
        "MIME-Version: 1.0",
        *_custom_headers(spec.headers),
    ]
    return "".join(f"{line}\r\n" for line in lines)


def _text_only_body(spec: MessageSpec) -> bytes:
    """What ``_body`` and the stdlib generator give for a message without attachments,
    written directly (``mime_text``)."""
    if spec.html is None:
        return single(text_part(spec.text or "", "plain"))
    if spec.text == "":
        return single(text_part(spec.html, "html"))
    text = html_to_text(spec.html) if spec.text is None else spec.text
    return alternative([text_part(text, "plain"), text_part(spec.html, "html")], spec.message_id)


def only_crlf(raw: bytes) -> bool:
    """Whether every CR and every LF in ``raw`` is part of a CRLF pair (three counts in C,
    several times faster than a regex over the message)."""
    pairs = raw.count(b"\r\n")
    return raw.count(b"\r") == pairs and raw.count(b"\n") == pairs


def build_message(spec: MessageSpec) -> bytes:
    """The message as it goes on the wire (before DKIM signing and dot-stuffing).

    Guarantees: CRLF line endings only, no line over 998 octets, no Bcc header, every
    header value checked for control characters (also inside encoded words), and the same
    bytes for the same spec. Headers are ASCII except the local parts of addresses that
    need SMTPUTF8 (see ``needs_smtputf8``). Raises ``InvalidHeader`` (with the request field
    at fault) for a bad subject, custom header, attachment name/type/content id, a naive
    date or a malformed Message-ID.
    """
    head = _header_block(spec).encode("utf-8")
    _check_lines(head)
    if spec.attachments:
        body = build_body_with_stdlib(spec)
        _check_lines(body)
    else:
        # Written by ``mime_text`` from the lines of the text joined by CRLF, 7bit lines of
        # at most 78 octets or quoted-printable ones of 76, and ASCII framing: the checks
        # hold by construction (tests/sending/test_mime_text.py checks them over a corpus).
        body = _text_only_body(spec)
    return head + body


def _check_lines(raw: bytes) -> None:
    """A bare CR or LF would let a relay see a different message (SMTP smuggling).
    Line lengths are measured by splitting: a regex for "999 non-newlines" restarts at every
    byte and cost milliseconds per message (the hottest line of the API in the profile)."""
    if not only_crlf(raw) or max(map(len, raw.split(b"\r\n"))) > _LINE_LIMIT:
        raise RuntimeError("Built a message with a bare line ending or an overlong line.")
