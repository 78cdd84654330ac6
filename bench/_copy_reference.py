"""The reference for batch accept: a PostgreSQL COPY of the same rows a batch send wrote.

After a batch run, the rows it wrote are read back as the superuser (every message created
since a watermark, and the rows of every other table that point at those messages through a
``message_id`` column; of ``events`` only the first per message, the one accepting wrote),
a scratch copy of those tables is made in a schema of its own (``CREATE TABLE ... (LIKE ...
INCLUDING ALL)``: columns, defaults, identity, checks and indexes, no foreign keys and no
row-level security), and the same rows are copied into it with binary COPY, one transaction
per batch of messages with one COPY per table, over a few connections in parallel. The
scratch schema is dropped afterwards.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from _postyard import superuser_connection

SCRATCH = "bench_copy"
CONNECTIONS = 2


@dataclass(slots=True)
class CopyResult:
    messages: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Messages (with all their rows) per second."""
        return self.messages / self.seconds

    def describe(self) -> str:
        return ", ".join(f"{table} {count:,}" for table, count in self.rows.items())


async def _tables(conn: asyncpg.Connection) -> list[str]:
    """``messages`` and every base table of the public schema with a ``message_id``."""
    rows = await conn.fetch(
        "SELECT c.table_name FROM information_schema.columns c "
        "JOIN information_schema.tables t USING (table_schema, table_name) "
        "WHERE c.table_schema = 'public' AND c.column_name = 'message_id' "
        "AND t.table_type = 'BASE TABLE' ORDER BY c.table_name"
    )
    return ["messages", *(r[0] for r in rows if r[0] != "messages")]


async def _rows_of(
    conn: asyncpg.Connection, table: str, ids: Sequence[Any]
) -> tuple[list[str], list[asyncpg.Record]]:
    if table == "messages":
        query = "SELECT * FROM public.messages WHERE id = ANY($1::uuid[])"
    elif table == "events":
        query = (
            "SELECT DISTINCT ON (message_id) * FROM public.events "
            "WHERE message_id = ANY($1::uuid[]) ORDER BY message_id, seq"
        )
    else:
        query = f"SELECT * FROM public.{table} WHERE message_id = ANY($1::uuid[])"
    rows = await conn.fetch(query, list(ids))
    stmt = await conn.prepare(f"SELECT * FROM public.{table} LIMIT 0")
    return [a.name for a in stmt.get_attributes()], rows


async def copy_reference(data_dir: Path, *, since: dt.datetime, per_transaction: int) -> CopyResult:
    """COPY the rows of the messages created since ``since`` into a scratch schema; timed
    from the first COPY to the last commit."""
    conn = await superuser_connection(data_dir)
    result = CopyResult()
    try:
        ids = [
            r[0]
            for r in await conn.fetch(
                "SELECT id FROM public.messages WHERE created_at >= $1 ORDER BY id", since
            )
        ]
        result.messages = len(ids)
        chunks = [ids[i : i + per_transaction] for i in range(0, len(ids), per_transaction)]
        chunk_of = {mid: n for n, part in enumerate(chunks) for mid in part}
        # per chunk: per table, its rows
        work: list[dict[str, list[tuple[Any, ...]]]] = [defaultdict(list) for _ in chunks]
        columns: dict[str, list[str]] = {}
        for table in await _tables(conn):
            names, rows = await _rows_of(conn, table, ids)
            if not rows:  # a table the batch run did not write
                continue
            columns[table] = names
            key = "id" if table == "messages" else "message_id"
            for row in rows:
                work[chunk_of[row[key]]][table].append(tuple(row))
            result.rows[table] = len(rows)
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCRATCH} CASCADE; CREATE SCHEMA {SCRATCH}")
        for table in columns:
            await conn.execute(
                f"CREATE TABLE {SCRATCH}.{table} (LIKE public.{table} INCLUDING ALL)"
            )
        result.seconds = await _copy_all(data_dir, work, columns)
        await conn.execute(f"DROP SCHEMA {SCRATCH} CASCADE")
    finally:
        await conn.close()
    return result


async def _copy_all(
    data_dir: Path,
    work: list[dict[str, list[tuple[Any, ...]]]],
    columns: dict[str, list[str]],
) -> float:
    conns = [await superuser_connection(data_dir) for _ in range(CONNECTIONS)]
    pending = iter(work)

    async def copier(conn: asyncpg.Connection) -> None:
        for chunk in pending:
            async with conn.transaction():
                for table, rows in chunk.items():
                    await conn.copy_records_to_table(
                        table, records=rows, columns=columns[table], schema_name=SCRATCH
                    )

    try:
        started = time.perf_counter()
        await asyncio.gather(*(copier(c) for c in conns))
        return time.perf_counter() - started
    finally:
        for conn in conns:
            await conn.close()
