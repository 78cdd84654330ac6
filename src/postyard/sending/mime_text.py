"""MIME bodies of messages without attachments, written directly (pure).

The common message is one text part, one HTML part, or both as multipart/alternative. For
those, ``email.message`` costs most of the time the API spends on a send (header objects
parsed and re-rendered for every part), so they are written here as bytes, with the same
encoding decisions as the stdlib path in ``mime.py`` and byte for byte the same output:
``tests/sending/test_mime_text.py`` builds a corpus of messages both ways and compares them,
and parses the result back with the stdlib parser. Messages with attachments or inline
images keep the stdlib path.
"""

from __future__ import annotations

import hashlib
from email import quoprimime

from postyard.core.text import well_formed

_FOLD_AT = 78  # RFC 5322 section 2.1.1
_QP_LINE = 76  # RFC 2045 section 6.7
# What 7bit text may hold as we send it: TAB, LF, CR and printable ASCII.
_SEVEN_BIT_BYTES = bytes([9, 10, 13, *range(32, 127)])


def is_seven_bit(content: str) -> bool:
    """RFC 2045 section 2.7 allows 7bit for ASCII without NUL in lines of up to 998 octets;
    we keep it to lines of 78, which no relay re-wraps, and use quoted-printable otherwise."""
    encoded = content.encode("utf-8", "surrogatepass")
    return _seven_bit(encoded, encoded.splitlines())


def _seven_bit(encoded: bytes, lines: list[bytes]) -> bool:
    """``is_seven_bit`` of text already encoded and split. For text of only the bytes of
    ``_SEVEN_BIT_BYTES`` the lines of ``bytes.splitlines`` are those of ``str.splitlines``
    (the other line breaks that ``str`` knows are excluded). Written with C loops:
    ``translate`` deletes the allowed bytes, anything left is a control character."""
    if not encoded.isascii() or encoded.translate(None, _SEVEN_BIT_BYTES):
        return False
    return max(map(len, lines), default=0) <= _FOLD_AT


def text_part(content: str, subtype: str) -> tuple[bytes, bytes]:
    """The part's header block and its encoded body (CRLF line ends, ending in CRLF), for a
    ``text/<subtype>`` part in UTF-8."""
    utf8 = well_formed(content).encode("utf-8")
    lines = utf8.splitlines()
    if _seven_bit(utf8, lines):
        cte, body = "7bit", b"\r\n".join(lines) + b"\r\n"
    else:
        # RFC 2045 section 6.7; the stdlib encoder, fed what its content manager feeds it.
        encoded = quoprimime.body_encode((b"\n".join(lines) + b"\n").decode("latin-1"), _QP_LINE)
        cte, body = "quoted-printable", encoded.replace("\n", "\r\n").encode("ascii")
    head = (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n'
    ).encode("ascii")
    return head, body


def boundary_for(message_id: str, position: int, bodies: list[bytes]) -> str:
    """A boundary derived from the Message-ID, so the same message gives the same bytes; a
    candidate that occurs in any encoded body is skipped (RFC 2046 section 5.1.1)."""
    attempt = 0
    while True:
        seed = f"{message_id}\x00{position}\x00{attempt}".encode()
        # "=_" cannot occur in quoted-printable or base64 text.
        boundary = "=_" + hashlib.sha256(seed).hexdigest()[:40]
        marker = boundary.encode("ascii")
        if not any(marker in body for body in bodies):
            return boundary
        attempt += 1


def alternative(parts: list[tuple[bytes, bytes]], message_id: str) -> bytes:
    """multipart/alternative of ``parts`` (header block, body), plainest first (RFC 2046
    section 5.1.4), with its own Content-Type header."""
    boundary = boundary_for(message_id, 0, [body for _, body in parts])
    delimiter = f"--{boundary}\r\n".encode("ascii")
    out = [
        f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n'.encode("ascii")
    ]
    for head, body in parts:
        out += [delimiter, head, b"\r\n", body, b"\r\n"]
    out.append(f"--{boundary}--\r\n".encode("ascii"))
    return b"".join(out)


def single(part: tuple[bytes, bytes]) -> bytes:
    head, body = part
    return head + b"\r\n" + body
