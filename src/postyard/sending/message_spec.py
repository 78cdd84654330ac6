"""What a message is built from (pure values), shared by the header writer (``mime``) and
the MIME body writers (``mime_text``, ``mime_parts``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from postyard.sending.addresses import Address


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
