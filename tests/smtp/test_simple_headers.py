"""The fast paths for simple address lists and subjects read them exactly as the stdlib."""

from __future__ import annotations

import email.policy
import random
from email._header_value_parser import get_angle_addr
from email.headerregistry import AddressHeader

import pytest

from postyard.smtp.simple import PLAIN_SUBJECT, simple_address_list, simple_angle_addr

_PIECES = [
    "ann", "Bo", "x.y", "@", "example.com", "ex-ample.org", "<", ">", " ", "  ", "\t", ",",
    '"', "(", ")", ":", ";", "=?", "?=", "\\", ".", "..", "[", "]", "é", "+", "Smith", "a@b",
]  # fmt: skip

FIXED = [
    "ann@example.com", "Ann <ann@example.com>", "Ann Smith<ann@example.com>",
    "Ann  Smith <ann@example.com>", "a@x.com, Bo <b@y.org>", "a@x.com,b@y.org",
    " a@x.com ,  b@y.org", "Ann <ann@example.com>, ", "<ann@example.com>", "a..b@x.com",
    "ann@example.com <bo@x.com>", "Ann.B <a@x.com>", "Ann <a@x.com> junk",
    "=?utf-8?q?A?= <a@x.com>",
    "Group: a@x.com;", "a@x.com (comment)", '"Ann, B" <a@x.com>', "a@[127.0.0.1]",
]  # fmt: skip


def _stdlib(value: str) -> list[tuple[str, str]] | None:
    try:
        header = email.policy.default.header_factory("To", value)
    except Exception:  # noqa: BLE001 - any failure is "not the same reading"
        return None
    assert isinstance(header, AddressHeader)
    return [(a.display_name or "", a.addr_spec) for a in header.addresses]


def _generated(count: int) -> list[str]:
    rng = random.Random(1201)
    return ["".join(rng.choice(_PIECES) for _ in range(rng.randint(1, 9))) for _ in range(count)]


@pytest.mark.parametrize("value", FIXED)
def test_fixed_lists_read_as_the_stdlib_reads_them(value: str) -> None:
    fast = simple_address_list(value)
    if fast is not None:
        assert fast == _stdlib(value)


def test_generated_lists_read_as_the_stdlib_reads_them() -> None:
    answered = 0
    for value in _generated(30_000):
        fast = simple_address_list(value)
        if fast is not None:
            answered += 1
            assert fast == _stdlib(value), value
    assert answered > 200
    assert simple_address_list("Ann <ann@example.com>") == [("Ann", "ann@example.com")]


def test_plain_subjects_are_what_the_stdlib_decodes() -> None:
    rng = random.Random(7)
    alphabet = ["a", "Z", " ", "  ", "=?", "?", "=", "é", "\t", "!", "~", "x"]
    taken = 0
    for _ in range(20_000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))).strip(" \t")
        if PLAIN_SUBJECT.fullmatch(value):
            taken += 1
            assert str(email.policy.default.header_factory("subject", value)) == value
    assert taken > 500


def _stdlib_angle(arg: str) -> tuple[str, str] | None:
    try:
        address, rest = get_angle_addr(arg)
    except Exception:  # noqa: BLE001 - any failure is "not the same reading"
        return None
    return address.addr_spec, rest


def test_mail_and_rcpt_arguments_read_as_the_stdlib_reads_them() -> None:
    rng = random.Random(25)
    pieces = [*_PIECES, "SIZE=5", "BODY=8BITMIME", "=", "<>"]
    answered = 0
    for _ in range(30_000):
        arg = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 7)))
        for candidate in (arg, f"<{arg}>", f"<ann@example.com>{arg}"):
            fast = simple_angle_addr(candidate)
            if fast is not None:
                answered += 1
                assert fast == _stdlib_angle(candidate), candidate
    assert answered > 200
    assert simple_angle_addr("<a@b.com> SIZE=5") == ("a@b.com", "SIZE=5")
