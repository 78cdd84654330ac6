"""``--full``: how rate and memory grow with the queue. For each size (10k, 100k and 1M
queued by default): the queue is filled through the batch API with ``postyard api`` alone
(no worker runs, so everything stays queued), then ``postyard up`` delivers it all; the
fill rate, the delivered rate from a full queue and the peak memory of every process are
recorded per size."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _http_load import HttpTarget, post_until_accepted
from _memory import PeakMemory, sample_memory
from _postyard import Ledger, Postmaster, postyard_role

SIZES = (10_000, 100_000, 1_000_000)


@dataclass(frozen=True, slots=True)
class Stage:
    queued: int
    fill_rate: float
    drain_rate: float
    fill_memory: PeakMemory
    """``postyard api`` while it filled the queue."""
    drain_memory: PeakMemory
    """``postyard up`` (API + SMTP, worker) and PostgreSQL while the queue drained."""


async def one_stage(
    env: dict[str, str],
    log: Path,
    token: str,
    *,
    size: int,
    per_request: int,
    body_of: Callable[[int], bytes],
    concurrency: int,
) -> Stage:
    data = Path(env["POSTYARD_DATA_DIR"])
    port = int(env["POSTYARD_HTTP__PORT"])
    requests = size // per_request
    print(f"--full: queueing {size:,} messages through postyard api (no worker)")
    async with postyard_role("api", env, log) as api:
        server = Postmaster.of(data)
        assert server is not None
        fill_memory = PeakMemory(app_pid=api.pid, db_pid=server.pid)
        ledger = await Ledger.open(data)
        try:
            target = await ledger.delivered() + size
        finally:
            await ledger.close()
        sampler = asyncio.create_task(sample_memory(fill_memory))
        try:
            fill = await post_until_accepted(
                HttpTarget(port, "/v1/emails/batch", token),
                body_of,
                requests=requests,
                concurrency=concurrency,
                max_errors=max(100, requests // 20),
            )
        finally:
            sampler.cancel()
    print(f"--full: postyard up delivers {size:,} queued messages")
    async with postyard_role("up", env, log) as up:
        ready = time.perf_counter()
        server = Postmaster.of(data)
        assert server is not None
        drain_memory = PeakMemory(app_pid=up.pid, db_pid=server.pid)
        sampler = asyncio.create_task(sample_memory(drain_memory))
        ledger = await Ledger.open(data)
        try:
            done = await ledger.wait_delivered(target)
        finally:
            sampler.cancel()
            await ledger.close()
    return Stage(
        queued=size,
        fill_rate=size / fill.elapsed,
        drain_rate=size / (done - ready),
        fill_memory=fill_memory,
        drain_memory=drain_memory,
    )
