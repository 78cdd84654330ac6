"""Building messages: structure, encodings, headers, determinism, and refused injections.

Every built message is parsed back with the stdlib parser (policy.default) and checked on
the wire: CRLF only, no line over 998 octets, no Bcc.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
from datetime import UTC, datetime, timedelta, timezone
from email.header import decode_header, make_header
from email.message import EmailMessage, MIMEPart
from typing import Any

import pytest

from postyard.sending.addresses import Address, parse_address
from postyard.sending.html_text import html_to_text
from postyard.sending.mime import Attachment, InvalidHeader, MessageSpec, build_message
from tests.sending.test_addresses import INJECTIONS

DATE = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PDF = b"%PDF-1.7\n" + bytes(range(255, -1, -1)) * 40


def addr(value: str) -> Address:
    return parse_address(value, field="to")


def make_spec(**changes: Any) -> MessageSpec:
    base = MessageSpec(
        sender=addr("Postyard <hello@example.com>"),
        to=(addr("Ann <ann@example.com>"),),
        subject="Hello",
        text="Hi Ann",
        message_id="<m1@example.com>",
        date=DATE,
    )
    return dataclasses.replace(base, **changes)


def check_wire_format(raw: bytes) -> None:
    assert raw.endswith(b"\r\n")
    lines = raw.split(b"\r\n")[:-1]
    assert all(b"\r" not in line and b"\n" not in line for line in lines)
    assert max(len(line) for line in lines) <= 998


def header_lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def build(spec: MessageSpec) -> tuple[bytes, EmailMessage]:
    raw = build_message(spec)
    check_wire_format(raw)
    return raw, email.message_from_bytes(raw, policy=email.policy.default)


def structure(part: MIMEPart) -> object:
    if part.is_multipart():
        return (part.get_content_type(), [structure(child) for child in part.iter_parts()])
    return part.get_content_type()


def body(part: MIMEPart) -> str:
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


HTML = "<h1>Welcome</h1><p>Read <a href='https://example.com/doc'>the docs</a>.</p>"
ALTERNATIVE = ("multipart/alternative", ["text/plain", "text/html"])


@pytest.mark.parametrize(
    ("html", "text", "shape", "bodies"),
    [
        (None, "Hi Ann", "text/plain", ["Hi Ann\n"]),
        (None, None, "text/plain", ["\n"]),
        (HTML, None, ALTERNATIVE, [html_to_text(HTML) + "\n", HTML + "\n"]),
        ("<p>Rich</p>", "Plain", ALTERNATIVE, ["Plain\n", "<p>Rich</p>\n"]),
        ("<p>Only HTML</p>", "", "text/html", ["<p>Only HTML</p>\n"]),  # Resend's opt-out
    ],
)
def test_body_shapes(html: str | None, text: str | None, shape: object, bodies: list[str]) -> None:
    _, message = build(make_spec(html=html, text=text))
    assert structure(message) == shape
    parts = list(message.iter_parts()) if message.is_multipart() else [message]
    assert [body(part) for part in parts] == bodies
    assert all(part.get_content_charset() == "utf-8" for part in parts)


@pytest.mark.parametrize(
    ("text", "encoding", "decoded"),
    [
        ("Hi Ann", "7bit", "Hi Ann\n"),
        ("Grüße aus Köln", "quoted-printable", "Grüße aus Köln\n"),
        ("long line " * 30, "quoted-printable", "long line " * 30 + "\n"),
        ("a\rb\nc\r\nd", "7bit", "a\nb\nc\nd\n"),
        ("nul\x00 and esc\x1b", "quoted-printable", "nul\x00 and esc\x1b\n"),
        ("bad \ud800 char", "quoted-printable", "bad \ufffd char\n"),
    ],
)
def test_text_encodings(text: str, encoding: str, decoded: str) -> None:
    raw, message = build(make_spec(text=text))
    assert message["Content-Transfer-Encoding"] == encoding
    assert body(message) == decoded
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78


def test_long_html_line_stays_under_the_line_limit() -> None:
    html = "<p>" + "word " * 2000 + "</p>"
    raw, message = build(make_spec(html=html, text=""))
    assert message["Content-Transfer-Encoding"] == "quoted-printable"
    assert body(message) == html + "\n"
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78


@pytest.mark.parametrize(
    ("text", "content_id", "root"),
    [(None, "logo", ALTERNATIVE), ("", "<logo@example.com>", "text/html")],
)
def test_inline_images_are_related_to_the_html(
    text: str | None, content_id: str, root: object
) -> None:
    logo = Attachment("logo.png", PNG, None, content_id)
    spec = make_spec(
        html=f'<img src="cid:{content_id.strip("<>")}">', text=text, attachments=(logo,)
    )
    _, message = build(spec)
    assert structure(message) == ("multipart/related", [root, "image/png"])
    # RFC 2387 section 3.1: "type" names the root part's content type.
    assert message.get_param("type") == next(message.iter_parts()).get_content_type()
    image = list(message.iter_parts())[1]
    assert image["Content-ID"] == f"<{content_id.strip('<>')}>"
    assert image.get_content_disposition() == "inline"
    assert image.get_filename() == "logo.png"
    assert image.get_content() == PNG


def test_full_structure_with_files_and_inline_images() -> None:
    attachments = (
        Attachment("report.pdf", PDF),
        Attachment("logo.png", PNG, None, "logo"),
        Attachment("notes.txt", b"plain notes\n"),
    )
    _, message = build(make_spec(html="<p>x</p>", text="x", attachments=attachments))
    related = ("multipart/related", [ALTERNATIVE, "image/png"])
    assert structure(message) == ("multipart/mixed", [related, "application/pdf", "text/plain"])
    files = list(message.iter_attachments())
    assert [part.get_filename() for part in files] == ["report.pdf", "notes.txt"]
    assert [part.get_content_disposition() for part in files] == ["attachment", "attachment"]
    assert files[0].get_content() == PDF


def test_inline_image_without_html_is_a_plain_attachment() -> None:
    _, message = build(make_spec(attachments=(Attachment("logo.png", PNG, None, "logo"),)))
    assert structure(message) == ("multipart/mixed", ["text/plain", "image/png"])
    (part,) = message.iter_attachments()
    assert part.get_content_disposition() == "attachment"
    assert part["Content-ID"] == "<logo>"


def test_attachments_are_base64_in_76_columns() -> None:
    raw, message = build(make_spec(attachments=(Attachment("report.pdf", PDF),)))
    (part,) = message.iter_attachments()
    assert part["Content-Transfer-Encoding"] == "base64"
    assert part.get_content() == PDF
    encoded = raw.split(b'filename="report.pdf"\r\n\r\n')[1].split(b"\r\n\r\n--")[0]
    lines = encoded.split(b"\r\n")
    assert len(lines) > 1
    assert all(len(line) == 76 for line in lines[:-1])
    assert len(lines[-1]) <= 76


@pytest.mark.parametrize(
    ("filename", "rfc2231"),
    [
        ("Résumé année 2026 — version finale très longue pour le pliage.pdf", True),
        ("報告書.pdf", True),
        ('my "best" \\ file.txt', False),
        ("plain.txt", False),
    ],
)
def test_filenames_round_trip(filename: str, rfc2231: bool) -> None:
    raw, message = build(make_spec(attachments=(Attachment(filename, b"data"),)))
    assert raw.isascii()
    assert (b"filename*" in raw) is rfc2231
    (part,) = message.iter_attachments()
    assert part.get_filename() == filename


@pytest.mark.parametrize(
    ("filename", "given", "content_type"),
    [
        ("photo.JPG", None, "image/jpeg"), ("report.pdf", None, "application/pdf"),
        ("notes.txt", None, "text/plain"), ("archive.tar.gz", None, "application/gzip"),
        ("backup.tgz", None, "application/gzip"), ("message.eml", None, "application/octet-stream"),
        ("no-extension", None, "application/octet-stream"),
        ("strange.unknown-ext", None, "application/octet-stream"),
        ("trailing.", None, "application/octet-stream"), ("x.bin", "Image/PNG", "image/png"),
    ],
)  # fmt: skip
def test_content_types(filename: str, given: str | None, content_type: str) -> None:
    _, message = build(make_spec(attachments=(Attachment(filename, b"x", given),)))
    (part,) = message.iter_attachments()
    assert part.get_content_type() == content_type


@pytest.mark.parametrize(
    ("content_type", "content_id"),
    [
        ("image", None), ("image/png; charset=x", None), ("image/ png", None),
        ("multipart/mixed", None), ("message/rfc822", None), ("a/b\r\nX: y", None),
        (None, "a b"), (None, "logo\r\n"), (None, "<a>\r\nX: y"), (None, "x" * 61),
        (None, 'a"b'), (None, ""), (None, "<>"),
    ],
)  # fmt: skip
def test_bad_attachment_parameters_are_refused(
    content_type: str | None, content_id: str | None
) -> None:
    attachment = Attachment("x.png", PNG, content_type, content_id)
    with pytest.raises(InvalidHeader) as caught:
        build_message(make_spec(html="<p/>", attachments=(attachment,)))
    assert caught.value.field == "attachments"
    assert caught.value.message.startswith("Invalid `attachments[0]`:")


def test_top_level_headers() -> None:
    spec = make_spec(
        date=datetime(2026, 3, 4, 7, 6, 7, tzinfo=timezone(timedelta(hours=2))),
        to=(addr('"Smith, Ann" <ann@example.com>'), addr("bob@example.com")),
        cc=(addr("Carol <carol@example.com>"),),
        reply_to=(addr("Support <support@example.com>"), addr("help@example.com")),
    )
    raw, message = build(spec)
    names = [line.split(b":", 1)[0] for line in header_lines(raw) if not line.startswith(b" ")]
    assert names == [
        b"From", b"To", b"Cc", b"Reply-To", b"Subject", b"Date", b"Message-ID", b"MIME-Version",
        b"Content-Type", b"Content-Transfer-Encoding",
    ]  # fmt: skip
    assert message["From"].addresses[0].display_name == "Postyard"
    assert [a.display_name for a in message["To"].addresses] == ["Smith, Ann", ""]
    assert [a.addr_spec for a in message["Reply-To"].addresses] == [
        "support@example.com",
        "help@example.com",
    ]
    assert message["Date"] == "Wed, 04 Mar 2026 05:06:07 +0000"  # always UTC
    assert message["Message-ID"] == "<m1@example.com>"
    assert message.get_all("MIME-Version") == ["1.0"]


def test_bcc_appears_nowhere() -> None:
    secret = addr("Secret Person <secret@hidden.example>")
    raw, message = build(make_spec(bcc=(secret,), html="<p>x</p>", text=None))
    assert b"hidden.example" not in raw
    assert b"Secret" not in raw
    assert message["Bcc"] is None
    assert not any(line.lower().startswith(b"bcc:") for line in header_lines(raw))


@pytest.mark.parametrize(
    "subject",
    [
        "Grüße — ünïcode ✓",
        "日本語の件名" * 12,
        "=?utf-8?q?looks_encoded?= but is literal",
        "A plain subject that is long enough to need folding at seventy-eight columns, twice over "
        "and then   some  more words with  doubled  spaces",
        "x" * 2000,
        "tab\tseparated",
        "Your invoice is ready",
    ],
)
def test_subject_round_trips(subject: str) -> None:
    raw, message = build(make_spec(subject=subject))
    assert raw.isascii()
    assert all(len(line) <= 78 for line in header_lines(raw))
    assert message["Subject"] == subject
    folded = b"\r\n".join(
        line for line in header_lines(raw) if line.startswith((b"Subject:", b" ", b"\t"))
    )
    unfolded = folded.decode().removeprefix("Subject: ").replace("\r\n", "")
    assert str(make_header(decode_header(unfolded))) == subject  # RFC 2047 section 6.2
    if subject.isascii() and "=?" not in subject and len(subject) < 60:
        assert f"Subject: {subject}\r\n".encode() in raw  # plain text is left readable


@pytest.mark.parametrize(
    ("value", "read_back"),
    [
        ("  padded\t", "padded"),
        ("", ""),
        ("Catégorie spéciale — " * 6, ("Catégorie spéciale — " * 6).strip()),
        (" ".join(f"token{n}" for n in range(100)), " ".join(f"token{n}" for n in range(100))),
        ("=?utf-8?q?pre-encoded?=", "pre-encoded"),
    ],
)
def test_custom_header_values_round_trip(value: str, read_back: str) -> None:
    headers = (("X-Value", value), ("List-Unsubscribe", "<https://example.com/u/1>"))
    raw, message = build(make_spec(headers=headers))
    assert b"\r\nMIME-Version: 1.0\r\nX-Value:" in raw  # after the standard headers, in order
    assert message["List-Unsubscribe"] == "<https://example.com/u/1>"
    assert raw.isascii()
    assert all(len(line) <= 78 for line in header_lines(raw))
    assert message["X-Value"] == read_back


def injected_spec(context: str, injection: str) -> MessageSpec:
    if context == "subject":
        return make_spec(subject=f"Hello {injection}")
    if context == "headers":
        return make_spec(headers=(("X-Campaign", f"spring {injection}"),))
    return make_spec(attachments=(Attachment(f"a{injection}.pdf", PDF),))


@pytest.mark.parametrize("context", ["subject", "headers", "attachments"])
@pytest.mark.parametrize("injection", INJECTIONS)
def test_injections_are_refused(context: str, injection: str) -> None:
    with pytest.raises(InvalidHeader) as caught:
        build_message(injected_spec(context, injection))
    assert caught.value.field == context
    assert caught.value.message.startswith(f"Invalid `{context}")
    if context == "headers":
        assert "`X-Campaign`" in caught.value.message


STRUCTURAL = [
    "From", "to", "CC", "bcc", "Subject", "DATE", "Message-ID", "MIME-Version", "Reply-To",
    "Sender", "Return-Path", "DKIM-Signature", "Received", "Content-Type",
    "content-transfer-encoding", "Content-Disposition", "ARC-Seal", "Authentication-Results",
]  # fmt: skip
BAD_NAMES = ["", "X Foo", "X:Foo", "X-Föö", "X-Foo\r\nBcc", "X\x00", "x" * 77, "X-Foo:"]


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        *[(((name, "x"),), f"the `{name}` header cannot be set") for name in STRUCTURAL],
        *[(((name, "x"),), "is not a valid header name") for name in BAD_NAMES],
        ((("X-Tag", "a"), ("x-tag", "b")), "the `x-tag` header is given twice"),
        ((("X-Long", "x" * 1000),), "the `X-Long` value has a word too long"),
    ],
)
def test_bad_custom_headers_are_refused(
    headers: tuple[tuple[str, str], ...], fragment: str
) -> None:
    with pytest.raises(InvalidHeader) as caught:
        build_message(make_spec(headers=headers))
    assert caught.value.field == "headers"
    assert caught.value.message.startswith("Invalid `headers` field:")
    assert fragment in caught.value.message


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"date": datetime(2026, 1, 1)}, "date"),  # noqa: DTZ001  (naive on purpose)
        ({"message_id": "m1@example.com"}, "message_id"),
        ({"message_id": "<m1>"}, "message_id"),
        ({"message_id": "<a b@example.com>"}, "message_id"),
        ({"message_id": "<m1@example.com>\r\nBcc: x"}, "message_id"),
        ({"message_id": ""}, "message_id"),
    ],
)
def test_bad_date_or_message_id_is_refused(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidHeader) as caught:
        build_message(make_spec(**changes))
    assert caught.value.field == field


def test_same_spec_gives_the_same_bytes() -> None:
    attachments = (Attachment("a.pdf", PDF), Attachment("logo.png", PNG, None, "logo"))
    spec = make_spec(html="<p>Hello</p>", text=None, attachments=attachments)
    assert build_message(spec) == build_message(dataclasses.replace(spec))
    other = build_message(dataclasses.replace(spec, message_id="<m2@example.com>"))
    assert other != build_message(spec)


def test_boundary_found_in_a_body_is_not_used() -> None:
    spec = make_spec(html="<p>x</p>", text="plain")
    _, first = build(spec)
    boundary = first.get_boundary()
    assert boundary is not None
    hostile = f"before\n--{boundary}\nContent-Type: text/html\n\n<p>smuggled</p>\n--{boundary}--\n"
    raw, message = build(dataclasses.replace(spec, text=hostile))
    new_boundary = message.get_boundary()
    assert new_boundary not in (None, boundary)
    assert structure(message) == ("multipart/alternative", ["text/plain", "text/html"])
    assert body(next(message.iter_parts())) == hostile
    lines = raw.split(b"\r\n")
    assert lines.count(f"--{new_boundary}".encode()) == 2
    assert lines.count(f"--{new_boundary}--".encode()) == 1
