"""Parsing API addresses and rendering them in headers: formats, IDNA, SMTPUTF8, injection."""

from __future__ import annotations

import dataclasses
import email
import email.policy
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.headerregistry import AddressHeader, HeaderRegistry
from email.message import EmailMessage
from typing import Any

import pytest

from postyard.sending.addresses import (
    MAX_HEADER_TOKEN,
    Address,
    InvalidAddress,
    encode_rfc2047_words,
    header_text_problem,
    parse_address,
    parse_address_list,
)
from postyard.sending.mime import MessageSpec, build_message, needs_smtputf8

# Strings that try to end a header early, start a new one or hide a line break from us.
INJECTIONS = [
    "a\r\nBcc: victim@example.com",
    "a\nBcc: victim@example.com",
    "a\rBcc: victim@example.com",
    "a\r\n Bcc: victim@example.com",
    "a\r\n\r\n<p>a new body</p>",
    "a\x00b",
    "a\x0bb",
    "a\x0cb",
    "a\x1b[31mred",
    "a\x7fb",
    "a\x85Bcc: victim@example.com",
    "a\u2028Bcc: victim@example.com",
    "a\u2029b",
    "a\ud800b",
    "=?utf-8?q?a=0D=0ABcc:_victim@example.com?=",
    "=?UTF-8?Q?a=0Ab?=",
    "=?utf-8?b?YQ0KQmNjOiB2aWN0aW1AZXhhbXBsZS5jb20=?=",
    "=?iso-8859-1?q?a=00b?=",
]


def unfold_and_decode(value: str) -> str:
    return str(make_header(decode_header(value)))


def test_bare_address() -> None:
    address = parse_address("ann@example.com", field="to")
    assert address == Address(display_name="", local="ann", domain="example.com")
    assert address.addr_spec == "ann@example.com"
    assert address.header_value() == "ann@example.com"


@pytest.mark.parametrize(
    ("value", "display_name"),
    [
        ("Ann Smith <ann@example.com>", "Ann Smith"),
        ("  Ann   Smith <ann@example.com>  ", "Ann Smith"),
        ('"Smith, Ann" <ann@example.com>', "Smith, Ann"),
        ('"Ann \\"The Boss\\" Smith" <ann@example.com>', 'Ann "The Boss" Smith'),
        ('"  spaced  " <ann@example.com>', "spaced"),
        ("<ann@example.com>", ""),
        ('"" <ann@example.com>', ""),
        ("Zoë Ünïcode <ann@example.com>", "Zoë Ünïcode"),
        ("Ann <  ann@example.com  >", "Ann"),
    ],
)
def test_display_name_forms(value: str, display_name: str) -> None:
    address = parse_address(value, field="from")
    assert address.display_name == display_name
    assert address.addr_spec == "ann@example.com"


def test_domain_is_lowercased_and_idna_encoded() -> None:
    address = parse_address("Kim <Kim@Bücher.Example>", field="to")
    assert address.local == "Kim"
    assert address.domain == "xn--bcher-kva.example"
    assert address.addr_spec == "Kim@xn--bcher-kva.example"
    assert address.unicode_addr_spec == "Kim@bücher.example"
    assert not address.needs_smtputf8


def test_test_domains_are_accepted() -> None:
    # RFC 6761 section 6.2 reserves .test for testing; our test harness routes it.
    assert parse_address("Acme <hello@acme.test>", field="from").domain == "acme.test"


def test_a_label_input_stays_ascii() -> None:
    address = parse_address("kim@xn--bcher-kva.example", field="to")
    assert address.domain == "xn--bcher-kva.example"


def test_non_ascii_local_part_needs_smtputf8() -> None:
    address = parse_address("用户@例子.广告", field="to")
    assert address.needs_smtputf8
    assert address.local == "用户"
    assert address.domain == "xn--fsqu00a.xn--4rr70v"
    assert address.unicode_addr_spec == "用户@例子.广告"
    assert address.header_value() == "用户@xn--fsqu00a.xn--4rr70v"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("ann", "is not a valid email address"),
        ("ann@", "is not a valid email address"),
        ("@example.com", "is not a valid email address"),
        ("ann@example", "is not a valid email address"),
        ("ann@localhost", "is not a valid email address"),
        ("ann@x.localhost", "is not a valid email address"),
        ("ann@printer.local", "is not a valid email address"),
        ("ann@nowhere.invalid", "is not a valid email address"),
        ("ann@test", "is not a valid email address"),
        ("ann@-bad-.example", "is not a valid email address"),
        ("ann@exa mple.com", "is not a valid email address"),
        ("ann..x@example.com", "is not a valid email address"),
        ('"ann x"@example.com', "is not a valid email address"),
        ("ann@[192.0.2.1]", "is not a valid email address"),
        ("Ann <ann@example.com", "is not a valid email address"),
        ("Ann ann@example.com>", "is not a valid email address"),
        ("Ann <ann@example.com> trailing", "is not a valid email address"),
        ("Ann <<ann@example.com>>", "is not a valid email address"),
        ('"unterminated <ann@example.com>', "is not a valid email address"),
        ('Ann "Quoted" <ann@example.com>', "is not a valid email address"),
        ("Ann <>", "is not a valid email address"),
        ("ann@example.com, bob@example.com", "more than one address"),
        ("ann@example.com; bob@example.com", "more than one address"),
        ("Smith, Ann <ann@example.com>", "more than one address"),
        ("Ann <ann@example.com>, Bob <bob@example.com>", "more than one address"),
        ("ann@example.com bob@example.com", "is not a valid email address"),
        ("A" * 990 + " <ann@example.com>", "is too long"),
    ],
)
def test_invalid_addresses_name_the_field(value: str, fragment: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        parse_address(value, field="reply_to")
    assert caught.value.field == "reply_to"
    assert caught.value.message.startswith("Invalid `reply_to` field: ")
    assert fragment in caught.value.message
    assert str(caught.value) == caught.value.message


def test_message_quotes_the_value() -> None:
    with pytest.raises(InvalidAddress) as caught:
        parse_address("x", field="to")
    assert caught.value.message.startswith("Invalid `to` field: 'x' is not a valid email address.")


@pytest.mark.parametrize("injection", INJECTIONS)
def test_injection_in_display_name_is_refused(injection: str) -> None:
    with pytest.raises(InvalidAddress, match="Invalid `from` field"):
        parse_address(f"{injection} <ann@example.com>", field="from")


@pytest.mark.parametrize("injection", INJECTIONS)
def test_injection_in_quoted_display_name_is_refused(injection: str) -> None:
    with pytest.raises(InvalidAddress):
        parse_address(f'"{injection}" <ann@example.com>', field="from")


@pytest.mark.parametrize("injection", INJECTIONS)
def test_injection_in_address_is_refused(injection: str) -> None:
    with pytest.raises(InvalidAddress):
        parse_address(f"ann{injection}@example.com", field="to")
    with pytest.raises(InvalidAddress):
        parse_address(f"ann@example.com{injection}", field="to")


def test_control_message_escapes_the_value() -> None:
    with pytest.raises(InvalidAddress) as caught:
        parse_address("a\r\nb@example.com", field="cc")
    assert "\r" not in caught.value.message
    assert "contains a control character" in caught.value.message


def test_tab_is_refused_in_addresses() -> None:
    with pytest.raises(InvalidAddress):
        parse_address("Ann\tSmith <ann@example.com>", field="to")


def test_non_string_is_refused() -> None:
    with pytest.raises(InvalidAddress, match="expected a string"):
        parse_address(42, field="to")  # type: ignore[arg-type]  # what a JSON body may hold


def test_address_list_forms() -> None:
    assert parse_address_list(None, field="cc") == []
    assert parse_address_list([], field="cc") == []
    single = parse_address_list("Ann <ann@example.com>", field="cc")
    assert [a.addr_spec for a in single] == ["ann@example.com"]
    many = parse_address_list(["ann@example.com", '"B, B" <b@example.com>'], field="cc")
    assert [(a.display_name, a.addr_spec) for a in many] == [
        ("", "ann@example.com"),
        ("B, B", "b@example.com"),
    ]


def test_address_list_errors_name_the_field() -> None:
    with pytest.raises(InvalidAddress) as caught:
        parse_address_list(["ann@example.com", "nope"], field="bcc")
    assert caught.value.field == "bcc"
    assert "'nope'" in caught.value.message
    with pytest.raises(InvalidAddress, match="a string or a list"):
        parse_address_list({"a": 1}, field="bcc")  # type: ignore[arg-type]  # bad JSON shape
    with pytest.raises(InvalidAddress, match="more than one address"):
        parse_address_list("a@example.com, b@example.com", field="to")


@pytest.mark.parametrize(
    ("display_name", "rendered"),
    [
        ("Ann Smith", "Ann Smith <ann@example.com>"),
        ("Ann O'Neil-Smith", "Ann O'Neil-Smith <ann@example.com>"),
        ("Smith, Ann", '"Smith, Ann" <ann@example.com>'),
        ("John Q. Public", '"John Q. Public" <ann@example.com>'),
        ('Say "hi"', '"Say \\"hi\\"" <ann@example.com>'),
        ("back\\slash", '"back\\\\slash" <ann@example.com>'),
        ("two  spaces", '"two  spaces" <ann@example.com>'),
        ("Ann <ann@evil.example>", '"Ann <ann@evil.example>" <ann@example.com>'),
    ],
)
def test_header_value_quotes_only_when_needed(display_name: str, rendered: str) -> None:
    address = Address(display_name=display_name, local="ann", domain="example.com")
    assert address.header_value() == rendered


@pytest.mark.parametrize(
    "display_name",
    [
        "Zoë",
        "Équipe, Support",
        "東京の会社",
        "=?utf-8?q?not_decoded?=",
        "x" * 200,
        "Ann " * 40,
        'quote " and \\ inside, plus ünïcode ' * 4,
    ],
)
def test_header_value_round_trips_through_a_parser(display_name: str) -> None:
    address = Address(display_name=display_name, local="ann", domain="example.com")
    value = address.header_value()
    assert value.isascii()
    assert all(len(word) <= MAX_HEADER_TOKEN for word in value.split(" ")[:-1])
    parsed = HeaderRegistry()("To", value)
    assert isinstance(parsed, AddressHeader)
    assert parsed.defects == ()
    (only,) = parsed.addresses
    assert only.addr_spec == "ann@example.com"
    # CPython's address parser keeps the whitespace between adjacent encoded words, which
    # RFC 2047 section 6.2 says to ignore: compare its result without whitespace, and
    # check the exact text with the RFC-conformant decode_header.
    assert "".join(only.display_name.split()) == "".join(display_name.split())
    phrase = value.removesuffix(" <ann@example.com>")
    if phrase.startswith("=?"):
        assert unfold_and_decode(phrase) == display_name


def test_encoded_display_name_survives_a_full_message() -> None:
    address = Address(display_name="Ünïcode, Name", local="ann", domain="example.com")
    raw = f"To: {address.header_value()}\r\n\r\n".encode()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["To"].addresses[0].display_name == "Ünïcode, Name"


@pytest.mark.parametrize(
    "fields",
    [
        {"display_name": "Ann\r\nBcc: x@example.com", "local": "ann", "domain": "example.com"},
        {"display_name": "=?utf-8?q?=0A?=", "local": "ann", "domain": "example.com"},
        {"display_name": "", "local": "ann\n", "domain": "example.com"},
        {"display_name": "", "local": "a b", "domain": "example.com"},
        {"display_name": "", "local": "", "domain": "example.com"},
        {"display_name": "", "local": "ann", "domain": "bücher.example"},
        {"display_name": "", "local": "ann", "domain": "example.com>\r\nX: y"},
        {"display_name": "", "local": "ann", "domain": ""},
    ],
)
def test_address_construction_refuses_unsafe_parts(fields: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"local part|domain|contains"):
        Address(**fields)


@pytest.mark.parametrize(
    "text",
    ["Héllo", "日本語のテキスト" * 9, "😀" * 30, "a_b=c?d", "x" * 300, "Ça va, très bien"],
)
def test_encoded_words_are_short_and_decode_exactly(text: str) -> None:
    words = encode_rfc2047_words(text)
    assert all(len(word) <= 75 for word in words)
    assert all(word.isascii() and " " not in word for word in words)
    assert unfold_and_decode(" ".join(words)) == text
    for word in words:  # no character is split between two words (RFC 2047 section 5)
        ((data, charset),) = decode_header(word)
        assert isinstance(data, bytes)
        data.decode(charset or "ascii")


def test_first_encoded_word_fits_the_room_given() -> None:
    words = encode_rfc2047_words("é" * 60, first_word_max=40)
    assert len(words[0]) <= 40
    assert all(len(word) <= 75 for word in words)
    assert unfold_and_decode(" ".join(words)) == "é" * 60


@pytest.mark.parametrize(
    ("text", "allow_tab", "problem"),
    [
        ("plain text", False, None),
        ("tab\there", True, None),
        ("tab\there", False, "a control character"),
        ("a\r\nb", True, "a control character"),
        ("a\u2028b", False, "a line separator"),
        ("a\ud800b", False, "an unpaired surrogate"),
        ("=?utf-8?q?caf=C3=A9?=", False, None),
        ("=?utf-8?q?a=0Db?=", False, "an encoded control character"),
        ("=?utf-8?b?!!!?=", False, None),
    ],
)
def test_header_text_problem(text: str, allow_tab: bool, problem: str | None) -> None:
    assert header_text_problem(text, allow_tab=allow_tab) == problem


def parse_to(value: str) -> Address:
    return parse_address(value, field="to")


def built(**changes: Any) -> tuple[bytes, EmailMessage, MessageSpec]:
    """A message with the given address fields; its bytes (CRLF only) and its parse."""
    spec = MessageSpec(
        sender=parse_address("Postyard <hello@example.com>", field="from"),
        to=(parse_to("a@example.com"),),
        subject="Hi",
        text="Hi",
        message_id="<m1@example.com>",
        date=datetime(2026, 1, 1, tzinfo=UTC),
    )
    spec = dataclasses.replace(spec, **changes)
    raw = build_message(spec)
    assert b"\r" not in raw.replace(b"\r\n", b"") and b"\n" not in raw.replace(b"\r\n", b"")
    return raw, email.message_from_bytes(raw, policy=email.policy.default), spec


def header_lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def test_many_recipients_fold_at_78_columns() -> None:
    to = tuple(parse_to(f"Recipient Number {n} <recipient{n}@example.com>") for n in range(50))
    raw, message, _ = built(to=to)
    assert all(len(line) <= 78 for line in header_lines(raw))
    assert [a.addr_spec for a in message["To"].addresses] == [a.addr_spec for a in to]


def test_idna_domain_goes_out_as_a_labels() -> None:
    raw, message, spec = built(to=(parse_to("Kim <kim@bücher.example>"),))
    assert b"kim@xn--bcher-kva.example" in raw
    assert raw.isascii()
    assert message["To"].addresses[0].domain == "xn--bcher-kva.example"
    assert not needs_smtputf8(spec)


def test_non_ascii_local_part_is_flagged_for_smtputf8() -> None:
    raw, _, spec = built(to=(parse_to("Zoë <用户@例子.广告>"),))
    assert needs_smtputf8(spec)
    to_line = next(line for line in header_lines(raw) if line.startswith(b"To:"))
    assert to_line == "To: =?utf-8?q?Zo=C3=AB?= <用户@xn--fsqu00a.xn--4rr70v>".encode()
    # Bcc and Reply-To addresses count too: they are in the envelope or the headers.
    assert needs_smtputf8(built(bcc=(parse_to("用户@example.com"),))[2])
    assert needs_smtputf8(built(reply_to=(parse_to("josé@example.com"),))[2])
    assert not needs_smtputf8(built()[2])
