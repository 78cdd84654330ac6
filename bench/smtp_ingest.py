"""SMTP ingest benchmark: how fast Postyard's SMTP relay accepts mail, against a throwaway
Postfix queueing the same mail to disk and against smtp-sink, all in the same run.

    .venv/bin/python bench/smtp_ingest.py [--messages 20000] [--sessions 20] [--no-docs]

One client drives every target: a lean asyncio SMTP client in this process (smtp-source
cannot authenticate), S sessions, one command per round trip, 5 KB messages. Targets, in
order: smtp-sink (the raw loopback limit), a Postfix instance configured in a temp dir that
relays to that smtp-sink, and `postyard up` (fresh data dir, embedded PostgreSQL) whose
worker relays to the same smtp-sink. The table goes to stdout and into docs/performance.md.
What each figure means: bench/README.md. Needs root (the Postfix reference).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import _harness as h
import _postfix
import _smtp_client as client
import uvloop

MESSAGE_BYTES = 5120
SENDER = "bench@postyard.example"
POSTYARD_CONNECTIONS_PER_IP = 20  # POSTYARD_SMTP__MAX_CONNECTIONS_PER_IP's default
REPOSITORY = Path(__file__).resolve().parent.parent
PERFORMANCE_DOC = REPOSITORY / "docs" / "performance.md"
STALL_SECONDS = 60.0


def recipient_of(index: int) -> str:
    return f"rcpt{index}@sink.example"


def _body() -> bytes:
    line = b"Postyard SMTP ingest benchmark: five kilobytes of plain text per message.\r\n"
    return line * (MESSAGE_BYTES // len(line) + 1)


_BODY = _body()


def message_of(index: int) -> bytes:
    """Message ``index``: headers and text, MESSAGE_BYTES in all, lines ending in CRLF."""
    head = (
        f"From: Bench <{SENDER}>\r\nTo: <{recipient_of(index)}>\r\n"
        f"Subject: SMTP ingest benchmark {index}\r\n"
        f"Message-ID: <{index}.smtp-ingest@bench.example>\r\n"
        "Date: Tue, 24 Nov 2026 00:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    ).encode()
    size = MESSAGE_BYTES - len(head)
    body = _BODY[: _BODY.rfind(b"\r\n", 0, size - 2) + 2]  # whole lines, 3 bytes or more short
    return head + body + b"x" * (size - len(body) - 2) + b"\r\n"  # and a last line to fill


@dataclass(slots=True)
class Target:
    """One SMTP server under load: what it accepted, and when all of it was delivered."""

    load: client.SmtpLoad
    delivered_at: float | None = None
    backlog_at_accept_end: int | None = None

    @property
    def delivered_rate(self) -> float | None:
        if self.delivered_at is None:
            return None
        return self.load.accepted / (self.delivered_at - self.load.started)


@dataclass(slots=True)
class Report:
    args: argparse.Namespace
    raw: Target | None = None
    smtp_source: float | None = None
    postfix: Target | None = None
    postyard: Target | None = None
    postgres: str = "unknown"
    busy_before: float = 0.0
    busy_after: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def errors(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for target in (self.raw, self.postfix, self.postyard):
            if target is not None:
                total += target.load.errors
        return total


async def load(report: Report, target: client.SmtpTarget) -> client.SmtpLoad:
    args = report.args
    return await client.send_until_accepted(
        target,
        message_of,
        messages=args.messages,
        sessions=args.sessions,
        max_errors=max(100, args.messages // 20),
    )


async def measure_raw(report: Report, sink_port: int) -> None:
    args = report.args
    print(f"raw limit: bench client -> smtp-sink, {args.messages} messages")
    sink = client.SmtpTarget(sink_port, SENDER, recipient_of)
    report.raw = Target(await load(report, sink))
    print("for scale: smtp-source -> smtp-sink")
    report.smtp_source = await asyncio.to_thread(
        h.smtp_source_rate,
        sink_port,
        messages=args.messages,
        sessions=args.sessions,
        size=MESSAGE_BYTES,
    )


async def measure_postfix(report: Report, work: Path, sink_port: int) -> None:
    port = h.free_port()
    with _postfix.postfix_instance(work / "postfix", smtpd_port=port, relay_port=sink_port) as pf:
        print(f"Postfix reference: {report.args.messages} messages to its smtpd on {port}")
        target = Target(await load(report, client.SmtpTarget(port, SENDER, recipient_of)))
        target.backlog_at_accept_end = pf.queued()
        target.delivered_at = await _postfix.wait_queue_empty(pf, STALL_SECONDS)
        report.postfix = target
        # postlogd may write the last lines a moment after the queue empties.
        for _ in range(50):
            if (sent := pf.sent_in_log()) >= target.load.accepted:
                break
            await asyncio.sleep(0.2)
        if sent != target.load.accepted or pf.deferred():
            report.notes.append(
                f"Postfix logged {sent} of {target.load.accepted} as sent; "
                f"{pf.deferred()} deferred:\n{pf.log_tail()}"
            )


def _settings(sink_port: int, smtp_port: int, sessions: int) -> dict[str, str]:
    settings = {
        "POSTYARD_LOG_LEVEL": "WARNING",
        "POSTYARD_HTTP__RATE_LIMIT_PER_SECOND": "0",
        "POSTYARD_SMTP__PORT": str(smtp_port),
        "POSTYARD_DELIVERY__MODE": "relay",
        "POSTYARD_DELIVERY__RELAY_URL": f"smtp://{h.LOOPBACK}:{sink_port}",
        "POSTYARD_DELIVERY__RELAY_TLS": "none",
        # Relay mode requires a verified From domain by default; the benchmark has no DNS.
        "POSTYARD_SENDING__REQUIRE_VERIFIED_DOMAIN": "false",
    }
    # Process counts and the SMTP group commit may be set for a run (e.g. to compare one SMTP
    # process with several, or a window with none).
    for name in (
        "POSTYARD_HTTP__WORKERS",
        "POSTYARD_SMTP__WORKERS",
        "POSTYARD_SMTP__GROUP_COMMIT_WINDOW",
        "POSTYARD_SMTP__GROUP_COMMIT_MAX_MESSAGES",
    ):
        if name in os.environ:
            settings[name] = os.environ[name]
    if sessions > POSTYARD_CONNECTIONS_PER_IP:  # else the extra sessions would wait for a slot
        settings["POSTYARD_SMTP__MAX_CONNECTIONS_PER_IP"] = str(sessions)
    return settings


async def measure_postyard(report: Report, work: Path, sink_port: int) -> None:
    args = report.args
    data = work / "data"
    smtp_port = h.free_port()
    env = h.postyard_env(data, h.free_port(), _settings(sink_port, smtp_port, args.sessions))
    async with h.postyard_role("up", env, work / "postyard.log") as proc:
        print(f"postyard up is ready (pid {proc.pid}); creating an organization and a key")
        await asyncio.to_thread(h.postyard_cli, ["orgs", "create", "bench"], env)
        key = await asyncio.to_thread(
            h.postyard_cli, ["keys", "create", "--org", "bench", "--name", "bench"], env
        )
        await client.wait_listening(smtp_port, h.START_GUARD_SECONDS)
        ledger = await h.Ledger.open(data)
        try:
            report.postgres = await ledger.server_version()
            print(f"Postyard: {args.messages} messages to its SMTP relay on {smtp_port}")
            watch = asyncio.create_task(ledger.wait_delivered(args.messages, stall_seconds=60))
            try:
                target = client.SmtpTarget(smtp_port, SENDER, recipient_of, key["token"])
                result = Target(await load(report, target))
                # The watcher owns the connection: read its last poll (at most 100 ms old).
                result.backlog_at_accept_end = ledger.waiting_seen
                result.delivered_at = await watch
            finally:
                watch.cancel()
            report.postyard = result
        finally:
            await ledger.close()


async def measure(args: argparse.Namespace) -> Report:
    report = Report(args)
    task = asyncio.current_task()
    assert task is not None
    # SIGTERM cancels the run like Ctrl-C does, so every finally below stops what it started.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with tempfile.TemporaryDirectory(prefix="postyard-bench-smtp-") as tmp:
        work = Path(tmp)
        sink_port = h.free_port()
        try:
            with h.smtp_sink(sink_port, work / "smtp-sink.log"):
                await measure_raw(report, sink_port)
                await measure_postfix(report, work, sink_port)
                await measure_postyard(report, work, sink_port)
        finally:
            h.stop_leftover_postgres(work / "data")
            if left := _postfix.processes_using(tmp):
                print("processes still using the temp dir:\n" + "\n".join(left))
    return report


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} msgs/s"


def _ratio(value: float | None, reference: float | None) -> str:
    return "-" if value is None or not reference else f"{value / reference:.3f}"


def _latency(target: Target | None) -> str:
    if target is None:
        return "-"
    p50, p99 = (h.percentile_ms(target.load.latencies, p) for p in (50, 99))
    return f"{p50:,.1f} / {p99:,.1f} ms"


def _backlog(target: Target | None) -> str:
    if target is None or target.backlog_at_accept_end is None:
        return "-"
    return f"{target.backlog_at_accept_end:,} msgs"


def figures(report: Report) -> list[tuple[str, str, str, str]]:
    """Rows of (figure, value, reference, ratio)."""
    s = report.args.sessions
    raw = report.raw.load.rate if report.raw else None
    pf, py = report.postfix, report.postyard
    pf_accept, py_accept = (t.load.rate if t else None for t in (pf, py))
    pf_deliver, py_deliver = (t.delivered_rate if t else None for t in (pf, py))
    return [
        (f"Raw loopback limit: bench client -> smtp-sink, {s} sessions", _rate(raw), "-", "1"),
        ("For scale: smtp-source -> smtp-sink (C client, same sessions and size)",
         _rate(report.smtp_source), _rate(raw), _ratio(report.smtp_source, raw)),
        ("Postfix accept rate, queueing to disk (bench client -> smtpd)", _rate(pf_accept),
         _rate(raw), _ratio(pf_accept, raw)),
        ("Postfix delivered rate to smtp-sink (first connect -> queue empty)",
         _rate(pf_deliver), _rate(raw), _ratio(pf_deliver, raw)),
        ("**Postyard accept rate, SMTP relay** (AUTH PLAIN once per session)",
         _rate(py_accept), f"Postfix {_rate(pf_accept)}", _ratio(py_accept, pf_accept)),
        ("Postyard accept rate against the raw limit", _rate(py_accept), _rate(raw),
         _ratio(py_accept, raw)),
        ("Postyard end-to-end delivered rate (first connect -> all delivered)",
         _rate(py_deliver), f"Postfix {_rate(pf_deliver)}", _ratio(py_deliver, pf_deliver)),
        ("Accept latency p50 / p99 (MAIL -> reply to the data)", f"Postyard {_latency(py)}",
         f"Postfix {_latency(pf)}", "-"),
        ("Not yet delivered when the last message was accepted", f"Postyard {_backlog(py)}",
         f"Postfix {_backlog(pf)}", "-"),
        ("Sessions opened (Postyard: a new one after LIMITS MAILMAX)",
         f"Postyard {py.load.sessions if py else '-'}",
         f"Postfix {pf.load.sessions if pf else '-'}", "-"),
        ("Greetings refused (421) / messages refused and sent again, all targets",
         f"{sum(t.load.refused_greetings for t in (report.raw, pf, py) if t)} / "
         f"{sum(report.errors.values())}", "-", "-"),
    ]  # fmt: skip


def render(report: Report) -> str:
    args = report.args
    command = f"bench/smtp_ingest.py --messages {args.messages} --sessions {args.sessions}"
    facts = (
        f"Machine: {h.cpu_model()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}; {report.postgres} "
        f"(embedded); Postyard {version('postyard')} (git {h.git_revision(REPOSITORY)}); "
        f"Postfix {h.postfix_version()} (smtpd, smtp-sink, smtp-source). CPU busy with other "
        f"work: {report.busy_before:.0f}% just before the run, {report.busy_after:.0f}% just "
        "after."
    )
    table = h.markdown_table(("Figure", "Value", "Reference", "Ratio"), figures(report))
    return (
        f"### Run of {h.today_utc()}\n\n"
        f"`{command}`: {args.messages:,} messages of {MESSAGE_BYTES:,} bytes, one recipient "
        f"each, over {args.sessions} concurrent sessions of the benchmark's SMTP client "
        f"against each target.\n{facts}\n\n{table}\n"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sessions", type=int, default=20, help="concurrent SMTP sessions")
    h.standard_arguments(parser, messages=20_000)  # --full changes nothing here
    args = parser.parse_args(argv)
    if args.messages < 1:
        parser.error("--messages must be at least 1")
    if args.sessions < 1:
        parser.error("--sessions must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    h.ensure_postfix_tools()
    _postfix.check_privileges()
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
    for note in report.notes:
        print(note)
    if not args.no_docs:
        h.replace_section(PERFORMANCE_DOC, "smtp-ingest", text)
        print("updated the smtp-ingest section of docs/performance.md")
    h.report_figures("smtp_ingest", summary_figures(report), {"PostgreSQL": report.postgres})


def summary_figures(report: Report) -> list[h.Figure]:
    """The headline figures for the summary table of `make bench`."""
    pf, py = report.postfix, report.postyard
    if py is None:
        return []
    label = "Postfix, same client"
    out = [
        h.Figure("smtp_ingest.smtp_accept", "SMTP relay accept (AUTH PLAIN)", py.load.rate,
                 "msgs/s", f"{label}, accept", pf.load.rate if pf else None),
    ]  # fmt: skip
    if py.delivered_rate is not None:
        out.append(h.Figure("smtp_ingest.smtp_delivered", "SMTP relay end-to-end delivered",
                            py.delivered_rate, "msgs/s", f"{label}, delivered",
                            pf.delivered_rate if pf else None))  # fmt: skip
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
