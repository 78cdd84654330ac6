"""The direct writer of text-only bodies (``sending/mime_text.py``) against the stdlib path it
replaces: the same bytes for a corpus of contents, and what the stdlib parser reads back."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import itertools
import random

import pytest

from postyard.sending.html_text import html_to_text
from postyard.sending.mime import build_body_with_stdlib, build_message
from tests.sending.test_mime import body, check_wire_format, make_spec

LONG_WORD = "x" * 120
CONTENTS = [
    "",
    "\n",
    "Hi Ann",
    "Hi Ann\n",
    "two\nlines",
    "crlf\r\nlines\r\n",
    "bare\rcr and\nbare lf\r\n",
    "\r\r\n\n",
    "line of exactly seventy-eight characters ......................................",
    "line of exactly seventy-nine characters .......................................",
    LONG_WORD,
    " ".join(["word"] * 400),  # one line of 2,000 characters
    "x" * 2000,  # one line beyond 998 with no space to break at
    "Grüße aus Köln",
    "日本語のテキスト、長い行。" * 20,
    "emoji 🎉🎉🎉 " * 30,
    "trailing space \nand tab\t\nend ",
    "space at column 75" + " " * 57 + "\nnext",
    "=" * 100,
    "=3D literal and =\nsoft break lookalike =\r\n",
    ".\n..\n.leading dots\n.",
    "From the start of a line\nFrom again",
    "nul\x00 esc\x1b bell\x07",
    "vertical\x0btab form\x0cfeed file\x1csep next\x85line para\u2028sep",
    "bad \ud800 surrogate",
    "=_not a boundary but close",
    "<p>Hello <b>world</b> &amp; caf&eacute;</p>",
]


def _random_contents(seed: int, count: int) -> list[str]:
    """Mixes of the awkward pieces above, at random lengths (fixed seed: reproducible)."""
    rng = random.Random(seed)
    pieces = ["a", "é", "€", "🎉", " ", "\t", "\n", "\r", "\r\n", "=", ".", "\x00", "x" * 77]
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 300))) for _ in range(count)]


CORPUS = CONTENTS + _random_contents(8, 60)


def _shapes(content: str) -> list[dict[str, str | None]]:
    return [
        {"text": content, "html": None},
        {"text": "", "html": content},
        {"text": None, "html": f"<p>{content}</p>"},
        {"text": content, "html": f"<div>{content}</div>"},
    ]


CASES = [(index, shape) for index, content in enumerate(CORPUS) for shape in _shapes(content)]


@pytest.mark.parametrize(("index", "shape"), CASES)
def test_the_same_bytes_as_the_stdlib_path(index: int, shape: dict[str, str | None]) -> None:
    spec = make_spec(**shape)
    raw = build_message(spec)
    check_wire_format(raw)
    head_end = raw.index(b"MIME-Version: 1.0\r\n") + len(b"MIME-Version: 1.0\r\n")
    assert raw[head_end:] == build_body_with_stdlib(spec), CORPUS[index]


def _as_read(content: str) -> str:
    """What a reader gets back: the unpaired surrogate as U+FFFD, each line break as LF, a
    final LF (an empty body reads as one empty line)."""
    safe = content.replace("\ud800", "\ufffd")
    return "".join(f"{line.decode()}\n" for line in safe.encode().splitlines()) or "\n"


@pytest.mark.parametrize("content", CORPUS)
def test_the_stdlib_parser_reads_the_text_back(content: str) -> None:
    html = f"<div>{content}</div>"
    for shape, expected in (
        ({"text": content, "html": None}, [_as_read(content)]),
        ({"text": "", "html": html}, [_as_read(html)]),
        ({"text": None, "html": html}, [_as_read(html_to_text(html)), _as_read(html)]),
        # `text: ""` opts out of the text part (Resend).
        ({"text": content, "html": html}, [_as_read(content)] * bool(content) + [_as_read(html)]),
    ):
        message = email.message_from_bytes(
            build_message(make_spec(**shape)), policy=email.policy.default
        )
        parts = list(message.iter_parts()) if message.is_multipart() else [message]
        assert [body(part) for part in parts] == expected
        assert all(part.get_content_charset() == "utf-8" for part in parts)
        assert not message.defects
        assert all(not part.defects for part in parts)


def test_a_body_holding_the_first_boundary_gets_another() -> None:
    spec = make_spec(html="<p>x</p>", text="plain")
    first = email.message_from_bytes(build_message(spec), policy=email.policy.default)
    boundary = first.get_boundary()
    assert boundary is not None
    hostile = dataclasses.replace(spec, text=f"--{boundary}\n<p>smuggled</p>")
    raw = build_message(hostile)
    assert raw[raw.index(b"MIME-Version: 1.0\r\n") + 19 :] == build_body_with_stdlib(hostile)
    again = email.message_from_bytes(raw, policy=email.policy.default)
    assert again.get_boundary() not in (None, boundary)
    assert len(list(again.iter_parts())) == 2


def test_every_shape_is_covered() -> None:
    shapes = {
        email.message_from_bytes(
            build_message(make_spec(**shape)), policy=email.policy.default
        ).get_content_type()
        for shape in itertools.islice(_shapes("é"), 4)
    }
    assert shapes == {"text/plain", "text/html", "multipart/alternative"}
