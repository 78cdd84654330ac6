"""A lean HTTP/1.1 load client on asyncio streams: closed-loop (as fast as C connections
allow) and open-loop (requests paced at a fixed offered rate)."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from _procs import LOOPBACK

REQUEST_GUARD_SECONDS = 120.0


@dataclass(frozen=True, slots=True)
class HttpTarget:
    port: int
    path: str
    bearer: str

    def request(self, body: bytes) -> bytes:
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {LOOPBACK}:{self.port}\r\n"
            f"Authorization: Bearer {self.bearer}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body


@dataclass(slots=True)
class LoadResult:
    accepted: int = 0
    issued: int = 0
    started: float = 0.0
    finished: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def elapsed(self) -> float:
        return self.finished - self.started


class TooManyErrors(RuntimeError):
    pass


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length: int | None = None
    close = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            close = value.strip().lower() == b"close"
    if length is None:
        msg = "response without Content-Length (chunked answers are not expected here)"
        raise ValueError(msg)
    return status, await reader.readexactly(length), close


async def _connection(
    target: HttpTarget,
    body_of: Callable[[int], bytes],
    result: LoadResult,
    *,
    requests: int,
    max_errors: int,
) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    try:
        while result.issued < requests:
            index = result.issued
            result.issued += 1
            if writer is None:
                reader, writer = await asyncio.open_connection(LOOPBACK, target.port)
            assert reader is not None
            sent = time.perf_counter()
            try:
                async with asyncio.timeout(REQUEST_GUARD_SECONDS):
                    writer.write(target.request(body_of(index)))
                    status, body, close = await read_response(reader)
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                status, body, close = 0, repr(exc).encode(), True
            if status == 200:
                result.accepted += 1
                result.latencies.append(time.perf_counter() - sent)
            else:
                result.issued -= 1  # someone sends it again: the run ends at `requests` accepted
                result.errors[f"{status} {body[:200].decode(errors='replace')}"] += 1
                if sum(result.errors.values()) > max_errors:
                    common = "; ".join(f"{n} x {e}" for e, n in result.errors.most_common(3))
                    msg = f"more than {max_errors} failed requests, most common: {common}"
                    raise TooManyErrors(msg)
            if close:
                writer.close()
                reader = writer = None
    finally:
        if writer is not None:
            writer.close()


async def post_until_accepted(
    target: HttpTarget,
    body_of: Callable[[int], bytes],
    *,
    requests: int,
    concurrency: int,
    max_errors: int,
) -> LoadResult:
    """POST ``body_of(i)`` over ``concurrency`` keep-alive connections until ``requests``
    answers were 200; other answers are counted (and the request sent again)."""
    result = LoadResult(started=time.perf_counter())
    await asyncio.gather(
        *(
            _connection(target, body_of, result, requests=requests, max_errors=max_errors)
            for _ in range(min(concurrency, requests))
        )
    )
    result.finished = time.perf_counter()
    return result


def percentile_ms(samples: Sequence[float], percent: int) -> float:
    """The ``percent``-th percentile of durations in seconds, in milliseconds."""
    if len(samples) < 2:
        return samples[0] * 1000 if samples else float("nan")
    return statistics.quantiles(samples, n=100, method="inclusive")[percent - 1] * 1000


@dataclass(slots=True)
class PacedResult:
    """An open-loop run: requests were due at a fixed rate whatever the answers did."""

    offered_rate: float
    requests: int
    accepted: int = 0
    started: float = 0.0
    finished: float = 0.0
    latencies: list[float] = field(default_factory=list)
    """Per 200: from when the request was due (not when a connection was free) to the whole
    answer, so a server that falls behind shows it (no coordinated omission)."""
    connections: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def achieved_rate(self) -> float:
        return self.accepted / (self.finished - self.started)


async def post_paced(
    target: HttpTarget,
    body_of: Callable[[int], bytes],
    *,
    rate: float,
    requests: int,
    max_connections: int,
) -> PacedResult:
    """Issue request ``i`` at ``start + i / rate`` on an idle keep-alive connection (a new
    one when none is idle, at most ``max_connections`` in flight). Non-200 answers are
    counted, not sent again."""
    result = PacedResult(offered_rate=rate, requests=requests)
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    slots = asyncio.Semaphore(max_connections)

    async def one(index: int, due: float) -> None:
        async with slots:
            if idle:
                reader, writer = idle.pop()
            else:
                reader, writer = await asyncio.open_connection(LOOPBACK, target.port)
                result.connections += 1
            try:
                async with asyncio.timeout(REQUEST_GUARD_SECONDS):
                    writer.write(target.request(body_of(index)))
                    status, body, close = await read_response(reader)
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                status, body, close = 0, repr(exc).encode(), True
            if status == 200:
                result.accepted += 1
                result.latencies.append(time.perf_counter() - due)
            else:
                result.errors[f"{status} {body[:200].decode(errors='replace')}"] += 1
            if close:
                writer.close()
            else:
                idle.append((reader, writer))

    tasks: list[asyncio.Task[None]] = []
    result.started = time.perf_counter()
    try:
        for index in range(requests):
            due = result.started + index / rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(one(index, due)))
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        for _, writer in idle:
            writer.close()
    result.finished = time.perf_counter()
    return result
