"""The memoised From and Subject lines are those of the unmemoised writers, and a refused
subject is refused every time (a refusal is never memoised)."""

from __future__ import annotations

import pytest

from postyard.sending.addresses import parse_address
from postyard.sending.mime import (
    InvalidHeader,
    _address_header,
    _checked_subject_header,
    _from_header,
    _subject_header,
)

SENDERS = [
    "hello@example.com",
    "Postyard <hello@example.com>",
    '"Doe, Jane" <jane@example.com>',
    "Jöhn Dœ <john@example.com>",
    "=?utf-8?q?Literal?= <x@example.com>",
]
SUBJECTS = ["Hello", "Grüße — ünïcode ✓", "tab\tseparated", "x" * 199, "y" * 200, "z" * 201]


@pytest.mark.parametrize("sender", SENDERS)
def test_from_line_is_the_address_header(sender: str) -> None:
    address = parse_address(sender, field="from")
    for _ in range(2):
        assert _from_header(address) == _address_header("From", (address,))


@pytest.mark.parametrize("subject", SUBJECTS)
def test_subject_line_is_the_checked_one(subject: str) -> None:
    for _ in range(2):
        assert _subject_header(subject) == _checked_subject_header(subject)


@pytest.mark.parametrize("subject", ["Hello\r\nBcc: x@example.com", "Hi\x00", "z\n" * 150])
def test_a_refused_subject_is_refused_every_time(subject: str) -> None:
    for _ in range(2):
        with pytest.raises(InvalidHeader, match="the subject contains"):
            _subject_header(subject)
