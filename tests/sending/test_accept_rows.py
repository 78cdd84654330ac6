"""The accept statement's parameters: bodies laid end to end and found again by their
offsets, rows as JSON that reads back as the values."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
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


def test_json_rows_write_ids_and_times_as_the_server_reads_them() -> None:
    ident = uuid.UUID("0192d1a4-5b6c-7d8e-9fab-0123456789ab")
    at = datetime(2026, 12, 2, 7, 30, 1, 250000, tzinfo=UTC)
    paris = at.astimezone(timezone(timedelta(hours=1)))
    naive = at.replace(microsecond=0, tzinfo=None)  # taken as UTC, never as the server's zone
    rows = json.loads(json_rows([{"id": ident, "at": at, "paris": paris, "naive": naive}]))
    assert rows == [
        {
            "id": "0192d1a4-5b6c-7d8e-9fab-0123456789ab",
            "at": "2026-12-02T07:30:01.250000+00:00",
            "paris": "2026-12-02T08:30:01.250000+01:00",
            "naive": "2026-12-02T07:30:01+00:00",
        }
    ]


def test_json_rows_write_the_drivers_uuids_and_refuse_other_objects() -> None:
    # Ids read back from the database are asyncpg's UUID, a subclass orjson does not take.
    driver_uuid = asyncpg.pgproto.pgproto.UUID("0192d1a4-5b6c-7d8e-9fab-0123456789ab")
    assert json.loads(json_rows([{"id": driver_uuid}])) == [{"id": str(driver_uuid)}]
    for value in ({1, 2}, object(), b"bytes"):
        with pytest.raises(TypeError):
            json_rows([{"v": value}])


def test_json_rows_refuse_text_no_utf8_holds() -> None:
    with pytest.raises(TypeError):
        json_rows([{"subject": "bad \ud800 text"}])
