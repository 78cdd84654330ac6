"""Webhook benchmark: signed deliveries per second from events written in bulk to a local
receiver, as a ratio of a plain HTTP client posting the same signed bodies to the same
receiver in the same run.

    .venv/bin/python bench/webhooks.py [--messages 20000] [--no-docs]

The receiver is a small HTTP/1.1 server (asyncio + httptools, answers 200 at once) in a
process of its own. The reference is Postyard's own webhook HTTP client (``WebhookSender``)
in another process, signing and posting N bodies with as many requests in flight as one
endpoint gets from the dispatcher: HTTP and signing without the database. Postyard
(`postyard up`, embedded PostgreSQL, a fresh data dir) has one endpoint subscribed to
``email.bounced``; the benchmark inserts N such events in one statement as the PostgreSQL
superuser (the trigger fans them out), wakes the workers and polls until N deliveries
succeeded. The results table goes to stdout and into docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from importlib.metadata import version
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import _harness as h
import asyncpg
import httptools
import uvloop
from _cpu import cpu_seconds, trees

REPOSITORY = Path(__file__).resolve().parent.parent
PERFORMANCE_DOC = REPOSITORY / "docs" / "performance.md"
SCRIPT = str(Path(__file__).resolve())
PER_ENDPOINT = 16  # POSTYARD_WEBHOOKS__CONCURRENCY_PER_ENDPOINT's default
_REPLY = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"
_INSERT = """
INSERT INTO events (id, tenant_id, type, message_id, recipient, data)
SELECT gen_random_uuid(), $1, $2, $3, 'rcpt' || i || '@sink.example',
       jsonb_build_object('reply', '550 5.1.1 <rcpt' || i || '@sink.example>: user unknown',
                          'attempt', 1)
  FROM generate_series(1, $4) AS i
"""


# --- the receiver (its own process) -------------------------------------------------------


class _Receiver(asyncio.Protocol):
    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def on_message_complete(self) -> None:
        assert self._transport is not None
        self._transport.write(_REPLY)


async def _serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Receiver, h.LOOPBACK, port, backlog=1024)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


# --- the reference client (its own process) -----------------------------------------------


async def _reference(port: int, count: int, concurrency: int, body: bytes) -> tuple[float, float]:
    """(Seconds, CPU seconds) to post ``count`` signed bodies."""
    from postyard.delivery.mx import make_resolver  # noqa: PLC0415
    from postyard.webhooks.sender import WebhookSender  # noqa: PLC0415
    from postyard.webhooks.signing import generate_secret, webhook_headers  # noqa: PLC0415
    from postyard.webhooks.ssrf import AddressPolicy  # noqa: PLC0415

    sender = WebhookSender(
        resolver=make_resolver([]),
        policy=AddressPolicy([ip_network("127.0.0.0/8")]),
        max_connections_per_host=concurrency,
    )
    secret, url, left = generate_secret(), f"http://{h.LOOPBACK}:{port}/hook", [count]
    failures = 0

    async def one_lane() -> None:
        nonlocal failures
        while left[0] > 0:
            left[0] -= 1
            headers = webhook_headers([secret], f"msg_{left[0]}", int(time.time()), body)
            result = await sender.post(url, body, headers)
            failures += result.error is not None

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one_lane() for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await sender.aclose()
    if failures:
        msg = f"{failures} reference posts failed"
        raise RuntimeError(msg)
    return elapsed, cpu


# --- the run ------------------------------------------------------------------------------


@dataclass(slots=True)
class Report:
    args: argparse.Namespace
    reference: float = 0.0
    delivered: float = 0.0
    app_cpu_us: float = 0.0  # CPU per delivery: Postyard's processes
    db_cpu_us: float = 0.0  # ... and PostgreSQL's, after the INSERT (claims, records)
    insert_cpu_us: float = 0.0  # PostgreSQL's CPU per event for the INSERT with its fan-out
    reference_cpu_us: float = 0.0  # ... and the reference client's
    insert_plain: float = 0.0
    insert_fanout: float = 0.0
    attempts_failed: int = 0
    postgres: str = "unknown"
    busy_before: float = 0.0
    busy_after: float = 0.0
    body_bytes: int = 0


def _api(port: int, token: str, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        f"http://{h.LOOPBACK}:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=h.START_GUARD_SECONDS) as response:
        return json.load(response)


def _settings() -> dict[str, str]:
    return {
        "POSTYARD_LOG_LEVEL": "WARNING",
        # `up` serves SMTP and MX too: free ports, not the defaults another instance may hold.
        "POSTYARD_SMTP__PORT": str(h.free_port()),
        "POSTYARD_MX__PORT": str(h.free_port()),
        "POSTYARD_HTTP__RATE_LIMIT_PER_SECOND": "0",
        "POSTYARD_WEBHOOKS__ALLOWED_NETWORKS": "127.0.0.0/8",
        # What a run may vary: the webhook settings and how many worker processes `up` runs.
        **{
            k: v
            for k, v in os.environ.items()
            if k.startswith("POSTYARD_WEBHOOKS__") or k == "POSTYARD_DELIVERY__WORKERS"
        },
    }


async def _superuser(data: Path) -> asyncpg.Connection:
    server = h.Postmaster.of(data)
    assert server is not None
    return await asyncpg.connect(
        host=server.socket_dir, port=server.port, user="postgres", database="postyard"
    )


async def _wait_succeeded(conn: asyncpg.Connection, target: int) -> float:
    last, moved = -1, time.monotonic()
    query = "SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'"
    while (count := await conn.fetchval(query)) < target:
        if count != last:
            last, moved = count, time.monotonic()
        elif time.monotonic() - moved > 60:
            rows = await conn.fetch("SELECT status, count(*) FROM webhook_deliveries GROUP BY 1")
            msg = f"webhook delivery stalled at {count}/{target}: {[tuple(r) for r in rows]}"
            raise RuntimeError(msg)
        await asyncio.sleep(0.1)
    return time.perf_counter()


async def measure_postyard(report: Report, work: Path, receiver_port: int) -> None:
    n = report.args.events
    data = work / "data"
    env = h.postyard_env(data, h.free_port(), _settings())
    async with h.postyard_role("up", env, work / "postyard.log") as proc:
        print(f"postyard up is ready (pid {proc.pid}); creating an organization, a key, a hook")
        org = await asyncio.to_thread(h.postyard_cli, ["orgs", "create", "bench"], env)
        key = await asyncio.to_thread(
            h.postyard_cli, ["keys", "create", "--org", "bench", "--name", "bench"], env
        )
        port, token = int(env["POSTYARD_HTTP__PORT"]), key["token"]
        hook = {
            "endpoint": f"http://{h.LOOPBACK}:{receiver_port}/hook",
            "events": ["email.bounced"],
        }
        await asyncio.to_thread(_api, port, token, "/v1/webhooks", hook)
        email = {
            "from": "Bench <b@postyard.example>",
            "to": "r@sink.example",
            "subject": "Hi",
            "text": "Webhook benchmark",
        }
        message = await asyncio.to_thread(_api, port, token, "/v1/emails", email)
        conn = await _superuser(data)
        try:
            report.postgres = (await conn.fetchval("SELECT version()")).partition(" on ")[0]
            args = (org["id"], message["id"], n)
            started = time.perf_counter()
            await conn.execute(_INSERT, org["id"], "domain.updated", message["id"], n)
            report.insert_plain = time.perf_counter() - started
            print(f"inserting {n} email.bounced events in one statement; the dispatcher drains")
            server = h.Postmaster.of(data)
            assert server is not None
            app_pids, db_pids = trees(proc.pid, server.pid)
            app_cpu, db_cpu = cpu_seconds(app_pids), cpu_seconds(db_pids)
            started = time.perf_counter()
            await conn.execute(_INSERT, args[0], "email.bounced", args[1], args[2])
            report.insert_fanout = time.perf_counter() - started
            inserted_cpu = cpu_seconds(db_pids)
            report.insert_cpu_us = (inserted_cpu - db_cpu) / n * 1e6
            await conn.execute("SELECT pg_notify('postyard_deliveries', '')")
            done = await _wait_succeeded(conn, n)
            report.delivered = n / (done - started)
            app_pids, db_pids = trees(proc.pid, server.pid)  # backends may have come and gone
            report.app_cpu_us = (cpu_seconds(app_pids) - app_cpu) / n * 1e6
            # Backends that ended meanwhile drop out of the sum: a slight undercount.
            report.db_cpu_us = (cpu_seconds(db_pids) - inserted_cpu) / n * 1e6
            report.attempts_failed = await conn.fetchval(
                "SELECT count(*) FROM webhook_attempts WHERE error IS NOT NULL"
            )
            body = await conn.fetchval(
                "SELECT length(e.data::text) FROM events e WHERE type = 'email.bounced' LIMIT 1"
            )
            report.body_bytes = int(body) + 300  # the envelope and the message summary
        finally:
            await conn.close()


async def measure(args: argparse.Namespace, receiver_port: int) -> Report:
    report = Report(args)
    with tempfile.TemporaryDirectory(prefix="postyard-bench-") as tmp:
        work = Path(tmp)
        try:
            await measure_postyard(report, work, receiver_port)
        finally:
            h.stop_leftover_postgres(work / "data")
    return report


def reference_run(port: int, events: int, body_bytes: int) -> tuple[float, float]:
    """(Deliveries per second, CPU microseconds per delivery) of the reference client."""
    print(f"reference: WebhookSender posts {events} signed bodies, {PER_ENDPOINT} in flight")
    command = [sys.executable, SCRIPT, "--reference", str(port), str(events), str(PER_ENDPOINT)]
    done = subprocess.run(
        [*command, str(body_bytes)], capture_output=True, text=True, check=True, timeout=600
    )
    elapsed, cpu = json.loads(done.stdout.strip().splitlines()[-1])
    return events / elapsed, cpu / events * 1e6


def _rate(value: float) -> str:
    return f"{value:,.0f} deliveries/s"


def figures(report: Report) -> list[tuple[str, str, str, str]]:
    ref, n = report.reference, report.args.events
    return [
        (f"Reference: WebhookSender -> receiver, {PER_ENDPOINT} in flight", _rate(ref), "-", "1"),
        (
            "Postyard: events inserted -> all delivered and recorded",
            _rate(report.delivered),
            _rate(ref),
            f"{report.delivered / ref:.3f}",
        ),
        (
            f"INSERT of {n:,} events nobody subscribes to",
            f"{report.insert_plain * 1000:,.0f} ms",
            "-",
            "-",
        ),
        (
            f"INSERT of {n:,} events fanned out to one endpoint",
            f"{report.insert_fanout * 1000:,.0f} ms",
            f"{report.insert_plain * 1000:,.0f} ms",
            f"{report.insert_fanout / report.insert_plain:.2f}",
        ),
        (
            "CPU per delivery: Postyard's processes (dispatcher, API idle)",
            f"{report.app_cpu_us:,.0f} us",
            f"{report.reference_cpu_us:,.0f} us",
            f"{report.app_cpu_us / report.reference_cpu_us:.2f}",
        ),
        (
            "CPU per delivery: PostgreSQL after the INSERT (claims, records)",
            f"{report.db_cpu_us:,.0f} us",
            "-",
            "-",
        ),
        (
            "CPU per event: PostgreSQL, the INSERT with its fan-out",
            f"{report.insert_cpu_us:,.0f} us",
            "-",
            "-",
        ),
        (
            "Deliveries/s 2 idle cores allow at that CPU (Postyard + PostgreSQL after INSERT)",
            _rate(2e6 / (report.app_cpu_us + report.db_cpu_us)),
            "-",
            "-",
        ),
        ("Failed attempts (retried)", f"{report.attempts_failed:,}", "-", "-"),
    ]


def render(report: Report) -> str:
    facts = (
        f"Machine: {h.cpu_model()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}; {report.postgres} "
        f"(embedded); Postyard {version('postyard')} (git {h.git_revision(REPOSITORY)}). CPU "
        f"busy with other work: {report.busy_before:.0f}% just before the run, "
        f"{report.busy_after:.0f}% just after."
    )
    table = h.markdown_table(("Figure", "Value", "Reference", "Ratio"), figures(report))
    return (
        f"### Run of {h.today_utc()}\n\n"
        f"`bench/webhooks.py --messages {report.args.events}`: {report.args.events:,} "
        f"`email.bounced` events, one endpoint, bodies of about {report.body_bytes} bytes.\n"
        f"{facts}\n\n{table}\n"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    h.standard_arguments(parser, messages=20_000)  # --messages: events; --full changes nothing
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--reference", nargs=4, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.messages < 1:
        parser.error("--messages must be at least 1")
    args.events = args.messages
    return args


def main() -> None:
    args = parse_args()
    if args.serve is not None:
        uvloop.run(_serve(args.serve))
        return
    if args.reference is not None:
        port, count, concurrency, size = args.reference
        print(json.dumps(uvloop.run(_reference(port, count, concurrency, b"x" * size))))
        return
    busy = h.busy_percent()
    if busy > 10:
        print(f"warning: the CPUs are {busy:.0f}% busy before the run: the figures will be skewed")
    port = h.free_port()
    receiver = subprocess.Popen([sys.executable, SCRIPT, "--serve", str(port)])
    try:
        h.wait_for_port(port, receiver)
        report = uvloop.run(measure(args, port))
        report.reference, report.reference_cpu_us = reference_run(
            port, args.events, report.body_bytes
        )
    finally:
        h.stop_process(receiver, signal.SIGTERM)
    report.busy_before, report.busy_after = busy, h.busy_percent()
    text = render(report)
    print()
    print(text)
    if not args.no_docs:
        h.replace_section(PERFORMANCE_DOC, "webhooks", text)
        print("updated the webhooks section of docs/performance.md")
    h.report_figures(
        "webhooks",
        [
            h.Figure(
                "webhooks.deliveries",
                "Signed webhook deliveries/s (events -> receiver)",
                report.delivered,
                "deliveries/s",
                "WebhookSender alone",
                report.reference,
            ),
            h.Figure(
                "webhooks.cpu_capacity",
                "Webhook deliveries/s 2 idle cores allow at the measured CPU",
                2e6 / (report.app_cpu_us + report.db_cpu_us),
                "deliveries/s",
            ),
        ],
    )


if __name__ == "__main__":
    main()
