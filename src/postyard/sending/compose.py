"""From a validated request to a message ready for the ledger: addresses, headers, tags,
attachments and schedule checked, MIME built. Pure (the clock and ids come in)."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from postyard.core.errors import ValidationFailed
from postyard.core.ids import uuid7
from postyard.sending.addresses import (
    Address,
    InvalidAddress,
    parse_address,
    parse_address_list,
)
from postyard.sending.errors import InvalidAttachment, InvalidFromAddress, MissingRequiredField
from postyard.sending.mime import (
    Attachment,
    InvalidHeader,
    MessageSpec,
    build_message,
    needs_smtputf8,
)
from postyard.sending.scheduling import parse_scheduled_at
from postyard.sending.schemas import AttachmentIn, SendEmailRequest
from postyard.sending.tags import Tag, validate_tags
from postyard.tracking.types import Stream

MAX_RECIPIENTS = 50
# A sender who writes either of these manages unsubscribing itself: Postyard adds neither.
_LIST_UNSUBSCRIBE_FIELDS = frozenset({"list-unsubscribe", "list-unsubscribe-post"})
MAX_CONTENT_BYTES = 40 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    domain: str
    kind: str
    id: uuid.UUID = field(default_factory=uuid7)
    """The id of the recipient's delivery row (known before it is written: tracking tokens
    name it)."""


@dataclass(frozen=True, slots=True)
class TrackingOptions:
    """The per-email choices (None: the domain's or the stream's default)."""

    open_tracking: bool | None = None
    click_tracking: bool | None = None
    list_unsubscribe: bool | None = None


NO_OPTIONS = TrackingOptions()


@dataclass(frozen=True, slots=True)
class ComposedMessage:
    """A message ready for the ledger, whichever door it came in by (API or SMTP)."""

    id: uuid.UUID
    sender: str
    envelope_from: str
    subject: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    bcc: tuple[str, ...]
    reply_to: tuple[str, ...]
    html: str | None
    text: str | None
    tags: tuple[Tag, ...]
    message_id_header: str
    raw: bytes
    smtputf8: bool
    scheduled_at: datetime | None
    recipients: tuple[Recipient, ...]
    from_domain: str = ""
    """ASCII domain of the header From (DKIM's d=, the verified-domain rule); defaults to the
    envelope sender's domain."""
    stream: Stream = Stream.TRANSACTIONAL
    tracking: TrackingOptions = NO_OPTIONS
    has_list_unsubscribe: bool = False
    """The sender set List-Unsubscribe itself: Postyard adds none."""
    spec: MessageSpec | None = None
    """What ``raw`` was built from (API messages), so tracking can rebuild it; None for
    SMTP submissions, whose bytes are kept as sent."""

    @property
    def sender_domain(self) -> str:
        return (self.from_domain or self.envelope_from.rpartition("@")[2]).lower()


def _addresses(value: str | list[str] | None, field: str) -> tuple[Address, ...]:
    try:
        return tuple(parse_address_list(value, field=field))
    except InvalidAddress as exc:
        raise ValidationFailed(exc.message) from None


def _decode_attachment(index: int, item: AttachmentIn) -> Attachment:
    if item.path is not None:
        msg = (
            f"Invalid `attachments[{index}]`: `path` (a remote URL) is not supported; "
            "send the file as base64 `content`."
        )
        raise InvalidAttachment(msg)
    if item.content is None:
        msg = f"Invalid `attachments[{index}]`: an attachment must have `content`."
        raise InvalidAttachment(msg)
    if not item.filename:
        msg = f"Invalid `attachments[{index}]`: `filename` is required."
        raise InvalidAttachment(msg)
    if isinstance(item.content, list):
        if any(not 0 <= b <= 255 for b in item.content):
            msg = f"Invalid `attachments[{index}].content`: bytes must be 0-255."
            raise InvalidAttachment(msg)
        content = bytes(item.content)
    else:
        try:
            content = base64.b64decode(item.content, validate=True)
        except (binascii.Error, ValueError):
            msg = f"Invalid `attachments[{index}].content`: not valid base64."
            raise InvalidAttachment(msg) from None
    return Attachment(
        filename=item.filename,
        content=content,
        content_type=item.content_type,
        content_id=item.content_id or item.inline_content_id,
    )


def _recipients(*groups: tuple[str, tuple[Address, ...]]) -> tuple[Recipient, ...]:
    seen: dict[str, Recipient] = {}
    for kind, addresses in groups:
        for address in addresses:
            addr_spec = address.addr_spec
            key = addr_spec.lower()
            if key not in seen:
                seen[key] = Recipient(addr_spec, address.domain.lower(), kind)
    return tuple(seen.values())


def _utf8_size(name: str, value: str | None) -> int:
    """The length of ``value`` (a body) in UTF-8; ValidationFailed naming the field for an
    unpaired surrogate, which no UTF-8 holds (the MIME would carry U+FFFD, the stored body
    could not be written)."""
    if value is None:
        return 0
    try:
        return len(value.encode())
    except UnicodeEncodeError:
        msg = f"The `{name}` field must not contain unpaired surrogates (such as \\ud800)."
        raise ValidationFailed(msg) from None


def _tracking_options(request: SendEmailRequest) -> TrackingOptions:
    """The request's choices; the (common) request without any shares ``NO_OPTIONS``."""
    choices = (request.open_tracking, request.click_tracking, request.list_unsubscribe)
    if choices == (None, None, None):
        return NO_OPTIONS
    return TrackingOptions(*choices)


def compose_message(
    request: SendEmailRequest, *, message_id: uuid.UUID, now: datetime
) -> ComposedMessage:
    """Validate and build; raises ValidationFailed (or a subclass with Resend's name) naming
    the field at fault."""
    try:
        sender = parse_address(request.from_, field="from")
    except InvalidAddress as exc:
        raise InvalidFromAddress(exc.message) from None
    to = _addresses(request.to, "to")
    if not to:
        raise MissingRequiredField("The `to` field is required.")
    cc = _addresses(request.cc, "cc")
    bcc = _addresses(request.bcc, "bcc")
    reply_to = _addresses(request.reply_to, "reply_to")
    recipients = _recipients(("to", to), ("cc", cc), ("bcc", bcc))
    if len(to) + len(cc) + len(bcc) > MAX_RECIPIENTS:
        msg = f"Too many recipients: at most {MAX_RECIPIENTS} in `to`, `cc` and `bcc` together."
        raise ValidationFailed(msg)
    if request.html is None and request.text is None:
        raise MissingRequiredField("Either the `html` or the `text` field is required.")
    texts = (("subject", request.subject), ("html", request.html), ("text", request.text))
    for name, value in texts:
        if value is not None and "\x00" in value:
            msg = f"The `{name}` field must not contain NUL characters (U+0000)."
            raise ValidationFailed(msg)
    attachments = tuple(
        _decode_attachment(i, item) for i, item in enumerate(request.attachments or [])
    )
    size = sum(len(a.content) for a in attachments)
    for name, value in texts[1:]:
        size += _utf8_size(name, value)
    if size > MAX_CONTENT_BYTES:
        msg = "The email is too large: at most 40 MB of content and attachments (decoded)."
        raise ValidationFailed(msg)
    tags = validate_tags([(t.name, t.value) for t in request.tags or []])
    scheduled_at = (
        parse_scheduled_at(request.scheduled_at, now=now) if request.scheduled_at else None
    )
    spec = MessageSpec(
        sender=sender,
        to=to,
        cc=cc,
        bcc=bcc,
        reply_to=reply_to,
        subject=request.subject,
        html=request.html,
        text=request.text,
        headers=tuple((request.headers or {}).items()),
        attachments=attachments,
        message_id=f"<{message_id}@{sender.domain}>",
        date=scheduled_at or now,
    )
    try:
        raw = build_message(spec)
    except InvalidHeader as exc:
        raise ValidationFailed(exc.message) from None
    return ComposedMessage(
        id=message_id,
        sender=sender.header_value(),
        envelope_from=sender.addr_spec,
        subject=request.subject,
        to=tuple(a.addr_spec for a in to),
        cc=tuple(a.addr_spec for a in cc),
        bcc=tuple(a.addr_spec for a in bcc),
        reply_to=tuple(a.addr_spec for a in reply_to),
        html=request.html,
        text=request.text,
        tags=tags,
        message_id_header=spec.message_id,
        raw=raw,
        smtputf8=needs_smtputf8(spec),
        scheduled_at=scheduled_at,
        recipients=recipients,
        from_domain=sender.domain.lower(),
        stream=Stream(request.stream or Stream.TRANSACTIONAL),
        tracking=_tracking_options(request),
        has_list_unsubscribe=any(
            name.strip().lower() in _LIST_UNSUBSCRIBE_FIELDS for name in (request.headers or {})
        ),
        spec=spec,
    )
