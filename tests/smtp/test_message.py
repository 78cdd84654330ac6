"""Parsing a submitted message into the ledger's shape (pure, no server)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from postyard.smtp.message import (
    InvalidSubmission,
    SmtpEnvelope,
    Submission,
    has_bare_line_ending,
    parse_submission,
)

ID = uuid.UUID("01900000-0000-7000-8000-000000000001")
NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def parse(data: bytes, *rcpt: str, smtputf8: bool = False) -> Submission:
    envelope = SmtpEnvelope("bounce@example.com", rcpt or ("ann@example.org",), smtputf8)
    return parse_submission(data, envelope, message_id=ID, now=NOW)


def test_headers_are_kept_byte_for_byte_except_bcc_and_the_key() -> None:
    head = (
        b"From: App <app@example.com>\r\n"
        b"To: ann@example.org,\r\n\tbob@example.org\r\n"
        b"Bcc: hidden@example.org,\r\n  other@example.org\r\n"
        b"Subject: a folded\r\n subject\r\n"
        b"Resend-Idempotency-Key: k-1\r\n"
        b"X-Custom:no-space\r\n"
    )
    body = b"\r\nbody\r\n"
    submission = parse(head + body, "ann@example.org", "bob@example.org", "hidden@example.org")
    message = submission.message
    assert message.raw == (
        f"Message-ID: <{ID}@example.com>\r\n".encode()
        + b"Date: Wed, 04 Mar 2026 05:06:07 +0000\r\n"
        + b"From: App <app@example.com>\r\n"
        + b"To: ann@example.org,\r\n\tbob@example.org\r\n"
        + b"Subject: a folded\r\n subject\r\n"
        + b"X-Custom:no-space\r\n"
        + body
    )
    assert submission.idempotency_key == "k-1"
    assert message.subject == "a folded subject"
    assert message.to == ("ann@example.org", "bob@example.org")
    assert message.bcc == ("hidden@example.org",)
    assert [(r.address, r.kind) for r in message.recipients] == [
        ("ann@example.org", "to"),
        ("bob@example.org", "to"),
        ("hidden@example.org", "bcc"),
    ]
    assert message.envelope_from == "bounce@example.com"
    assert message.sender == "App <app@example.com>"
    assert message.message_id_header == f"<{ID}@example.com>"
    assert message.text == "body\n"
    assert message.html is None
    assert not message.smtputf8


def test_recipients_match_headers_case_insensitively_and_once() -> None:
    data = b"From: a@example.com\r\nTo: Ann@Example.org\r\nCc: carl@example.org\r\n\r\nx\r\n"
    message = parse(data, "ann@example.org", "CARL@example.org", "dee@example.org").message
    assert [(r.address, r.domain, r.kind) for r in message.recipients] == [
        ("ann@example.org", "example.org", "to"),
        ("CARL@example.org", "example.org", "cc"),
        ("dee@example.org", "example.org", "bcc"),
    ]


def test_a_message_without_visible_recipients() -> None:
    data = b"From: a@example.com\r\nTo: undisclosed-recipients:;\r\n\r\nx\r\n"
    message = parse(data, "ann@example.org").message
    assert message.to == ()
    assert [r.kind for r in message.recipients] == ["bcc"]


def test_utf8_headers_and_international_addresses() -> None:
    data = (
        "From: Jörg <jörg@bücher.example>\r\nTo: zoë@example.org\r\nSubject: Grüße\r\n\r\nx\r\n"
    ).encode()
    message = parse(data, "zoë@example.org", smtputf8=True).message
    assert message.smtputf8
    assert message.subject == "Grüße"
    assert message.to == ("zoë@example.org",)
    assert message.sender.endswith("<jörg@xn--bcher-kva.example>")
    assert message.message_id_header == f"<{ID}@xn--bcher-kva.example>"


def test_text_parts_are_decoded_best_effort() -> None:
    data = (
        b"From: a@example.com\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain; charset=x-unknown\r\n\r\nodd\r\n"
        b"--b\r\nContent-Type: text/html; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nPHA+aMOpPC9wPg==\r\n"
        b"--b--\r\n"
    )
    message = parse(data).message
    assert message.html == "<p>hé</p>"
    assert message.text is None  # an unknown charset: the GET API shows nothing


def test_attachments_are_not_the_text() -> None:
    data = (
        b"From: a@example.com\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nfile\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nthe text\r\n"
        b"--b--\r\n"
    )
    assert parse(data).message.text == "the text"


def test_the_request_hash_covers_envelope_and_bytes() -> None:
    data = b"From: a@example.com\r\nResend-Idempotency-Key: k1\r\n\r\nx\r\n"
    first = parse(data).request_hash
    assert first
    assert parse(data).request_hash == first
    assert parse(data, "bob@example.org").request_hash != first
    assert parse(data + b"y\r\n").request_hash != first


def test_no_request_hash_without_an_idempotency_key() -> None:
    assert parse(b"From: a@example.com\r\n\r\nx\r\n").request_hash == b""


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "The message has no From header."),
        (b"From: a@example.com\r\nSubject: x", "The message does not end with CRLF."),
        (b"From: a@example.com\nSubject: x\r\n", "Bare CR or LF in the message"),
        (b"From: a@example.com\r\nSubject: \xff\r\n\r\n", "The Subject header is not valid UTF-8."),
        (b"From: a@example.com\r\nX-A: \x1b[31m\r\n\r\n", "contains a control character"),
        (b"From: a@example.com\r\n: empty name\r\n\r\n", "not `name: value`"),
        (b"From: Group: a@example.com;\r\n\r\n", "exactly one mailbox"),
        (b"From: <>\r\n\r\n", "The From header holds an invalid address."),
        (b"From: a@example.com\r\nReply-To: x@\r\n\r\n", "The Reply-To header is not a valid"),
        (
            b"From: a@example.com\r\nSubject: 1\r\nSubject: 2\r\n\r\n",
            "The Subject header appears more",
        ),
        # The stdlib parser raises AttributeError on this one (found by fuzzing).
        (b"From: a@example.com\r\nCc: g:; x@example.org\r\n\r\n", "The Cc header is not a valid"),
        (
            b"From: a@example.com\r\nResend-Idempotency-Key: caf\xc3\xa9\r\n\r\n",
            "The Resend-Idempotency-Key header must be",
        ),
    ],
)
def test_refused(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidSubmission) as refused:
        parse(data)
    assert reason in refused.value.reason


@pytest.mark.parametrize(
    ("data", "bare"),
    [
        (b"a\r\nb\r\n", False),
        (b"", False),
        (b"a\nb", True),
        (b"a\rb", True),
        (b"a\r\r\n", True),
        (b"a\r\n\n", True),
        (b"\n\r", True),
    ],
)
def test_bare_line_endings(data: bytes, bare: bool) -> None:
    assert has_bare_line_ending(data) is bare
