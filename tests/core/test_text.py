"""Text PostgreSQL can keep: no NUL, no unpaired surrogate, everything else unchanged."""

from __future__ import annotations

import pytest

from postyard.core.text import storable


@pytest.mark.parametrize("text", ["250 2.0.0 Ok", "", "550 Usuário desconhecido ☃", "\ufffd"])
def test_text_that_can_be_stored_is_the_same_object(text: str) -> None:
    assert storable(text) is text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"550 Usu\xe1rio".decode("utf-8", "surrogateescape"), "550 Usu\ufffdrio"),
        ("a\x00b", "a\ufffdb"),
        ("lone \ud800 high", "lone \ufffd high"),
        ("mixed \udce1 and \ud800", "mixed \ufffd and \ufffd"),
    ],
)
def test_what_cannot_be_stored_becomes_replacement_characters(text: str, expected: str) -> None:
    assert storable(text) == expected
    storable(text).encode()  # UTF-8 without complaint
