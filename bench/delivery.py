"""Delivery benchmark: how fast Postyard accepts email over its API and delivers it to a
relay, as ratios of the raw SMTP loopback limit measured in the same run.

    .venv/bin/python bench/delivery.py [--messages 20000] [--concurrency 64] [--full]

The reference is Postfix's smtp-source sending the same number of 5 KB messages to smtp-sink
over reused sessions. Postyard (`postyard up`, embedded PostgreSQL, a fresh data dir) relays
to that same smtp-sink. The results table goes to stdout and into docs/performance.md. What
each figure means: bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import _harness as h
import uvloop

MESSAGE_BYTES = 5120
SOURCE_SESSIONS = 20
BATCH = 100
FULL_BACKLOG = 100_000
REPOSITORY = Path(__file__).resolve().parent.parent
PERFORMANCE_DOC = REPOSITORY / "docs" / "performance.md"
_MARK = "@@N@@"


def _text(size: int) -> str:
    line = "Postyard delivery benchmark: five kilobytes of plain text, one recipient each."
    return "".join(f"{line[:71]}\n" for _ in range(size // 72 + 1))[:size]


def _message_template() -> tuple[bytes, bytes]:
    payload = {
        "from": "Bench <bench@postyard.example>",
        "to": f"rcpt{_MARK}@sink.example",
        "subject": "Delivery benchmark",
        "text": _text(MESSAGE_BYTES),
    }
    prefix, _, suffix = json.dumps(payload).encode().partition(_MARK.encode())
    return prefix, suffix


_PREFIX, _SUFFIX = _message_template()


def one_message(index: int) -> bytes:
    return _PREFIX + str(index).encode() + _SUFFIX


def one_batch(index: int) -> bytes:
    first = index * BATCH
    return b"[" + b",".join(one_message(first + k) for k in range(BATCH)) + b"]"


@dataclass(frozen=True, slots=True)
class Run:
    """One load: what the API accepted, and when the ledger showed it all delivered."""

    load: h.LoadResult
    messages: int
    delivered_at: float
    backlog_at_accept_end: int

    @property
    def delivered_rate(self) -> float:
        return self.messages / (self.delivered_at - self.load.started)

    @property
    def drain_rate(self) -> float | None:
        """Deliveries per second once the API fell silent, for what was still queued."""
        seconds = self.delivered_at - self.load.finished
        # Under a second the 100 ms poll makes the figure noise.
        return self.backlog_at_accept_end / seconds if seconds >= 1.0 else None

    @property
    def accept_rate(self) -> float:
        return self.messages / self.load.elapsed


async def send_and_deliver(
    ledger: h.Ledger,
    target: h.HttpTarget,
    body_of: Callable[[int], bytes],
    *,
    messages: int,
    per_request: int,
    concurrency: int,
) -> Run:
    """Send ``messages`` while watching the ledger; the delivered rate runs from the first
    POST to the poll that saw them all delivered."""
    before = await ledger.delivered()
    watch = asyncio.create_task(ledger.wait_delivered(before + messages))
    try:
        requests = messages // per_request
        load = await h.post_until_accepted(
            target,
            body_of,
            requests=requests,
            concurrency=concurrency,
            max_errors=max(100, requests // 20),
        )
        # The watcher owns the connection now: read its last poll (at most 100 ms old).
        backlog = before + messages - ledger.latest
        done = await watch
    finally:
        watch.cancel()
    return Run(load, messages, done, backlog)


@dataclass(slots=True)
class Report:
    args: argparse.Namespace
    reference: float = 0.0
    single: Run | None = None
    batch: Run | None = None
    fill_rate: float | None = None
    drain_rate: float | None = None
    memory: h.PeakMemory | None = None
    postgres: str = "unknown"
    busy_before: float = 0.0
    busy_after: float = 0.0

    @property
    def errors(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for run in (self.single, self.batch):
            if run is not None:
                total += run.load.errors
        return total


# Process counts may be set for a run (e.g. to compare one API process with several).
PASSED_SETTINGS = ("POSTYARD_HTTP__WORKERS", "POSTYARD_SMTP__WORKERS")


def _settings(sink_port: int) -> dict[str, str]:
    return {
        **{name: os.environ[name] for name in PASSED_SETTINGS if name in os.environ},
        "POSTYARD_LOG_LEVEL": "WARNING",
        "POSTYARD_HTTP__RATE_LIMIT_PER_SECOND": "0",
        "POSTYARD_DELIVERY__MODE": "relay",
        "POSTYARD_DELIVERY__RELAY_URL": f"smtp://{h.LOOPBACK}:{sink_port}",
        "POSTYARD_DELIVERY__RELAY_TLS": "none",
        # Relay mode requires a verified From domain by default; the benchmark has no DNS.
        "POSTYARD_SENDING__REQUIRE_VERIFIED_DOMAIN": "false",
    }


async def measure_postyard(report: Report, work: Path, sink_port: int) -> None:
    args = report.args
    data = work / "data"
    env = h.postyard_env(data, h.free_port(), _settings(sink_port))
    log = work / "postyard.log"
    async with h.postyard_role("up", env, log) as proc:
        print(f"postyard up is ready (pid {proc.pid}); creating an organization and a key")
        await asyncio.to_thread(h.postyard_cli, ["orgs", "create", "bench"], env)
        key = await asyncio.to_thread(
            h.postyard_cli, ["keys", "create", "--org", "bench", "--name", "bench"], env
        )
        port = int(env["POSTYARD_HTTP__PORT"])
        server = h.Postmaster.of(data)
        assert server is not None
        report.memory = h.PeakMemory(app_pid=proc.pid, db_pid=server.pid)
        ledger = await h.Ledger.open(data)
        sampler = asyncio.create_task(h.sample_memory(report.memory))
        try:
            report.postgres = await ledger.server_version()
            print(f"POST /v1/emails: {args.messages} messages over {args.concurrency} connections")
            report.single = await send_and_deliver(
                ledger,
                h.HttpTarget(port, "/v1/emails", key["token"]),
                one_message,
                messages=args.messages,
                per_request=1,
                concurrency=args.concurrency,
            )
            print(f"POST /v1/emails/batch: {args.messages} messages, {BATCH} per request")
            report.batch = await send_and_deliver(
                ledger,
                h.HttpTarget(port, "/v1/emails/batch", key["token"]),
                one_batch,
                messages=args.messages,
                per_request=BATCH,
                concurrency=args.concurrency,
            )
        finally:
            sampler.cancel()
            await ledger.close()
    if args.full:
        await measure_full(report, env, log, key["token"])


async def measure_full(report: Report, env: dict[str, str], log: Path, token: str) -> None:
    """Queue FULL_BACKLOG messages with the API role alone (no worker), then time `up`
    delivering them from a full queue."""
    data = Path(env["POSTYARD_DATA_DIR"])
    port = int(env["POSTYARD_HTTP__PORT"])
    print(f"--full: queueing {FULL_BACKLOG} messages through postyard api (no worker)")
    async with h.postyard_role("api", env, log):
        fill = await h.post_until_accepted(
            h.HttpTarget(port, "/v1/emails/batch", token),
            one_batch,
            requests=FULL_BACKLOG // BATCH,
            concurrency=report.args.concurrency,
            max_errors=FULL_BACKLOG // BATCH // 20,
        )
    report.fill_rate = FULL_BACKLOG / fill.elapsed
    print("--full: postyard up delivers the queue")
    async with h.postyard_role("up", env, log) as proc:
        ledger = await h.Ledger.open(data)
        server = h.Postmaster.of(data)
        assert server is not None and report.memory is not None
        report.memory.app_pid, report.memory.db_pid = proc.pid, server.pid
        sampler = asyncio.create_task(h.sample_memory(report.memory))
        try:
            ready, delivered = time.perf_counter(), await ledger.delivered()
            done = await ledger.wait_delivered(2 * report.args.messages + FULL_BACKLOG)
            report.drain_rate = (2 * report.args.messages + FULL_BACKLOG - delivered) / (
                done - ready
            )
        finally:
            sampler.cancel()
            await ledger.close()


async def measure(args: argparse.Namespace) -> Report:
    report = Report(args)
    with tempfile.TemporaryDirectory(prefix="postyard-bench-") as tmp:
        work = Path(tmp)
        sink_port = h.free_port()
        try:
            with h.smtp_sink(sink_port, work / "smtp-sink.log"):
                print(f"reference: smtp-source -> smtp-sink, {args.messages} messages")
                report.reference = await asyncio.to_thread(
                    h.smtp_source_rate,
                    sink_port,
                    messages=args.messages,
                    sessions=SOURCE_SESSIONS,
                    size=MESSAGE_BYTES,
                )
                await measure_postyard(report, work, sink_port)
        finally:
            h.stop_leftover_postgres(work / "data")
    return report


def _rate(value: float) -> str:
    return f"{value:,.0f} msgs/s"


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.3f}"


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


def _latency(run: Run) -> str:
    p50, p99 = (h.percentile_ms(run.load.latencies, p) for p in (50, 99))
    return f"{p50:,.1f} / {p99:,.1f} ms"


def figures(report: Report) -> list[tuple[str, str, str, str]]:
    """Rows of (figure, value, reference, ratio)."""
    ref = report.reference
    c = report.args.concurrency
    rows = [("Raw SMTP loopback limit (smtp-source -> smtp-sink)", _rate(ref), "-", "1")]
    if (single := report.single) is not None:
        rows += [
            (f"API accept rate, POST /v1/emails, {c} connections", _rate(single.accept_rate),
             _rate(ref), _ratio(single.accept_rate, ref)),
            ("Accept latency p50 / p99", _latency(single), "-", "-"),
            ("End-to-end delivered rate (first POST -> all delivered)",
             _rate(single.delivered_rate), _rate(ref), _ratio(single.delivered_rate, ref)),
            ("Not yet delivered when the last accept returned",
             f"{single.backlog_at_accept_end:,} msgs", "-", "-"),
        ]  # fmt: skip
        if (drain := single.drain_rate) is not None:
            rows.append(("Delivered rate of that backlog once the API was idle", _rate(drain),
                         _rate(ref), _ratio(drain, ref)))  # fmt: skip
    if (batch := report.batch) is not None:
        rows += [
            (f"API accept rate, POST /v1/emails/batch ({BATCH} per request)",
             _rate(batch.accept_rate), _rate(ref), _ratio(batch.accept_rate, ref)),
            ("Batch request latency p50 / p99", _latency(batch), "-", "-"),
            ("End-to-end delivered rate, batch run", _rate(batch.delivered_rate), _rate(ref),
             _ratio(batch.delivered_rate, ref)),
        ]  # fmt: skip
    if report.fill_rate is not None and report.drain_rate is not None:
        rows += [
            (f"--full: batch accept rate, API role alone, {FULL_BACKLOG:,} msgs",
             _rate(report.fill_rate), _rate(ref), _ratio(report.fill_rate, ref)),
            (f"--full: delivered rate from {FULL_BACKLOG:,} queued", _rate(report.drain_rate),
             _rate(ref), _ratio(report.drain_rate, ref)),
        ]  # fmt: skip
    if (memory := report.memory) is not None:
        rows += [
            ("Peak RSS, postyard up (API and worker)", _mib(memory.app_rss), "-", "-"),
            ("Peak memory, embedded PostgreSQL (all processes): RSS sum / PSS sum",
             f"{_mib(memory.db_rss)} / {_mib(memory.db_pss)}", "-", "-"),
        ]  # fmt: skip
    rows.append(("Non-200 answers (sent again)", f"{sum(report.errors.values()):,}", "-", "-"))
    return rows


def render(report: Report) -> str:
    args = report.args
    command = f"bench/delivery.py --messages {args.messages} --concurrency {args.concurrency}"
    facts = (
        f"Machine: {h.cpu_model()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}; {report.postgres} "
        f"(embedded); Postyard {version('postyard')} (git {h.git_revision(REPOSITORY)}); "
        f"Postfix {h.postfix_version()} (smtp-source, smtp-sink). CPU busy with other work: "
        f"{report.busy_before:.0f}% just before the run, {report.busy_after:.0f}% just after."
    )
    table = h.markdown_table(("Figure", "Value", "Reference", "Ratio"), figures(report))
    return (
        f"### Run of {h.today_utc()}\n\n"
        f"`{command}{' --full' if args.full else ''}`: {args.messages:,} messages of "
        f"{MESSAGE_BYTES:,} bytes of text, one recipient each; the reference sends as many "
        f"with {SOURCE_SESSIONS} reused sessions.\n{facts}\n\n{table}\n"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=20_000, help="messages per run")
    parser.add_argument("--concurrency", type=int, default=64, help="HTTP connections")
    parser.add_argument(
        "--full", action="store_true", help=f"also deliver from {FULL_BACKLOG:,} queued messages"
    )
    parser.add_argument(
        "--no-docs", action="store_true", help="print only; leave docs/performance.md alone"
    )
    args = parser.parse_args()
    if args.messages < BATCH or args.messages % BATCH:
        parser.error(f"--messages must be a multiple of {BATCH}")
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    h.ensure_postfix_tools()
    busy = h.busy_percent()
    if busy > 10:
        print(f"warning: the CPUs are {busy:.0f}% busy before the run: the figures will be skewed")
    report = uvloop.run(measure(args))
    report.busy_before, report.busy_after = busy, h.busy_percent()
    text = render(report)
    print()
    print(text)
    for error, count in report.errors.most_common(10):
        print(f"{count} x {error}")
    if not args.no_docs:
        h.replace_section(PERFORMANCE_DOC, "delivery", text)
        print("updated the delivery section of docs/performance.md")


if __name__ == "__main__":
    main()
