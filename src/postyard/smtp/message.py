"""A submitted message (the bytes after DATA) checked and turned into the ledger's neutral
shape, ``ComposedMessage``. Pure: the id and the time come in.

The client's bytes are kept as they are, except that the ``Bcc``,
``Resend-Idempotency-Key`` and ``X-Postyard-Stream`` fields are removed and ``Message-ID``
and ``Date`` are added on top when absent. The header block is read here, line by line,
because it must be kept byte for byte and checked more strictly than the stdlib parser does
(it repairs what we refuse); the stdlib only decodes values (RFC 2047 words, address lists)
and finds the text parts (kept for the GET API) unless the message is a single plain text
part, which is read directly.
"""

from __future__ import annotations

import binascii
import email.errors
import email.policy
import hashlib
import quopri
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import AddressHeader
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime

from postyard.sending import idempotency
from postyard.sending.addresses import Address, InvalidAddress, header_text_problem, parse_address
from postyard.sending.compose import ComposedMessage, Recipient
from postyard.sending.errors import InvalidIdempotencyKey
from postyard.smtp.simple import PLAIN_SUBJECT, simple_address_list
from postyard.tracking.types import Stream

IDEMPOTENCY_HEADER = "resend-idempotency-key"
STREAM_HEADER = "x-postyard-stream"
"""``X-Postyard-Stream: transactional | bulk`` picks the message's stream; stripped."""
_FIELD_NAME = re.compile(rb"[!-9;-~]+")  # RFC 5322 section 3.6.8 ftext
# RFC 5322 section 3.6: fields that may appear at most once.
_AT_MOST_ONCE = frozenset(
    {
        "from", "sender", "reply-to", "to", "cc", "subject", "date", "message-id",
        "in-reply-to", "references", IDEMPOTENCY_HEADER, STREAM_HEADER,
    }
)  # fmt: skip
_REMOVED = frozenset({"bcc", IDEMPOTENCY_HEADER, STREAM_HEADER})
_MESSAGE_ID = re.compile(r"<[^<>@\s]{1,200}@[^<>@\s]{1,253}>")
# A Content-Type the stdlib would read as exactly this type and charset, and nothing more.
_SIMPLE_TEXT_TYPE = re.compile(
    r'text/(plain|html)(?:[ \t]*;[ \t]*charset=(?:([A-Za-z0-9_-]{1,40})|"([A-Za-z0-9_-]{1,40})"))?',
    re.IGNORECASE,
)
_SIMPLE_CTE = frozenset({"", "7bit", "8bit", "binary", "quoted-printable", "base64"})
# What the stdlib header parser raises on malformed input, bugs included (fuzzing found
# AttributeError and TypeError in address lists): all of it means "not a valid header".
_PARSE_ERRORS = (
    email.errors.HeaderParseError,
    ValueError,
    IndexError,
    AttributeError,
    TypeError,
)


class InvalidSubmission(ValueError):
    """A message that must be refused; ``reason`` says why in words fit for an SMTP reply."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SmtpEnvelope:
    """MAIL FROM and RCPT TO as accepted (valid addr-specs, ASCII domains)."""

    mail_from: str
    recipients: tuple[str, ...]
    smtputf8: bool


@dataclass(frozen=True, slots=True)
class Submission:
    message: ComposedMessage
    idempotency_key: str | None
    request_hash: bytes
    """What a replay under the same key must match: the envelope and the submitted bytes
    (empty without a key: nothing will compare it)."""


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    raw: bytes
    value: str

    @property
    def lower(self) -> str:
        return self.name.lower()


def has_bare_line_ending(data: bytes) -> bool:
    """True when ``data`` holds a CR not followed by LF or an LF not preceded by CR.

    Only CRLF ends a line (RFC 5321 section 2.3.8); a receiver that reads a lone CR or LF as
    one is what SMTP smuggling exploits, so such data is refused outright.
    """
    crlf = data.count(b"\r\n")
    return data.count(b"\n") != crlf or data.count(b"\r") != crlf


def _split_fields(head: bytes) -> list[_Field]:
    fields: list[tuple[bytes, list[bytes]]] = []
    for line in head.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise InvalidSubmission("The message starts with a folded header line.")
            fields[-1][1].append(line)
            continue
        name, colon, _ = line.partition(b":")
        if not colon or not _FIELD_NAME.fullmatch(name):
            raise InvalidSubmission("A header line is not `name: value` (RFC 5322 section 2.2).")
        fields.append((name, [line]))
    parsed = []
    for name, lines in fields:
        # Unfolding removes each CRLF that comes before whitespace (RFC 5322 section 2.2.3).
        unfolded = b"".join(lines)[len(name) + 1 :]
        try:
            value = unfolded.decode("utf-8").strip(" \t")
        except UnicodeDecodeError:
            raise InvalidSubmission(f"The {name.decode()} header is not valid UTF-8.") from None
        problem = header_text_problem(value, allow_tab=True)
        if problem is not None:
            raise InvalidSubmission(f"The {name.decode()} header contains {problem}.")
        raw = b"\r\n".join(lines) + b"\r\n"
        parsed.append(_Field(name.decode(), raw, value))
    return parsed


def _address_header(name: str, value: str) -> AddressHeader:
    try:
        header = email.policy.default.header_factory(name, value)
    except _PARSE_ERRORS:
        raise InvalidSubmission(f"The {name} header is not a valid address list.") from None
    assert isinstance(header, AddressHeader)
    return header


def _mailboxes(name: str, header: AddressHeader) -> list[Address]:
    found = []
    for item in header.addresses:
        try:
            valid = parse_address(item.addr_spec, field=name)
            found.append(Address(item.display_name or "", valid.local, valid.domain))
        except (InvalidAddress, ValueError):
            raise InvalidSubmission(f"The {name} header holds an invalid address.") from None
    return found


def _simple_mailboxes(name: str, items: list[tuple[str, str]]) -> list[Address]:
    found = []
    for display_name, addr_spec in items:
        try:
            valid = parse_address(addr_spec, field=name)
            found.append(Address(display_name, valid.local, valid.domain))
        except (InvalidAddress, ValueError):
            raise InvalidSubmission(f"The {name} header holds an invalid address.") from None
    return found


def _address_list(field: _Field | None) -> list[Address]:
    if field is None:
        return []
    simple = simple_address_list(field.value)
    if simple is not None:
        return _simple_mailboxes(field.name, simple)
    return _mailboxes(field.name, _address_header(field.name, field.value))


def _sender(value: str) -> Address:
    simple = simple_address_list(value)
    if simple is not None and len(simple) == 1:
        return _simple_mailboxes("From", simple)[0]
    header = _address_header("From", value)
    # One mailbox, not a group (RFC 5322 allows a list with a Sender field; we do not).
    if len(header.groups) != 1 or header.groups[0].display_name is not None:
        raise InvalidSubmission("The From header must hold exactly one mailbox.")
    mailboxes = _mailboxes("From", header)
    if len(mailboxes) != 1:
        raise InvalidSubmission("The From header must hold exactly one mailbox.")
    return mailboxes[0]


def _decoded_subject(value: str) -> str:
    """The Subject with its RFC 2047 words decoded, or as sent when they do not decode."""
    if PLAIN_SUBJECT.fullmatch(value):
        return value  # nothing to decode (tests/smtp/test_simple_headers.py)
    try:
        return str(email.policy.default.header_factory("subject", value))
    except _PARSE_ERRORS:
        return value


def _single_text_part(fields: list[_Field], rest: bytes) -> tuple[str | None, str | None] | None:
    """``text_parts_with_stdlib``'s answer for the common message that is one text/plain or
    text/html part with a plain Content-Type and encoding, read from the fields already split;
    None when the message needs the stdlib parser (multipart, parameters beyond charset, a
    Content-Disposition, anything unusual). The answers agree: tests/smtp/test_text_parts.py."""
    content = [f for f in fields if f.lower.startswith("content-")]
    names = {f.lower for f in content}
    if len(names) != len(content) or not names <= {"content-type", "content-transfer-encoding"}:
        return None
    if not rest.startswith(b"\r\n"):
        return None
    by_name = {f.lower: f.value for f in content}
    match = _SIMPLE_TEXT_TYPE.fullmatch(by_name.get("content-type", "text/plain"))
    cte = by_name.get("content-transfer-encoding", "").lower()
    if match is None or cte not in _SIMPLE_CTE:
        return None
    body = rest[2:]
    if cte == "quoted-printable":
        body = quopri.decodestring(body)
    elif cte == "base64":
        try:
            body = binascii.a2b_base64(b"".join(body.splitlines()), strict_mode=True)
        except binascii.Error:
            return None  # the stdlib's lenient decoder decides what it means
    try:
        charset = match.group(2) or match.group(3) or "ascii"
        text = body.decode(charset, "replace").replace("\r\n", "\n")
    except LookupError:
        return None, None  # an unknown charset: the stdlib skips the part too
    return (text, None) if match.group(1).lower() == "html" else (None, text)


def text_parts_with_stdlib(
    raw: bytes, policy: email.policy.EmailPolicy[EmailMessage]
) -> tuple[str | None, str | None]:
    """The first text/html and text/plain parts that are not attachments, with LF line
    ends (best effort: a part that cannot be decoded is skipped)."""
    found: dict[str, str] = {}
    try:
        parts = list(BytesParser(policy=policy).parsebytes(raw).walk())
    except (LookupError, ValueError, UnicodeError, email.errors.MessageError):
        return None, None
    for part in parts:
        kind = part.get_content_type()
        if kind not in {"text/html", "text/plain"} or kind in found:
            continue
        if part.get_content_disposition() == "attachment":
            continue
        try:
            content = part.get_content()
        except (LookupError, ValueError, UnicodeError, email.errors.MessageError):
            continue  # the GET API shows what could be read; delivery uses the raw bytes
        if isinstance(content, str):
            found[kind] = content.replace("\r\n", "\n")
    return found.get("text/html"), found.get("text/plain")


def _request_hash(envelope: SmtpEnvelope, data: bytes) -> bytes:
    return idempotency.fingerprint(
        "SMTP DATA",
        {
            "mail_from": envelope.mail_from,
            "rcpt_to": list(envelope.recipients),
            "data_sha256": hashlib.sha256(data).hexdigest(),
        },
    )


def _idempotency_key(fields: dict[str, _Field]) -> str | None:
    field = fields.get(IDEMPOTENCY_HEADER)
    if field is None:
        return None
    try:
        return idempotency.validate_key(field.value)
    except InvalidIdempotencyKey:
        msg = "The Resend-Idempotency-Key header must be 1 to 256 printable ASCII characters."
        raise InvalidSubmission(msg) from None


def _stream(fields: dict[str, _Field]) -> Stream:
    field = fields.get(STREAM_HEADER)
    if field is None:
        return Stream.TRANSACTIONAL
    try:
        return Stream(field.value.strip().lower())
    except ValueError:
        raise InvalidSubmission(
            "The X-Postyard-Stream header must be transactional or bulk."
        ) from None


def _recipients(envelope: SmtpEnvelope, to: list[Address], cc: list[Address]) -> list[Recipient]:
    to_set = {a.addr_spec.lower() for a in to}
    cc_set = {a.addr_spec.lower() for a in cc}
    found: dict[str, Recipient] = {}
    for address in envelope.recipients:
        key = address.lower()
        kind = "to" if key in to_set else "cc" if key in cc_set else "bcc"
        domain = address.rpartition("@")[2].lower()
        found.setdefault(key, Recipient(address, domain, kind))
    return list(found.values())


def parse_submission(
    data: bytes, envelope: SmtpEnvelope, *, message_id: uuid.UUID, now: datetime
) -> Submission:
    """Check a submitted message and build what the ledger stores.

    ``data`` is the DATA content with dot-stuffing undone. Guarantees: every header line
    is ``name: value`` (ftext names), values are UTF-8 without control characters (also
    inside RFC 2047 words), From holds one valid mailbox, To/Cc/Reply-To hold valid
    addresses, single-instance fields appear once, Bcc is gone from the stored bytes,
    RCPT addresses missing from To and Cc become ``bcc`` recipients. Raises
    InvalidSubmission, naming the problem, for anything else.
    """
    if has_bare_line_ending(data):
        raise InvalidSubmission("Bare CR or LF in the message; lines must end with CRLF.")
    if data and not data.endswith(b"\r\n"):
        raise InvalidSubmission("The message does not end with CRLF.")
    end = data.find(b"\r\n\r\n")
    head, rest = (data[: end + 2], data[end + 2 :]) if end >= 0 else (data, b"")
    fields = _split_fields(head)
    single: dict[str, _Field] = {}
    for field in fields:
        if field.lower in _AT_MOST_ONCE:
            if field.lower in single:
                raise InvalidSubmission(f"The {field.name} header appears more than once.")
            single[field.lower] = field
    if "from" not in single:
        raise InvalidSubmission("The message has no From header.")
    sender = _sender(single["from"].value)
    lists = {name: _address_list(single.get(name)) for name in ("to", "cc", "reply-to")}
    key = _idempotency_key(single)
    stream = _stream(single)
    added = b""
    if "message-id" in single:
        message_id_header = single["message-id"].value
        if not _MESSAGE_ID.fullmatch(message_id_header):
            raise InvalidSubmission("The Message-ID header is not one <id@domain>.")
    else:
        message_id_header = f"<{message_id}@{sender.domain}>"
        added += f"Message-ID: {message_id_header}\r\n".encode()
    if "date" not in single:
        added += f"Date: {format_datetime(now)}\r\n".encode()
    raw = added + b"".join(f.raw for f in fields if f.lower not in _REMOVED) + rest
    subject = _decoded_subject(single["subject"].value) if "subject" in single else ""
    smtputf8 = envelope.smtputf8 or not head.isascii()
    policy = email.policy.SMTPUTF8 if smtputf8 else email.policy.SMTP
    parts = _single_text_part(fields, rest)
    html, text = parts if parts is not None else text_parts_with_stdlib(raw, policy)
    if any(value is not None and "\x00" in value for value in (subject, html, text)):
        # PostgreSQL's text cannot hold NUL: refused for good (a 451 would be retried forever).
        raise InvalidSubmission("The message text contains a NUL character (U+0000).")
    recipients = _recipients(envelope, lists["to"], lists["cc"])
    composed = ComposedMessage(
        id=message_id,
        sender=sender.header_value(),
        envelope_from=envelope.mail_from,
        subject=subject,
        to=tuple(a.addr_spec for a in lists["to"]),
        cc=tuple(a.addr_spec for a in lists["cc"]),
        bcc=tuple(r.address for r in recipients if r.kind == "bcc"),
        reply_to=tuple(a.addr_spec for a in lists["reply-to"]),
        html=html,
        text=text,
        tags=(),
        message_id_header=message_id_header,
        raw=raw,
        smtputf8=smtputf8,
        scheduled_at=None,
        recipients=tuple(recipients),
        from_domain=sender.domain.lower(),
        stream=stream,
        has_list_unsubscribe=any(
            f.lower in {"list-unsubscribe", "list-unsubscribe-post"} for f in fields
        ),
    )
    return Submission(composed, key, _request_hash(envelope, data) if key is not None else b"")
