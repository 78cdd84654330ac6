"""Reading the bytes after DATA in pieces rather than line by line.

aiosmtpd reads DATA one line at a time (a StreamReader call, a debug log call and list work
per line): a fifth of the relay's CPU for a 5 KB message. This reader asks the stream for
everything up to the next ``.<CRLF>`` (or as much as its limit allows) and decides from the
two bytes before it whether that dot starts a line, so the end of data is exactly what
aiosmtpd recognises: a line that is ``.<CRLF>`` after a CRLF (or at the very start). A bare
LF or CR never ends the data (SMTP smuggling); the handler refuses such data anyway.
Dot-unstuffing, the size limit (552) and the line-length limit (500) behave as aiosmtpd's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

_END = b".\r\n"
_CRLF = b"\r\n"
TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"
TOO_MUCH = "552 Error: Too much mail data"


@dataclass(frozen=True, slots=True)
class DataRead:
    """The message (dot-unstuffed), or the reply that refuses it after it was read."""

    content: bytes
    refusal: str | None = None


async def read_data(
    reader: asyncio.StreamReader, *, size_limit: int | None, line_limit: int
) -> DataRead:
    """Read until the end-of-data line. ``size_limit`` counts the bytes before it (as sent,
    dot-stuffing included); ``line_limit`` is the longest line allowed, CRLF included.
    Past the size limit the rest is read and dropped (RFC 5321 section 4.2.5: the reply
    comes after the data)."""
    pieces: list[bytes] = []
    size = 0
    too_much = False
    tail = _CRLF  # the data starts at the beginning of a line
    while True:
        try:
            piece = await reader.readuntil(_END)
        except asyncio.LimitOverrunError as exc:
            # No ".<CRLF>" within the stream's limit: take what cannot hold a part of one.
            piece = await reader.read(exc.consumed)
        else:
            before = (tail + piece[:-3])[-2:]
            if before == _CRLF:
                piece = piece[:-3]  # the end-of-data line is not part of the message
                size += len(piece)
                if not too_much:
                    pieces.append(piece)
                break
        if not piece:
            raise ConnectionResetError("the client closed the connection during DATA")
        size += len(piece)
        if size_limit and size > size_limit:
            too_much = True
            pieces.clear()  # keep reading, but keep nothing
        elif not too_much:
            pieces.append(piece)
        tail = (tail + piece)[-2:]
    if too_much or (size_limit and size > size_limit):
        return DataRead(b"", TOO_MUCH)
    data = b"".join(pieces)
    if max(map(len, data.split(_CRLF))) + len(_CRLF) > line_limit:
        return DataRead(b"", TOO_LONG)
    # RFC 5321 section 4.5.2: a line that starts with a dot loses that dot.
    if b"\r\n." in data or data.startswith(b"."):
        data = (_CRLF + data).replace(b"\r\n.", _CRLF)[2:]
    return DataRead(data)
