"""What a transaction writes, apart from the session (pure): the envelope, the commands that
carry it, and the message as it goes after DATA or as a BDAT chunk."""

from __future__ import annotations

import re
from dataclasses import dataclass

from postyard.delivery.pool import PooledSession

_BARE_LINE_END = re.compile(rb"\r\n|\r|\n")
# Controls (CR, LF, NUL above all: command injection) and the brackets that delimit a path.
_FORBIDDEN_IN_ADDRESS = re.compile(r"[\x00-\x1f\x7f<>]")
END_OF_DATA = b".\r\n"


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message for one SMTP transaction: the reverse path, the recipients, the bytes.

    ``data`` is sent as is (lines should end in CRLF; dot-stuffing is done on the wire).
    ``smtputf8`` says the addresses or headers need RFC 6531. Raises ValueError for an
    envelope no server could take: no recipients, control characters (CR, LF, NUL, any
    other C0 or DEL) or angle brackets in an address, or non-ASCII addresses without ``smtputf8``.
    """

    mail_from: str
    recipients: tuple[str, ...]
    data: bytes
    smtputf8: bool = False

    def __post_init__(self) -> None:
        if not self.recipients:
            raise ValueError("an envelope needs at least one recipient")
        for address in (self.mail_from, *self.recipients):
            if _FORBIDDEN_IN_ADDRESS.search(address):
                raise ValueError(f"address {address!r} contains forbidden characters")
            if not self.smtputf8 and not address.isascii():
                raise ValueError(f"address {address!r} needs SMTPUTF8")


def _crlf(data: bytes) -> bytes:
    """Line endings made CRLF (only when some are not: a signed message already is, and must
    not change) and a final CRLF."""
    crlf = data.count(b"\r\n")
    if crlf != data.count(b"\r") or crlf != data.count(b"\n"):
        data = _BARE_LINE_END.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def wire_data(data: bytes) -> bytes:
    """``data`` as it goes after DATA (pure): CRLF line endings and a final CRLF (``_crlf``),
    dot-stuffing (RFC 5321 section 4.5.2) and the terminating ``.`` line."""
    stuffed = _crlf(data).replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + END_OF_DATA


def wire_chunk(data: bytes) -> bytes:
    """``data`` as one last BDAT chunk (RFC 3030, pure): the command with the exact size,
    then the message with CRLF line endings as is: no dot-stuffing, no end-of-data line."""
    body = _crlf(data)
    return b"BDAT %d LAST\r\n" % len(body) + body


def envelope_commands(session: PooledSession, envelope: Envelope) -> list[bytes] | None:
    """MAIL FROM (with the options this server takes: SMTPUTF8, BODY=8BITMIME, SIZE) and one
    RCPT TO per recipient, as written on ``session``; None when the envelope needs SMTPUTF8
    and the server does not offer it."""
    smtp = session.smtp
    options: list[str] = []
    if envelope.smtputf8:
        if not smtp.supports_extension("smtputf8"):
            return None
        options.append("SMTPUTF8")
    if not envelope.data.isascii() and smtp.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")  # RFC 6152
    if smtp.supports_extension("size"):
        options.append(f"SIZE={len(envelope.data)}")  # RFC 1870: lets the server refuse early
    encoding = "utf-8" if envelope.smtputf8 else "ascii"
    mail = f"MAIL FROM:<{envelope.mail_from}>{''.join(' ' + o for o in options)}\r\n"
    return [
        mail.encode(encoding),
        *(f"RCPT TO:<{rcpt}>\r\n".encode(encoding) for rcpt in envelope.recipients),
    ]
