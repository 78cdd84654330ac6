"""The text of a submitted message read without the stdlib parser (single text parts) gives
what the stdlib parser gives, and everything else still goes through the stdlib."""

from __future__ import annotations

import base64
import email.policy
import itertools

import pytest

from postyard.smtp.message import SmtpEnvelope, parse_submission, text_parts_with_stdlib
from tests.smtp.test_message import ID, NOW

CONTENT_TYPES = [
    None,
    "text/plain",
    "text/html",
    "TEXT/HTML",
    "text/plain; charset=utf-8",
    'text/plain; charset="UTF-8"',
    "text/html;charset=iso-8859-1",
    "text/plain; Charset=us-ascii",
    "text/plain; charset=x-unknown",
    "text/plain; charset=utf-8; format=flowed",  # the stdlib path
    "text/plain; charset = utf-8",  # the stdlib path
    "text/plain (a comment)",  # the stdlib path
    "text/enriched",  # the stdlib path: not a text part we show
    "application/octet-stream",  # the stdlib path
]
ENCODINGS = [None, "7bit", "8bit", "BINARY", "quoted-printable", "Base64", "x-uuencode"]
BODIES = [
    b"",
    b"hello\r\n",
    b"two\r\nlines\r\nwith CRLF\r\n",
    "Grüße aus Köln\r\n".encode(),
    "Grüße latin-1\r\n".encode("latin-1"),
    b"soft=\r\nbreak and =C3=A9 and =XY bad escape\r\n",
    base64.encodebytes("<p>hé</p>\r\n".encode()).replace(b"\n", b"\r\n"),
    b"PHA+aMOpPC9wPg\r\n",  # base64 without its padding: the stdlib's lenient decoder
    b"not base64 at all !!\r\n",
    b"\xff\xfe bytes that are not UTF-8\r\n",
]


def _message(content_type: str | None, cte: str | None, body: bytes, extra: bytes = b"") -> bytes:
    head = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: s\r\n" + extra
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n".encode()
    if cte is not None:
        head += f"Content-Transfer-Encoding: {cte}\r\n".encode()
    return head + b"\r\n" + body


def _both(data: bytes) -> tuple[tuple[str | None, str | None], tuple[str | None, str | None]]:
    envelope = SmtpEnvelope("a@example.com", ("b@example.org",), smtputf8=False)
    message = parse_submission(data, envelope, message_id=ID, now=NOW).message
    policy = email.policy.SMTPUTF8 if not data.isascii() else email.policy.SMTP
    return (message.html, message.text), text_parts_with_stdlib(message.raw, policy)


@pytest.mark.parametrize(
    ("content_type", "cte", "body"), list(itertools.product(CONTENT_TYPES, ENCODINGS, BODIES))
)
def test_single_parts_read_as_the_stdlib_reads_them(
    content_type: str | None, cte: str | None, body: bytes
) -> None:
    fast, stdlib = _both(_message(content_type, cte, body))
    assert fast == stdlib


@pytest.mark.parametrize(
    "extra",
    [
        b"Content-Disposition: attachment\r\n",
        b"Content-Type: text/html\r\n",  # a second Content-Type
        b"Content-ID: <x@y>\r\n",
        b"MIME-Version: 1.0\r\n",
    ],
)
def test_other_content_fields(extra: bytes) -> None:
    fast, stdlib = _both(_message("text/plain", None, b"body\r\n", extra))
    assert fast == stdlib


def test_a_multipart_message_still_goes_through_the_stdlib() -> None:
    data = (
        b"From: a@example.com\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
        b"--b\r\nContent-Type: text/html\r\n\r\n<p>rich</p>\r\n"
        b"--b--\r\n"
    )
    fast, stdlib = _both(data)
    assert fast == stdlib == ("<p>rich</p>", "plain")


def test_the_common_shapes_are_read() -> None:
    assert _both(_message(None, None, b"hi\r\n"))[0] == (None, "hi\n")
    html = _message("text/html; charset=utf-8", "quoted-printable", b"<p>h=C3=A9</p>\r\n")
    assert _both(html)[0] == ("<p>hé</p>\n", None)
