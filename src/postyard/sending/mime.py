"""Internet messages (RFC 5322 + MIME) built from a validated send request (pure).

The top-level header block is written here, not by ``email.message.EmailMessage``: every
value is checked first (CR, LF, NUL and other controls never reach a header) and folded by
rules we can state and test, because the stdlib header folder has had injection bugs
(CVE-2024-6923; our 3.11 has no ``verify_generated_headers``). The MIME body (parts,
transfer encodings, RFC 2231 file names) is built with ``email.message.MIMEPart`` under
``email.policy.SMTP``, where the stdlib is right; every value it receives is checked too.
"""

from __future__ import annotations

import email.policy
import math
import mimetypes
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import MIMEPart
from email.utils import format_datetime
from functools import cache, lru_cache

from postyard.sending.addresses import Address, encode_rfc2047_words, header_text_problem
from postyard.sending.html_text import html_to_text
from postyard.sending.mime_text import (
    alternative,
    boundary_for,
    is_seven_bit,
    single,
    text_part,
    well_formed,
)

MAX_MESSAGE_BYTES = 40 * 1024 * 1024  # enforced by the caller, not here

# CRLF line endings; 76 columns is the RFC 2045 section 6.7 limit for quoted-printable, and
# gives base64 lines of 76 characters. Part headers are ASCII (RFC 2047 / RFC 2231).
_PART_POLICY = email.policy.SMTP.clone(max_line_length=76)
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
_RESTRICTED_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"  # RFC 6838 section 4.2
_MIME_TYPE = re.compile(f"({_RESTRICTED_NAME})/({_RESTRICTED_NAME})")
_CONTENT_ID = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]{1,60}")
_COMPRESSED = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}
_UNSTRUCTURED_TOKEN = re.compile(r"[ \t]*[^ \t]+|[ \t]+")


class InvalidHeader(ValueError):
    """A header value the message may not carry; ``message`` names the field and header."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file to attach; with ``content_id`` it is an inline part that HTML refers to as
    ``cid:<content_id>``. ``content_type`` defaults from the file name."""

    filename: str
    content: bytes
    content_type: str | None = None
    content_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageSpec:
    """Everything a message is built from; addresses are already parsed and validated."""

    sender: Address
    to: tuple[Address, ...]
    cc: tuple[Address, ...] = ()
    bcc: tuple[Address, ...] = ()
    reply_to: tuple[Address, ...] = ()
    subject: str
    html: str | None = None
    text: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    attachments: tuple[Attachment, ...] = ()
    message_id: str
    date: datetime


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
    lines = [_address_header("From", (spec.sender,))]
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


def _text_part(content: str, subtype: str) -> MIMEPart:
    content = well_formed(content)
    seven_bit = is_seven_bit(content)
    part = MIMEPart(policy=_PART_POLICY)
    part.set_content(
        content, subtype=subtype, charset="utf-8", cte="7bit" if seven_bit else "quoted-printable"
    )
    return part


@cache
def _mime_types() -> mimetypes.MimeTypes:
    # A table with only Python's built-in map, so the guess never depends on the host's
    # mime.types files.
    return mimetypes.MimeTypes()


def _guess_type(filename: str) -> str:
    _, dot, extension = filename.rpartition(".")
    if not dot or not extension or "/" in extension or "\\" in extension:
        return "application/octet-stream"
    guessed, encoding = _mime_types().guess_type(f"file.{extension.lower()}", strict=False)
    if encoding is not None:
        return _COMPRESSED.get(encoding, "application/octet-stream")
    # message/* may not be base64-encoded (RFC 2046 section 5.2.1): send such files as bytes.
    if guessed is None or guessed.startswith(("message/", "multipart/")):
        return "application/octet-stream"
    return guessed


def _attachment_part(index: int, attachment: Attachment, *, inline: bool) -> MIMEPart:
    prefix = f"Invalid `attachments[{index}]`:"
    problem = header_text_problem(attachment.filename)
    if problem is not None:
        raise InvalidHeader("attachments", f"{prefix} the filename contains {problem}.")
    content_type = attachment.content_type or _guess_type(attachment.filename)
    match = _MIME_TYPE.fullmatch(content_type)
    if match is None:
        msg = f"{prefix} {content_type!r} is not a content type like `image/png`."
        raise InvalidHeader("attachments", msg)
    maintype, subtype = match.group(1).lower(), match.group(2).lower()
    if maintype in ("multipart", "message"):
        msg = f"{prefix} the content type `{content_type}` cannot be sent as an attachment."
        raise InvalidHeader("attachments", msg)
    content_id = attachment.content_id
    if content_id is not None:
        content_id = content_id.removeprefix("<").removesuffix(">")
        if not _CONTENT_ID.fullmatch(content_id):
            msg = f"{prefix} {attachment.content_id!r} is not a usable content id."
            raise InvalidHeader("attachments", msg)
    part = MIMEPart(policy=_PART_POLICY)
    part.set_content(
        attachment.content,
        maintype,
        subtype,
        cte="base64",
        disposition="inline" if inline else "attachment",
        filename=attachment.filename or None,  # RFC 2231-encoded by the policy when non-ASCII
        cid=None if content_id is None else f"<{content_id}>",  # RFC 2392
    )
    return part


def _multipart(subtype: str, parts: list[MIMEPart], **params: str) -> MIMEPart:
    container = MIMEPart(policy=_PART_POLICY)
    container["Content-Type"] = f"multipart/{subtype}"
    for name, value in params.items():
        container.set_param(name, value)
    for part in parts:
        container.attach(part)
    return container


def _body(spec: MessageSpec) -> MIMEPart:
    """The MIME tree: mixed( related( alternative( plain, html ), inline… ), files… ),
    each level present only when needed (RFC 2046 section 5.1, RFC 2387)."""
    if spec.html is None:
        content = _text_part(spec.text or "", "plain")
    elif spec.text == "":
        content = _text_part(spec.html, "html")  # Resend: `text: ""` opts out of a text part
    else:
        text = html_to_text(spec.html) if spec.text is None else spec.text
        # RFC 2046 section 5.1.4: the plainest alternative first, the preferred one last.
        content = _multipart(
            "alternative", [_text_part(text, "plain"), _text_part(spec.html, "html")]
        )
    inline: list[MIMEPart] = []
    files: list[MIMEPart] = []
    for index, attachment in enumerate(spec.attachments):
        # An inline part only makes sense next to the HTML that refers to it.
        is_inline = attachment.content_id is not None and spec.html is not None
        part = _attachment_part(index, attachment, inline=is_inline)
        (inline if is_inline else files).append(part)
    if inline:
        content = _multipart("related", [content, *inline], type=content.get_content_type())
    if files:
        content = _multipart("mixed", [content, *files])
    return content


def _set_boundaries(root: MIMEPart, message_id: str) -> None:
    """Boundaries derived from the Message-ID (``mime_text.boundary_for``)."""
    bodies = [
        str(part.get_payload()).encode("utf-8", "surrogateescape")
        for part in root.walk()
        if not part.is_multipart()
    ]
    containers = [part for part in root.walk() if part.is_multipart()]
    for position, container in enumerate(containers):
        container.set_boundary(boundary_for(message_id, position, bodies))


def _text_only_body(spec: MessageSpec) -> bytes:
    """What ``_body`` and the stdlib generator give for a message without attachments,
    written directly (``mime_text``)."""
    if spec.html is None:
        return single(text_part(spec.text or "", "plain"))
    if spec.text == "":
        return single(text_part(spec.html, "html"))
    text = html_to_text(spec.html) if spec.text is None else spec.text
    return alternative([text_part(text, "plain"), text_part(spec.html, "html")], spec.message_id)


def build_body_with_stdlib(spec: MessageSpec) -> bytes:
    """The MIME body (entity headers and content) through ``email.message``: the path for
    attachments and inline images, and the reference the direct writer is tested against."""
    root = _body(spec)
    _set_boundaries(root, spec.message_id)
    return root.as_bytes(policy=_PART_POLICY)


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
