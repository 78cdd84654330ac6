"""The accept statement's parameters: bodies laid end to end and found again by their
offsets, rows as JSON that reads back as the values."""

from __future__ import annotations

import json
import random

import pytest

from postyard.core.json_rows import json_rows
from postyard.sending.accept_rows import Bodies


def _parts(seed: int) -> list[bytes | None]:
    rng = random.Random(seed)
    return [
        None if rng.random() < 0.2 else rng.randbytes(rng.randrange(0, 64))
        for _ in range(rng.randrange(0, 20))
    ]


@pytest.mark.parametrize(
    "parts", [[], [None], [b""], [b"a", None, b"", b"bc"], *map(_parts, range(50))]
)
def test_each_body_is_found_at_its_offset(parts: list[bytes | None]) -> None:
    bodies = Bodies()
    spans = [bodies.add(p) for p in parts]
    whole = bodies.joined()
    assert len(whole) == sum(len(p) for p in parts if p is not None)
    for part, (at, length) in zip(parts, spans, strict=True):
        if part is None:
            assert (at, length) == (None, None)
            continue
        assert at is not None and length == len(part)
        assert whole[at - 1 : at - 1 + length] == part  # substr counts from 1


@pytest.mark.parametrize(
    "row",
    [
        {"to_addrs": [], "tags": []},
        {"to_addrs": ["ann@example.com", "jöhn@example.com", 'q"uote@example.com']},
        {"subject": 'Grüße \u2603 \\ " \t', "tags": [{"name": "category", "value": "welcome"}]},
        {"scheduled_at": None, "smtputf8": True, "size": 5120},
    ],
)
def test_json_rows_read_back_as_the_rows(row: dict[str, object]) -> None:
    text = json_rows([row, row])
    assert json.loads(text) == [row, row]
    # Non-ASCII text is sent as it is (UTF-8 on the wire), not as \u escapes.
    assert all(
        f"{w}" in text for w in ("jöhn", "Grüße \u2603") if w in json.dumps(row, ensure_ascii=False)
    )
