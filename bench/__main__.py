"""`make bench`: run every benchmark in bench/, one after the other, then write the dated
summary table at the top of docs/performance.md.

    .venv/bin/python bench [--full] [--only NAME ...] [--no-docs]

A benchmark is any ``bench/*.py`` whose name does not start with ``_`` (the convention is in
``_summary.py`` and bench/README.md). Each runs as its own process with ``--full`` when
given, writes its own section of docs/performance.md and hands its headline figures back
through the file named by ``$BENCH_SUMMARY``. Ctrl-C or SIGTERM stops the benchmark that is
running (it stops what it started) and then the run. At the end the run lists any process
it started that is still alive.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from types import FrameType

import _harness as h
from _report import REVISION_VARIABLE
from _summary import SUMMARY_ENV, Figure, read_figures
from _targets import target_of

BENCH_DIR = Path(__file__).resolve().parent
STOP_GUARD_SECONDS = 300.0
# Figures issue 8 asks for that a benchmark of another branch provides once merged.
EXPECTED = {"webhooks": "webhook deliveries/s"}


def discover() -> list[Path]:
    return sorted(p for p in BENCH_DIR.glob("*.py") if not p.name.startswith("_"))


@dataclass(slots=True)
class Outcome:
    name: str
    code: int = 0
    seconds: float = 0.0
    facts: dict[str, str] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)


class Runner:
    """Runs one benchmark at a time; a signal is passed on to it, and stops the run."""

    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = False

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        # Ctrl-C reaches the whole foreground process group already; SIGTERM does not.
        if self.child is not None and self.child.poll() is None and signum == signal.SIGTERM:
            self.child.send_signal(signal.SIGTERM)

    def run(self, path: Path, args: list[str], tmp: Path) -> Outcome:
        outcome = Outcome(path.stem)
        summary = tmp / f"{path.stem}.json"
        # Its temp dirs go under ours, so every process it starts names ours somewhere.
        env = {**os.environ, SUMMARY_ENV: str(summary), "TMPDIR": str(tmp)}
        started = time.perf_counter()
        print(f"\n=== bench/{path.name} {' '.join(args)}", flush=True)
        self.child = subprocess.Popen([sys.executable, str(path), *args], env=env)
        while True:
            try:
                outcome.code = self.child.wait()
                break
            except KeyboardInterrupt:
                self.stopping = True  # the child got the same SIGINT: wait for its clean-up
        self.child = None
        outcome.seconds = time.perf_counter() - started
        outcome.facts, outcome.figures = read_figures(summary)
        return outcome


def _value(figure: Figure) -> str:
    digits = 1 if figure.unit == "ms" else 0
    return f"{figure.value:,.{digits}f} {figure.unit}"


def summary_rows(outcomes: list[Outcome]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for outcome in outcomes:
        for f in outcome.figures:
            ref = "-"
            if f.reference is not None:
                ref = f"{f.reference_label}: {f.reference:,.0f}"
            ratio = "-" if f.ratio is None else f"{f.ratio:.3f}"
            target = target_of(f.key)
            verdict = "-"
            if target is not None:
                met = target.met(f)
                verdict = "n/a" if met is None else "met" if met else f"missed{target.gap(f)}"
            rows.append((
                f"{f.label} (`{outcome.name}`)", _value(f), ref, ratio,
                target.label if target else "-", verdict,
            ))  # fmt: skip
    return rows


def _load(before: float) -> str:
    # The load average just after the run still counts the run's own last benchmark, so
    # other work is judged by the load before and the CPU busy once everything stopped.
    cores = os.cpu_count() or 1
    busy = h.busy_percent()
    text = (
        f"Load average (1 min) {before:.1f} before the run; CPU {busy:.0f}% busy with other "
        "work once it stopped"
    )
    if before > cores or busy > BUSY_SKEW_PERCENT:
        return f"{text}: other work shared the {cores} cores and skewed the figures."
    return f"{text}: a quiet machine."


BUSY_SKEW_PERCENT = 25.0


def render(
    outcomes: list[Outcome], argv: list[str], started: str, load_before: float, revision: str
) -> str:
    facts: dict[str, str] = {}
    for outcome in outcomes:
        facts.update(outcome.facts)
    runs = ", ".join(
        f"{o.name} {o.seconds / 60:.1f} min" + ("" if o.code == 0 else f" (exit {o.code})")
        for o in outcomes
    )
    table = h.markdown_table(
        ("Figure", "Value", "Reference (same run)", "Ratio", "Target", "Met?"),
        summary_rows(outcomes),
    )
    ran = {o.name for o in outcomes}
    missing = "".join(
        f"\nNo `bench/{name}.py` ran, so there is no {what} figure."
        for name, what in EXPECTED.items()
        if name not in ran
    )
    return (
        f"### `make bench` of {started} UTC\n\n"
        f"`python bench {' '.join(argv)}`. Machine: {h.machine_facts()}; Python "
        f"{platform.python_version()}; {facts.get('PostgreSQL', 'PostgreSQL unknown')}; "
        f"Postfix {h.postfix_version()}; Postyard {version('postyard')} (git "
        f"{revision}). {_load(load_before)} Benchmarks: {runs}. "
        f"Sections below give each benchmark's method and full table.\n\n{table}\n{missing}"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--full", action="store_true", help="also the large sizes (1M queued)")
    parser.add_argument(
        "--messages", type=int, help="passed on: the size of every benchmark that has one"
    )
    parser.add_argument("--no-docs", action="store_true", help="leave docs/performance.md alone")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks")
    args = parser.parse_args(argv)
    benchmarks = discover()
    if args.only:
        benchmarks = [p for p in benchmarks if p.stem in args.only]
    passed = [a for a in ("--full", "--no-docs") if getattr(args, a[2:].replace("-", "_"))]
    if args.messages is not None:
        passed += ["--messages", str(args.messages)]
    runner = Runner()
    signal.signal(signal.SIGTERM, runner.on_signal)
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    load_before = os.getloadavg()[0]
    revision = h.git_revision(h.REPOSITORY)  # before the run writes its sections (-dirty)
    os.environ[REVISION_VARIABLE] = revision  # the benchmarks' sections say the same
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="postyard-bench-run-") as tmp:
        Path(tmp).chmod(0o711)  # Postfix's daemons (user postfix) must reach its queue below
        for path in benchmarks:
            outcomes.append(runner.run(path, passed, Path(tmp)))
            if runner.stopping:
                print("stopped: the remaining benchmarks are not run")
                break
        left = h.lasting_leftovers([tmp], children_of=os.getpid())
    text = render(outcomes, argv, started, load_before, revision)
    print("\n" + text)
    if not args.no_docs and not runner.stopping:
        h.replace_section(h.PERFORMANCE_DOC, "summary", text)
        print("updated the summary of docs/performance.md")
    print("processes the run left behind: " + ("\n".join(left) if left else "none"))
    failed = [o.name for o in outcomes if o.code != 0]
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 130 if runner.stopping else 1 if failed or left else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
