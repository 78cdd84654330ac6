"""Delivery benchmark: how fast Postyard accepts email over its API and delivers it, DKIM
signed, to a relay, against the loopback limit, Postfix and a PostgreSQL COPY, all measured
in the same run.

    .venv/bin/python bench/delivery.py [--messages 20000] [--concurrency 64] [--full]

References: smtp-source -> smtp-sink (the loopback limit); a throwaway Postfix relaying to
that smtp-sink, fed by smtp-source (its accept and delivered rates); a COPY of the rows the
batch run wrote. Postyard (`postyard up`, embedded PostgreSQL, a fresh data dir, a verified
From domain with a DKIM key) relays to the same smtp-sink. The table goes to stdout and into
docs/performance.md. What each figure means: bench/README.md. Needs root (Postfix).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import _copy_reference
import _cpu
import _harness as h
import _postfix
import _profile
import _queue_scale
import psutil  # type: ignore[import-untyped]  # no inline types; types-psutil is not locked
import uvloop
from _delivery_report import (
    BATCH,
    MESSAGE_BYTES,
    PACED_RATE,
    SOURCE_SESSIONS,
    Report,
    Run,
    render,
    summary_figures,
)
from _signing_domain import DnsServer, verified_domain

ORG = "bench"
SENDER_DOMAIN = "postyard.example"
UNSIGNED_DOMAIN = "unsigned.example"
PROFILES = h.REPOSITORY / "docs" / "profiles"
STALL_SECONDS = 60.0
PACED_CONNECTIONS = 128
_MARK = "@@N@@"


def _text(size: int) -> str:
    line = "Postyard delivery benchmark: five kilobytes of plain text, one recipient each."
    return "".join(f"{line[:71]}\n" for _ in range(size // 72 + 1))[:size]


def _message_template(domain: str) -> tuple[bytes, bytes]:
    payload = {
        "from": f"Bench <bench@{domain}>",
        "to": f"rcpt{_MARK}@sink.example",
        "subject": "Delivery benchmark",
        "text": _text(MESSAGE_BYTES),
    }
    prefix, _, suffix = json.dumps(payload).encode().partition(_MARK.encode())
    return prefix, suffix


_PREFIX, _SUFFIX = _message_template(SENDER_DOMAIN)
_UNSIGNED = _message_template(UNSIGNED_DOMAIN)


def one_message(index: int) -> bytes:
    return _PREFIX + str(index).encode() + _SUFFIX


def one_batch(index: int) -> bytes:
    first = index * BATCH
    return b"[" + b",".join(one_message(first + k) for k in range(BATCH)) + b"]"


def one_unsigned_batch(index: int) -> bytes:
    """A batch From a domain the organization never added: no key signs it."""
    prefix, suffix = _UNSIGNED
    first = index * BATCH
    return b"[" + b",".join(prefix + b"%d" % (first + k) + suffix for k in range(BATCH)) + b"]"


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
        backlog = ledger.waiting_seen
        done = await watch
    finally:
        watch.cancel()
    return Run(load, messages, done, backlog)


# Process counts may be set for a run (e.g. to compare one API process with several).
PASSED_SETTINGS = ("POSTYARD_HTTP__WORKERS", "POSTYARD_SMTP__WORKERS", "POSTYARD_DELIVERY__WORKERS")


def _settings(sink_port: int, nameserver: str) -> dict[str, str]:
    return {
        **{name: os.environ[name] for name in PASSED_SETTINGS if name in os.environ},
        "POSTYARD_SMTP__PORT": str(h.free_port()),  # `up` serves SMTP too: not on port 587
        "POSTYARD_LOG_LEVEL": "WARNING",
        "POSTYARD_HTTP__RATE_LIMIT_PER_SECOND": "0",
        "POSTYARD_DELIVERY__MODE": "relay",
        "POSTYARD_DELIVERY__RELAY_URL": f"smtp://{h.LOOPBACK}:{sink_port}",
        "POSTYARD_DELIVERY__RELAY_TLS": "none",
        # The From domain is verified against the benchmark's own DNS server, so its mail is
        # signed; the unsigned run sends from a domain that was never added, which the rule
        # that a From domain must be verified would refuse.
        "POSTYARD_DNS__NAMESERVERS": nameserver,
        "POSTYARD_SENDING__REQUIRE_VERIFIED_DOMAIN": "false",
    }


def _role_pid(up_pid: int, role: str) -> int | None:
    """The process of ``postyard up`` (itself or a child) that runs ``role``."""
    with contextlib.suppress(psutil.Error):
        up = psutil.Process(up_pid)
        for proc in [*up.children(recursive=True), up]:
            if h.role_of(proc).split(" (")[0] in {role, f"{role} + SMTP"}:
                return int(proc.pid)
    return None


async def _profiled(
    report: Report, pid: int | None, name: str, work: Path, phase: asyncio.Task[Run]
) -> Run:
    """Run ``phase`` under py-spy attached to ``pid``; the summary goes to ``report``."""
    if pid is None or not report.args.profile:
        return await phase
    raw = work / f"{name}.raw"
    async with _profile.recording(pid, raw, work / "py-spy.log"):
        run = await phase
    if raw.exists():
        report.profiles[name] = raw
    return run


async def measure_postyard(report: Report, work: Path, sink_port: int, sink_pid: int) -> None:
    args = report.args
    data = work / "data"
    async with DnsServer() as dns:
        env = h.postyard_env(data, h.free_port(), _settings(sink_port, dns.nameserver))
        log = work / "postyard.log"
        report.log = log
        async with h.postyard_role("up", env, log) as proc:
            print(f"postyard up is ready (pid {proc.pid}); an organization, a key, a domain")
            await asyncio.to_thread(h.postyard_cli, ["orgs", "create", ORG], env)
            key = await asyncio.to_thread(
                h.postyard_cli, ["keys", "create", "--org", ORG, "--name", "bench"], env
            )
            domain = await verified_domain(dns, env, org=ORG, domain=SENDER_DOMAIN)
            report.signing = ", ".join(
                f"{r['name']}.{SENDER_DOMAIN}"
                for r in domain["records"]
                if "_domainkey" in r["name"]
            )
            await _measure_phases(report, proc.pid, env, key["token"], work, sink_pid)
        if args.full:
            for size in args.full_sizes:
                report.scale.append(
                    await _queue_scale.one_stage(
                        env,
                        log,
                        key["token"],
                        size=size,
                        per_request=BATCH,
                        body_of=one_batch,
                        concurrency=args.concurrency,
                    )
                )


async def _measure_phases(
    report: Report, up_pid: int, env: dict[str, str], token: str, work: Path, sink_pid: int
) -> None:
    args = report.args
    data = Path(env["POSTYARD_DATA_DIR"])
    port = int(env["POSTYARD_HTTP__PORT"])
    server = h.Postmaster.of(data)
    assert server is not None
    report.memory = h.PeakMemory(app_pid=up_pid, db_pid=server.pid)
    ledger = await h.Ledger.open(data)
    sampler = asyncio.create_task(h.sample_memory(report.memory))
    single = h.HttpTarget(port, "/v1/emails", token)
    try:
        report.postgres = await ledger.server_version()
        print(f"POST /v1/emails: {args.messages} messages over {args.concurrency} connections")
        phase = send_and_deliver(
            ledger, single, one_message, messages=args.messages, per_request=1,
            concurrency=args.concurrency,
        )  # fmt: skip
        report.single = await _profiled(
            report, _role_pid(up_pid, "API"), "api-single-send", work, asyncio.create_task(phase)
        )
        paced = min(int(PACED_RATE * args.paced_seconds), args.messages)
        print(f"POST /v1/emails paced at {PACED_RATE:,} per second: {paced} requests")
        before = await ledger.delivered()
        report.paced = await h.post_paced(
            single, one_message, rate=PACED_RATE, requests=paced, max_connections=PACED_CONNECTIONS
        )
        await ledger.wait_delivered(before + report.paced.accepted, stall_seconds=STALL_SECONDS)
        since = await ledger.now()
        print(f"POST /v1/emails/batch: {args.messages} messages, {BATCH} per request")
        phase = send_and_deliver(
            ledger, h.HttpTarget(port, "/v1/emails/batch", token), one_batch,
            messages=args.messages, per_request=BATCH, concurrency=args.concurrency,
        )  # fmt: skip
        report.batch = await _profiled(
            report, _role_pid(up_pid, "worker"), "worker-batch-delivery", work,
            asyncio.create_task(phase),
        )  # fmt: skip
        print("reference: COPY of the rows the batch run wrote, into a scratch schema")
        report.copy = await _copy_reference.copy_reference(data, since=since, per_transaction=BATCH)
        print(f"POST /v1/emails/batch, unsigned: {args.messages} messages From {UNSIGNED_DOMAIN}")
        others = {"smtp-sink": sink_pid}
        cpu_before = _cpu.snapshot(up_pid, server.pid, others)
        report.unsigned = await send_and_deliver(
            ledger, h.HttpTarget(port, "/v1/emails/batch", token), one_unsigned_batch,
            messages=args.messages, per_request=BATCH, concurrency=args.concurrency,
        )  # fmt: skip
        cpu_after = _cpu.snapshot(up_pid, server.pid, others)
        report.unsigned_cpu = _cpu.per_message_ms(cpu_before, cpu_after, args.messages)
    finally:
        sampler.cancel()
        await ledger.close()


async def measure(args: argparse.Namespace) -> Report:
    report = Report(args)
    task = asyncio.current_task()
    assert task is not None
    # SIGTERM cancels the run like Ctrl-C does, so every finally below stops what it started.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with tempfile.TemporaryDirectory(prefix="postyard-bench-") as tmp:
        work = Path(tmp)
        sink_port = h.free_port()
        try:
            with h.smtp_sink(sink_port, work / "smtp-sink.log") as sink:
                print(f"reference: smtp-source -> smtp-sink, {args.messages} messages")
                report.reference = await asyncio.to_thread(
                    h.smtp_source_rate, sink_port, messages=args.messages,
                    sessions=SOURCE_SESSIONS, size=MESSAGE_BYTES,
                )  # fmt: skip
                print(f"reference: smtp-source -> Postfix -> smtp-sink, {args.messages} messages")
                report.postfix = await _postfix.fed_by_smtp_source(
                    work / "postfix", sink_port=sink_port, messages=args.messages,
                    sessions=SOURCE_SESSIONS, size=MESSAGE_BYTES, stall_seconds=STALL_SECONDS,
                )  # fmt: skip
                await measure_postyard(report, work, sink_port, sink.pid)
        finally:
            h.stop_leftover_postgres(work / "data")
            if report.log is not None:
                report.log_problems = h.log_problems(report.log)
            write_profiles(report)
            if left := h.lasting_leftovers([tmp]):
                print("processes still using the temp dir:\n" + "\n".join(left))
    return report


def write_profiles(report: Report) -> None:
    """Summaries of the raw py-spy profiles, into docs/profiles/ unless --no-docs."""
    for name, raw in list(report.profiles.items()):
        text = _profile.summarise(raw, title=f"py-spy profile: {name}")
        if report.args.no_docs:
            report.profile_text[name] = text
            continue
        PROFILES.mkdir(parents=True, exist_ok=True)
        (PROFILES / f"{name}.md").write_text(text, encoding="utf-8")
        report.profile_text[name] = text


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--concurrency", type=int, default=64, help="HTTP connections")
    parser.add_argument(
        "--paced-seconds", type=float, default=5.0,
        help=f"length of the open-loop run at {PACED_RATE:,} requests per second "
        "(at most --messages requests)",
    )  # fmt: skip
    parser.add_argument(
        "--full-sizes", type=lambda v: [int(x) for x in v.split(",")],
        default=list(_queue_scale.SIZES), help="queue sizes of --full, comma-separated",
    )  # fmt: skip
    parser.add_argument("--no-profile", dest="profile", action="store_false", help="no py-spy")
    h.standard_arguments(parser, messages=20_000)
    args = parser.parse_args(argv)
    if args.messages < BATCH or args.messages % BATCH:
        parser.error(f"--messages must be a multiple of {BATCH}")
    if any(size < BATCH or size % BATCH for size in args.full_sizes):
        parser.error(f"--full-sizes must be multiples of {BATCH}")
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    h.ensure_postfix_tools()
    _postfix.check_privileges()
    if args.profile:
        _profile.ensure_py_spy()
    busy = h.busy_percent()
    if busy > 10:
        print(f"warning: the CPUs are {busy:.0f}% busy before the run: the figures will be skewed")
    try:
        report = uvloop.run(measure(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: what the benchmark started is stopped")
        raise SystemExit(130) from None
    report.busy_before, report.busy_after = busy, h.busy_percent()
    text = render(report)
    print()
    print(text)
    for error, count in report.errors.most_common(10):
        print(f"{count} x {error}")
    if report.log_problems:
        print("Postyard logged:")
    for problem, count in report.log_problems.most_common(10):
        print(f"{count} x {problem}")
    if not args.no_docs:
        h.replace_section(h.PERFORMANCE_DOC, "delivery", text)
        print("updated the delivery section of docs/performance.md")
    h.report_figures("delivery", summary_figures(report), {"PostgreSQL": report.postgres})


if __name__ == "__main__":
    main(sys.argv[1:])
