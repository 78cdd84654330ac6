"""List-Unsubscribe headers, one-click POST bodies and mailto unsubscribe addresses."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from postyard.tracking.tokens import (
    MailtoUnsubscribeClaim,
    make_mailto_unsubscribe_token,
    verify_mailto_unsubscribe_token,
)
from postyard.tracking.unsubscribe import (
    MAX_ONE_CLICK_BODY,
    is_one_click_body,
    list_unsubscribe_headers,
    mailto_address,
    token_from_address,
)

URL = "https://links.example.org/u/AbC-_123"
FORM = "application/x-www-form-urlencoded"


def test_headers_with_one_click_and_mailto() -> None:
    headers = list_unsubscribe_headers(
        https_url=URL, mailto="u+abc234@bounces.example.org", one_click=True
    )
    assert headers == [
        (
            "List-Unsubscribe",
            "<https://links.example.org/u/AbC-_123>, "
            "<mailto:u+abc234@bounces.example.org?subject=unsubscribe>",
        ),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    ]


def test_headers_without_one_click_or_mailto() -> None:
    assert list_unsubscribe_headers(https_url=URL, mailto=None, one_click=False) == [
        ("List-Unsubscribe", f"<{URL}>")
    ]


def test_mailto_characters_are_percent_encoded() -> None:
    [(_, value)] = list_unsubscribe_headers(
        https_url=URL, mailto="a%b?c#d&e=f/g@example.org", one_click=False
    )
    assert value.endswith("<mailto:a%25b%3Fc%23d%26e%3Df%2Fg@example.org?subject=unsubscribe>")


@pytest.mark.parametrize(
    "url",
    [
        "https://x.example/u\r\nBcc: victim@example.org",
        "https://x.example/u\n",
        "https://x.example/a b",
        "https://x.example/<script>",
        'https://x.example/"',
        "https://x.example/ü",
        "http://x.example/u",
        "mailto:u@x.example",
        "https:///nohost",
        "https://x.example/" + "a" * 900,
        "",
    ],
)
def test_unsafe_or_non_https_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="unsubscribe URL"):
        list_unsubscribe_headers(https_url=url, mailto=None, one_click=True)


@pytest.mark.parametrize(
    "address", ["u@x.example\r\n", "u x@x.example", "no-at-sign", "zoë@x.example", "<u@x.example>"]
)
def test_unsafe_mailto_addresses_are_refused(address: str) -> None:
    with pytest.raises(ValueError, match="address"):
        list_unsubscribe_headers(https_url=URL, mailto=address, one_click=True)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (FORM, b"List-Unsubscribe=One-Click"),
        ("Application/X-WWW-Form-Urlencoded; charset=UTF-8", b"List-Unsubscribe=One-Click"),
        (None, b"List-Unsubscribe=One-Click"),
        ("", b"List-Unsubscribe=One-Click"),
        (FORM, b"List-Unsubscribe=One%2DClick"),
        (FORM, b"a=1&List-Unsubscribe=One-Click&b=2"),
        (FORM, b"list-unsubscribe=one-click"),
    ],
)
def test_urlencoded_one_click_bodies(content_type: str | None, body: bytes) -> None:
    assert is_one_click_body(content_type, body)


def multipart(boundary: str, *parts: tuple[str, str], newline: str = "\r\n") -> bytes:
    lines = ["preamble"]
    for disposition, content in parts:
        lines += [f"--{boundary}", f"Content-Disposition: {disposition}", "", content]
    lines.append(f"--{boundary}--")
    return (newline.join(lines) + newline).encode()


ONE_CLICK_PART = ('form-data; name="List-Unsubscribe"', "One-Click")


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data; boundary=XyZ", multipart("XyZ", ONE_CLICK_PART)),
        ('multipart/form-data; boundary="a b:c"', multipart("a b:c", ONE_CLICK_PART)),
        ("Multipart/Form-Data;BOUNDARY=q",
         multipart("q", ("form-data; name=x", "1"), ONE_CLICK_PART)),
        ("multipart/form-data; boundary=q", multipart("q", ONE_CLICK_PART, newline="\n")),
        ("multipart/form-data; boundary=q",
         multipart("q", ("form-data; name=List-Unsubscribe", "One-Click"))),
    ],
)  # fmt: skip
def test_multipart_one_click_bodies(content_type: str, body: bytes) -> None:
    assert is_one_click_body(content_type, body)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (FORM, b""),
        (FORM, b"List-Unsubscribe=Yes"),
        (FORM, b"List-Unsubscribe"),
        (FORM, b"Unsubscribe=One-Click"),
        ("text/plain", b"List-Unsubscribe=One-Click"),
        ("application/json", b'{"List-Unsubscribe": "One-Click"}'),
        (FORM, b"List-Unsubscribe=One-Click" + b"&x=" + b"a" * MAX_ONE_CLICK_BODY),
        ("multipart/form-data", multipart("q", ONE_CLICK_PART)),
        ("multipart/form-data; boundary=other", multipart("q", ONE_CLICK_PART)),
        ("multipart/form-data; boundary=q",
         multipart("q", ('form-data; name="Other"', "One-Click"))),
        ("multipart/form-data; boundary=q",
         multipart("q", ('form-data; filename="List-Unsubscribe"', "One-Click"))),
        ("multipart/form-data; boundary=q",
         multipart("q", ('attachment; name="List-Unsubscribe"', "One-Click"))),
        ("multipart/form-data; boundary=q", b"--q--\r\n" + multipart("q", ONE_CLICK_PART)),
        ("multipart/form-data; boundary=q", b"--q\r\nno blank line\r\nOne-Click"),
        ("multipart/form-data; boundary=q", b"\xff\xfe--q\r\n\r\n\r\n"),
    ],
)  # fmt: skip
def test_other_bodies_are_not_one_click(content_type: str, body: bytes) -> None:
    assert not is_one_click_body(content_type, body)


def test_mailto_address_round_trip_with_a_real_token() -> None:
    key = b"tracking key for tests, 32 bytes"
    issued = datetime(2025, 3, 1, tzinfo=UTC)
    claim = MailtoUnsubscribeClaim(delivery_id=uuid.uuid4(), issued_at=issued)
    token = make_mailto_unsubscribe_token(key, claim)
    address = mailto_address(token, "Bounces.Example.ORG")
    local, _, domain = address.partition("@")
    assert local == f"u+{token}"
    assert len(local) <= 64
    assert domain == "bounces.example.org"
    # Remote servers may change the case of the whole address.
    found = token_from_address(f"<{address.upper()}>")
    assert found == token
    verified = verify_mailto_unsubscribe_token(key, found, now=issued, max_age=timedelta(days=1))
    assert verified == claim


@pytest.mark.parametrize(
    ("token", "domain"),
    [("", "x.example"), ("UPPER", "x.example"), ("a-b", "x.example"), ("a" * 63, "x.example"),
     ("abc", "localhost"), ("abc", "bad_domain.example"), ("abc", "-x.example"),
     ("abc", "exämple.org")],
)  # fmt: skip
def test_mailto_address_refuses_bad_tokens_and_domains(token: str, domain: str) -> None:
    with pytest.raises(ValueError, match=r"token|domain"):
        mailto_address(token, domain)


@pytest.mark.parametrize(
    "address",
    ["b+abc@x.example", "u+@x.example", "u+abc", "u+ab-c@x.example", "abc@x.example",
     "u+" + "a" * 63 + "@x.example", "", "u+abc def@x.example"],
)  # fmt: skip
def test_addresses_that_carry_no_token(address: str) -> None:
    assert token_from_address(address) is None
