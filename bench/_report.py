"""Reporting: machine facts, markdown tables, the section of docs/performance.md a benchmark
owns, and the summary figures a benchmark hands to `make bench`."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # no inline types; types-psutil is not locked


def busy_percent(seconds: float = 2.0) -> float:
    """How busy the machine's CPUs are over ``seconds`` (all of them, 0-100): taken when the
    benchmark runs nothing, it shows load from elsewhere that skews the figures."""
    return float(psutil.cpu_percent(interval=seconds))


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


REVISION_VARIABLE = "POSTYARD_BENCH_REVISION"
"""Set by ``make bench`` (``bench/__main__.py``) for the benchmarks it runs: the revision it
read before any of them wrote its section of docs/performance.md, which makes the tree
dirty for the ones after it."""


def git_revision(repo: Path) -> str:
    """``git describe --always --dirty`` of ``repo`` (``-dirty``: uncommitted changes ran),
    or the revision ``make bench`` read before its run (``REVISION_VARIABLE``)."""
    given = os.environ.get(REVISION_VARIABLE)
    if given:
        return given
    git = shutil.which("git")
    if git is None:
        return "unknown"
    done = subprocess.run(
        [git, "-C", str(repo), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def today_utc() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def replace_section(path: Path, name: str, body: str) -> None:
    """Put ``body`` between this benchmark's markers in ``path`` (appended the first time);
    everything outside the markers stays as it is."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text(encoding="utf-8")
    head, found, rest = text.partition(start)
    if found and end in rest:
        text = head + block + rest.partition(end)[2]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def memory_total() -> str:
    return f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM"


def machine_facts() -> str:
    """CPU model, cores, memory and kernel of this machine, in one line."""
    return (
        f"{cpu_model()}, {psutil.cpu_count()} cores, {memory_total()}, {platform.system()} "
        f"{platform.release()}"
    )
