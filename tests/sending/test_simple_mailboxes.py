"""The fast path for common mailboxes gives exactly what the general parser gives, wherever
it answers, and answers for the common forms."""

from __future__ import annotations

import random

import pytest

from postyard.sending.addresses import (
    Address,
    InvalidAddress,
    _parse_general,
    _parse_simple,
    parse_address,
)

_NAME_PIECES = [
    "Ann", "b", "Z9", " ", "  ", "\t", ".", ",", ";", '"', "\\", "<", ">", "@", "=?", "?=",
    "(", ")", ":", "[", "]", "é", "Ünïcode", "\u2028", "\x00", "\r\n", "'", "_", "-", "=",
]  # fmt: skip
_SPEC_PIECES = [
    "ann", "B", "0", ".", "..", "-", "_", "+", "%", "@", "é", " ", "xn--", "--", "com",
    "test", "localhost", "local", "invalid", "example", "x" * 64, "<", ">", ",", '"',
]  # fmt: skip


def _general(value: str) -> Address | None:
    try:
        return _parse_general(value, field="to")
    except InvalidAddress:
        return None


def _generated(count: int) -> list[str]:
    rng = random.Random(20261202)
    out = []
    for _ in range(count):
        name = "".join(rng.choice(_NAME_PIECES) for _ in range(rng.randint(0, 4)))
        local = "".join(rng.choice(_SPEC_PIECES) for _ in range(rng.randint(1, 3)))
        host = "".join(rng.choice(_SPEC_PIECES) for _ in range(rng.randint(1, 3)))
        spec = f"{local}@{host}.{rng.choice(['com', 'test', 'Org', 'c0', 'onion'])}"
        form = rng.choice(["{s}", "<{s}>", "{n} <{s}>", "{n}<{s}>", '"{n}" <{s}>', "{n} {s}"])
        out.append(form.format(n=name, s=spec))
        # and a plausible one: most of these take the fast path
        plausible = "".join(rng.choice("abcXYZ09._+-%") for _ in range(rng.randint(1, 10)))
        words = " ".join(rng.choice(["Ann", "B.", "O'Neil", "x@y", "Team(1)"]) for _ in "ab")
        out.append(f"{words} <{plausible}@mail.example.com>")
    return out


FIXED = [
    "ann@example.com", "<ann@example.com>", "Ann <ann@example.com>", "Ann B <ann@Example.COM>",
    "Ann  B <ann@example.com>", " Ann <ann@example.com>", "Ann <ann@example.com> ",
    "Ann<ann@example.com>", "Ann < ann@example.com >", '"Ann, B" <ann@example.com>',
    "Ann, B <ann@example.com>", "Ann; B <ann@example.com>", "a@example.com, b@example.com",
    '"Ann" <ann@example.com>', 'A"nn <ann@example.com>', "A\\nn <ann@example.com>",
    "Jöhn <john@example.com>", "John <jöhn@example.com>", "John <john@bücher.de>",
    "=?utf-8?q?Ann?= <ann@example.com>", "=?utf-8?q?=0A?= <ann@example.com>",
    "Ann\r\n <ann@example.com>", "Ann\x00 <ann@example.com>", "Ann\t<ann@example.com>",
    "Ann ann@example.com", "Ann <ann@example.com", "Ann ann@example.com>", "<>", "",
    "ann@localhost", "ann@x.invalid", "ann@xn--bcher-kva.de", "ann..b@example.com",
    "x@y <ann@example.com>", "John Q. Public <john@example.com>", "(c) <ann@example.com>",
    "<<ann@example.com>>", "Ann <ann@example.com> <b@example.com>", "ann@example",
    "ann@a.test", "A" * 990 + " <a@b.com>", "a" * 65 + "@example.com",
]  # fmt: skip


@pytest.mark.parametrize("value", FIXED)
def test_fixed_cases_agree(value: str) -> None:
    fast = _parse_simple(value)
    if fast is not None:
        assert fast == _general(value)


def test_generated_mailboxes_agree_and_the_fast_path_takes_the_common_ones() -> None:
    answered = refused = 0
    for value in _generated(10_000):
        fast = _parse_simple(value)
        general = _general(value)
        refused += general is None
        if fast is None:
            continue
        answered += 1
        assert fast == general, value
    # the corpus exercises the fast path, and the general parser's refusals
    assert answered > 5_000
    assert refused > 2_000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("rcpt1@sink.example", Address("", "rcpt1", "sink.example")),
        ("<rcpt1@Sink.Example>", Address("", "rcpt1", "sink.example")),
        ("Bench <bench@unsigned.example>", Address("Bench", "bench", "unsigned.example")),
        ("Ann B. <a+b@example.com>", Address("Ann B.", "a+b", "example.com")),
    ],
)
def test_the_common_forms_take_the_fast_path(value: str, expected: Address) -> None:
    assert _parse_simple(value) == expected
    assert parse_address(value, field="to") == expected
