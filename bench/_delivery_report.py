"""What bench/delivery.py measured, as its table in docs/performance.md and as the headline
figures it hands to `make bench`."""

from __future__ import annotations

import argparse
import platform
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import _harness as h
from _copy_reference import CopyResult
from _postfix import PeerRates
from _queue_scale import Stage

MESSAGE_BYTES = 5120
SOURCE_SESSIONS = 20
BATCH = 100
PACED_RATE = 1000


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
    def accept_rate(self) -> float:
        return self.messages / self.load.elapsed


@dataclass(slots=True)
class Report:
    args: argparse.Namespace
    reference: float = 0.0
    postfix: PeerRates | None = None
    single: Run | None = None
    paced: h.PacedResult | None = None
    batch: Run | None = None
    copy: CopyResult | None = None
    unsigned: Run | None = None
    """Batch sends From a domain without DKIM keys, after the COPY reference."""
    unsigned_cpu: dict[str, float] = field(default_factory=dict)
    """CPU milliseconds per message of the unsigned run, by process group."""
    scale: list[Stage] = field(default_factory=list)
    memory: h.PeakMemory | None = None
    postgres: str = "unknown"
    signing: str = "-"
    log: Path | None = None
    log_problems: Counter[str] = field(default_factory=Counter)
    profiles: dict[str, Path] = field(default_factory=dict)
    profile_text: dict[str, str] = field(default_factory=dict)
    busy_before: float = 0.0
    busy_after: float = 0.0

    @property
    def errors(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for run in (self.single, self.batch, self.unsigned):
            if run is not None:
                total += run.load.errors
        if self.paced is not None:
            total += self.paced.errors
        return total


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} msgs/s"


def _ratio(value: float | None, reference: float | None) -> str:
    return "-" if value is None or not reference else f"{value / reference:.3f}"


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


def _ms(samples: list[float]) -> str:
    p50, p99 = (h.percentile_ms(samples, p) for p in (50, 99))
    return f"{p50:,.1f} / {p99:,.1f} ms"


def figures(report: Report) -> list[tuple[str, str, str, str]]:
    """Rows of (figure, value, reference, ratio)."""
    ref = report.reference
    c = report.args.concurrency
    rows = [("Raw SMTP loopback limit (smtp-source -> smtp-sink)", _rate(ref), "-", "1")]
    pf = report.postfix
    pf_deliver = pf.delivered if pf else None
    if pf is not None:
        rows += [
            ("Postfix accept rate (smtp-source -> Postfix smtpd, queue files fsynced)",
             _rate(pf.accept), _rate(ref), _ratio(pf.accept, ref)),
            ("Postfix delivered rate (smtp-source -> Postfix -> smtp-sink, until queue empty)",
             _rate(pf.delivered), _rate(ref), _ratio(pf.delivered, ref)),
        ]  # fmt: skip
    if (single := report.single) is not None:
        rows += [
            (f"API accept rate, POST /v1/emails, {c} connections (closed loop)",
             _rate(single.accept_rate), _rate(ref), _ratio(single.accept_rate, ref)),
            ("Accept latency p50 / p99 at that load", _ms(single.load.latencies), "-", "-"),
            ("End-to-end delivered rate, DKIM-signed, single sends (first POST -> all delivered)",
             _rate(single.delivered_rate), f"Postfix {_rate(pf_deliver)}",
             _ratio(single.delivered_rate, pf_deliver)),
        ]  # fmt: skip
    if (paced := report.paced) is not None:
        rows += [
            (f"Accept latency p50 / p99, POST /v1/emails offered at {PACED_RATE:,}/s "
             f"(open loop, {paced.requests:,} requests)", _ms(paced.latencies), "-", "-"),
            ("Rate achieved at that offered load", f"{paced.achieved_rate:,.0f} req/s",
             f"{PACED_RATE:,} req/s", _ratio(paced.achieved_rate, PACED_RATE)),
        ]  # fmt: skip
    copy_rate = report.copy.rate if report.copy else None
    if (batch := report.batch) is not None:
        rows += [
            (f"API accept rate, POST /v1/emails/batch ({BATCH} per request)",
             _rate(batch.accept_rate), f"COPY {_rate(copy_rate)}",
             _ratio(batch.accept_rate, copy_rate)),
            ("Batch request latency p50 / p99", _ms(batch.load.latencies), "-", "-"),
            ("End-to-end delivered rate, DKIM-signed, batch sends",
             _rate(batch.delivered_rate), f"Postfix {_rate(pf_deliver)}",
             _ratio(batch.delivered_rate, pf_deliver)),
        ]  # fmt: skip
    if (unsigned := report.unsigned) is not None:
        rows += [
            ("API accept rate, batch sends From a domain without DKIM keys",
             _rate(unsigned.accept_rate), f"COPY {_rate(copy_rate)}",
             _ratio(unsigned.accept_rate, copy_rate)),
            ("End-to-end delivered rate, not signed, batch sends",
             _rate(unsigned.delivered_rate), f"Postfix {_rate(pf_deliver)}",
             _ratio(unsigned.delivered_rate, pf_deliver)),
        ]  # fmt: skip
    if cpu := report.unsigned_cpu:
        total = sum(cpu.values())
        parts = "; ".join(f"{group} {ms:.2f}" for group, ms in sorted(cpu.items()))
        rows += [
            ("CPU per message of that run, ms, by process (user + system)",
             f"{parts}; all {total:.2f}", "-", "-"),
            ("Messages/s two cores allow at that CPU", _rate(2000 / total) if total else "-",
             "-", "-"),
        ]  # fmt: skip
    if report.copy is not None:
        rows.append((
            f"Reference: COPY of the batch run's rows ({report.copy.describe()}), "
            f"{BATCH} messages per transaction", _rate(report.copy.rate), _rate(ref),
            _ratio(report.copy.rate, ref),
        ))  # fmt: skip
    for stage in report.scale:
        n = f"{stage.queued:,}"
        mem = stage.drain_memory
        rows += [
            (f"--full, {n} queued: batch accept rate (postyard api alone)",
             _rate(stage.fill_rate), f"COPY {_rate(copy_rate)}",
             _ratio(stage.fill_rate, copy_rate)),
            (f"--full, {n} queued: delivered rate from the full queue", _rate(stage.drain_rate),
             f"Postfix {_rate(pf_deliver)}", _ratio(stage.drain_rate, pf_deliver)),
            (f"--full, {n} queued: peak RSS per process", _roles(stage.fill_memory, mem), "-",
             "-"),
        ]  # fmt: skip
    if (memory := report.memory) is not None:
        rows.append(("Peak RSS per process (default size)", _roles(memory, None), "-", "-"))
    rows.append(("Non-200 answers (closed loop: sent again; paced: counted)",
                 f"{sum(report.errors.values()):,}", "-", "-"))  # fmt: skip
    return rows


def _roles(memory: h.PeakMemory, then: h.PeakMemory | None) -> str:
    """Peak RSS per role of ``memory`` (and of ``then``, a later phase); PostgreSQL's of the
    last phase."""
    parts = [f"{role} {_mib(rss)}" for role, rss in sorted(memory.roles.items())]
    source = then or memory
    if then is not None:
        parts += [f"{role} {_mib(rss)}" for role, rss in sorted(then.roles.items())]
    parts.append(
        f"PostgreSQL largest process {_mib(source.db_max_rss)}, all: RSS "
        f"{_mib(source.db_rss)} / PSS {_mib(source.db_pss)}"
    )
    return "; ".join(parts)


def render(report: Report) -> str:
    args = report.args
    command = (
        f"bench/delivery.py --messages {args.messages} --concurrency {args.concurrency} "
        f"--paced-seconds {args.paced_seconds:g}"
    )
    if args.full:
        command += f" --full --full-sizes {','.join(str(s) for s in args.full_sizes)}"
    dkim = sum(n for problem, n in report.log_problems.items() if "dkim" in problem.lower())
    facts = (
        f"Machine: {h.machine_facts()}; Python {platform.python_version()}; "
        f"{report.postgres} (embedded); Postyard {version('postyard')} "
        f"(git {h.git_revision(h.REPOSITORY)}); Postfix {h.postfix_version()}. CPU busy with "
        f"other work: {report.busy_before:.0f}% just before the run, {report.busy_after:.0f}% "
        f"just after. DKIM: every message of the other rows signed for {report.signing}; the "
        '"not signed" rows send From a domain without keys; log lines of the run that are '
        f"warnings or errors: {sum(report.log_problems.values()):,}, of which mention "
        f"DKIM (a signing failure would): {dkim}."
    )
    table = h.markdown_table(("Figure", "Value", "Reference", "Ratio"), figures(report))
    problems = "".join(
        f"\n- {count:,} x {problem}" for problem, count in report.log_problems.most_common(5)
    )
    if problems:
        problems = f"\nMost frequent warnings and errors in Postyard's log:{problems}\n"
    profiles = "".join(
        f"\nProfile `{name}`: [docs/profiles/{name}.md](profiles/{name}.md)."
        for name in report.profile_text
    )
    return (
        f"### Run of {h.today_utc()}\n\n"
        f"`{command}`: {args.messages:,} messages of {MESSAGE_BYTES:,} bytes of text, one "
        f"recipient each; the references send as many with smtp-source over "
        f"{SOURCE_SESSIONS} reused sessions.\n{facts}\n\n{table}\n{problems}{profiles}\n"
    )


def summary_figures(report: Report) -> list[h.Figure]:
    """The headline figures for the summary table of `make bench`."""
    out: list[h.Figure] = []
    ref, loop = report.reference, "loopback limit"
    pf = report.postfix
    if ref:
        out.append(h.Figure("delivery.loopback", "Loopback limit: smtp-source -> smtp-sink",
                            ref, "msgs/s"))  # fmt: skip
    if pf is not None:
        out += [
            h.Figure("delivery.postfix_accept", "Postfix accept (fed by smtp-source)",
                     pf.accept, "msgs/s", loop, ref),
            h.Figure("delivery.postfix_delivered", "Postfix delivered to smtp-sink",
                     pf.delivered, "msgs/s", loop, ref),
        ]  # fmt: skip
    pf_label, pf_rate = "Postfix delivered", pf.delivered if pf else None
    if report.single is not None:
        out += [
            h.Figure("delivery.api_single", "API accept, single sends (max)",
                     report.single.accept_rate, "req/s", loop, ref),
            h.Figure("delivery.e2e_single", "End-to-end delivered, DKIM on, single sends",
                     report.single.delivered_rate, "msgs/s", pf_label, pf_rate),
        ]  # fmt: skip
    if (paced := report.paced) is not None and paced.latencies:
        out += [
            h.Figure("delivery.paced_p50", f"API single p50 at {PACED_RATE:,} req/s offered",
                     h.percentile_ms(paced.latencies, 50), "ms"),
            h.Figure("delivery.paced_p99", f"API single p99 at {PACED_RATE:,} req/s offered",
                     h.percentile_ms(paced.latencies, 99), "ms"),
        ]  # fmt: skip
    copy = report.copy.rate if report.copy else None
    if report.batch is not None:
        out += [
            h.Figure("delivery.api_batch", f"API accept, batch of {BATCH}",
                     report.batch.accept_rate, "msgs/s", "COPY of the same rows", copy),
            h.Figure("delivery.e2e_batch", "End-to-end delivered, DKIM on, batch sends",
                     report.batch.delivered_rate, "msgs/s", pf_label, pf_rate),
        ]  # fmt: skip
    if report.unsigned is not None:
        out.append(h.Figure(
            "delivery.e2e_batch_unsigned", "End-to-end delivered, not signed, batch sends",
            report.unsigned.delivered_rate, "msgs/s", pf_label, pf_rate,
        ))  # fmt: skip
    if report.memory is not None:
        out += [
            h.Figure(f"delivery.rss.{role}", f"Peak RSS, {role}", rss / 2**20, "MiB")
            for role, rss in sorted(report.memory.roles.items())
        ]
        out.append(h.Figure("delivery.rss.postgres", "Peak RSS, largest PostgreSQL process",
                            report.memory.db_max_rss / 2**20, "MiB"))  # fmt: skip
    for stage in report.scale:
        n = f"{stage.queued:,}"
        out += [
            h.Figure(f"delivery.full.{stage.queued}.fill", f"{n} queued: batch accept",
                     stage.fill_rate, "msgs/s", "COPY of the same rows", copy),
            h.Figure(f"delivery.full.{stage.queued}.drain", f"{n} queued: delivered rate",
                     stage.drain_rate, "msgs/s", pf_label, pf_rate),
        ]  # fmt: skip
        peaks = {**stage.fill_memory.roles, **stage.drain_memory.roles}
        peaks["largest PostgreSQL process"] = max(
            stage.fill_memory.db_max_rss, stage.drain_memory.db_max_rss
        )
        out += [
            h.Figure(f"delivery.full.{stage.queued}.rss.{role}", f"{n} queued: peak RSS, {role}",
                     rss / 2**20, "MiB")
            for role, rss in sorted(peaks.items())
        ]  # fmt: skip
    return out
