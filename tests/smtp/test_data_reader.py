"""The DATA reader against a stream fed byte strings: the same end of data, unstuffing and
limits as aiosmtpd's line-by-line reader, whatever the stream's limit cuts."""

from __future__ import annotations

import asyncio
import random

import pytest

from postyard.smtp.data import TOO_LONG, TOO_MUCH, DataRead, read_data

LINE_LIMIT = 1001


async def _read(
    wire: bytes, *, limit: int = LINE_LIMIT, size_limit: int | None = None
) -> tuple[DataRead, bytes]:
    """What ``read_data`` returns for ``wire``, and what it left unread in the stream."""
    reader = asyncio.StreamReader(limit=limit)
    reader.feed_data(wire)
    reader.feed_eof()
    got = await read_data(reader, size_limit=size_limit, line_limit=LINE_LIMIT)
    return got, await reader.read()


@pytest.mark.parametrize("limit", [5, 64, LINE_LIMIT, 1 << 16])
async def test_the_message_ends_at_the_dot_line_and_leaves_the_next_command(limit: int) -> None:
    body = b"Subject: x\r\n\r\n" + b"A line that ends with a dot.\r\n" * 40 + b"last\r\n"
    got, rest = await _read(body + b".\r\nQUIT\r\n", limit=limit)
    assert got == DataRead(body)
    assert rest == b"QUIT\r\n"


@pytest.mark.parametrize("limit", [5, LINE_LIMIT])
async def test_dot_stuffed_lines_lose_one_dot(limit: int) -> None:
    wire = b"..starts with a dot\r\nmiddle\r\n...two\r\n..\r\n.\r\n"
    got, _ = await _read(wire, limit=limit)
    assert got.content == b".starts with a dot\r\nmiddle\r\n..two\r\n.\r\n"


async def test_an_empty_message_is_just_the_dot_line() -> None:
    got, rest = await _read(b".\r\nNOOP\r\n")
    assert got == DataRead(b"")
    assert rest == b"NOOP\r\n"


@pytest.mark.parametrize(
    "smuggled",
    [b"\n.\n", b"\n.\r\n", b"\r.\n", b"\r\n.\n", b"\r\n.\r", b"\r.\r\n", b"\n.\r", b"\r.\r"],
)
async def test_no_other_end_of_data_variant_ends_the_message(smuggled: bytes) -> None:
    wire = b"first" + smuggled + b"MAIL FROM:<x@y.z>\r\n.\r\n"
    got, rest = await _read(wire, limit=8)
    assert rest == b""  # one message: the smuggled command stayed inside it
    assert b"MAIL FROM:<x@y.z>" in got.content
    assert got.content == _line_by_line(wire)


def _line_by_line(wire: bytes) -> bytes:
    """aiosmtpd's reading, as the reference: CRLF-ended lines up to the line ".", each
    losing a leading dot."""
    lines = []
    for line in wire.split(b"\r\n")[:-1]:
        if line == b".":
            break
        lines.append((line[1:] if line.startswith(b".") else line) + b"\r\n")
    return b"".join(lines)


async def test_random_wires_read_as_aiosmtpd_reads_them() -> None:
    rng = random.Random(2026)
    atoms = [b"a", b".", b"\r", b"\n", b"\r\n", b"..", b"\r\n.", b".\r\n", b"x" * 7]
    for _ in range(3000):
        body = b"".join(rng.choice(atoms) for _ in range(rng.randint(0, 12)))
        wire = body + b"\r\n.\r\nNEXT\r\n"
        expected = _line_by_line(wire)
        for limit in (4, 16, LINE_LIMIT):
            got, rest = await _read(wire, limit=limit)
            assert got.content == expected, (wire, limit)
            assert rest.endswith(b"NEXT\r\n")


async def test_a_line_over_the_limit_is_refused_after_the_data() -> None:
    ok_line = b"x" * (LINE_LIMIT - 2) + b"\r\n"
    got, _ = await _read(ok_line + b".\r\n")
    assert got.refusal is None
    got, rest = await _read(b"x" * (LINE_LIMIT - 1) + b"\r\n.\r\nRSET\r\n")
    assert got == DataRead(b"", TOO_LONG)
    assert rest == b"RSET\r\n"


async def test_too_much_data_is_read_to_the_end_and_refused() -> None:
    got, rest = await _read(b"y" * 50 + b"\r\n" + b"z" * 500 + b"\r\n.\r\nRSET\r\n", size_limit=100)
    assert got == DataRead(b"", TOO_MUCH)
    assert rest == b"RSET\r\n"
    exact = b"a" * 98 + b"\r\n"  # 100 bytes: at the limit, not over it
    got, _ = await _read(exact + b".\r\n", size_limit=100)
    assert got == DataRead(exact)


async def test_a_connection_closed_mid_data_is_an_error() -> None:
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await _read(b"no end in sight\r\n" * 3)
