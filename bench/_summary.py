"""The convention between `make bench` (``bench/__main__.py``) and each benchmark.

A benchmark is any ``bench/*.py`` whose name does not start with ``_``. It runs as a script
(``python bench/NAME.py``) and takes ``--full`` (its large size, or nothing),
``--messages N`` (its size; ignored where there is no message count) and ``--no-docs``
(``standard_arguments``). It writes its own section of docs/performance.md and hands its
headline figures to the runner with ``report_figures``: a JSON file at the path in
``$BENCH_SUMMARY`` (nothing is written when the variable is unset, i.e. when the benchmark
runs on its own). The runner puts every figure it gets into the summary table, next to the
issue 8 target of its key (``_targets.py``) when there is one.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SUMMARY_ENV = "BENCH_SUMMARY"
REPOSITORY = Path(__file__).resolve().parent.parent
PERFORMANCE_DOC = REPOSITORY / "docs" / "performance.md"


@dataclass(frozen=True, slots=True)
class Figure:
    """One headline figure: ``value`` in ``unit``, with the reference measured in the same
    run (when there is one) that its ratio is taken against."""

    key: str
    """Stable id, ``benchmark.figure``: the targets are looked up by it."""
    label: str
    value: float
    unit: str
    reference_label: str | None = None
    reference: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.reference is None or self.reference == 0:
            return None
        return self.value / self.reference

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Figure:
        return cls(
            key=str(data["key"]),
            label=str(data["label"]),
            value=float(data["value"]),
            unit=str(data["unit"]),
            reference_label=data.get("reference_label"),
            reference=None if data.get("reference") is None else float(data["reference"]),
        )


def standard_arguments(parser: argparse.ArgumentParser, *, messages: int | None) -> None:
    """The options every benchmark takes; ``messages`` is the default of ``--messages``
    (None: the benchmark has no message count and ignores the option)."""
    parser.add_argument(
        "--messages",
        type=int,
        default=messages,
        help="messages per run" if messages else "ignored: no message count here",
    )
    parser.add_argument(
        "--full", action="store_true", help="also run the large size (1,000,000 queued)"
    )
    parser.add_argument(
        "--no-docs", action="store_true", help="print only; leave docs/performance.md alone"
    )


def report_figures(
    benchmark: str, figures: Sequence[Figure], facts: Mapping[str, str] | None = None
) -> None:
    """Hand the figures (and facts such as versions) to `make bench`, when it runs us."""
    path = os.environ.get(SUMMARY_ENV)
    if not path:
        return
    payload = {
        "benchmark": benchmark,
        "facts": dict(facts or {}),
        "figures": [asdict(f) for f in figures],
    }
    Path(path).write_text(json.dumps(payload, indent=1), encoding="utf-8")


def read_figures(path: Path) -> tuple[dict[str, str], list[Figure]]:
    """What a benchmark reported (nothing when it wrote no file)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, []
    facts = {str(k): str(v) for k, v in data.get("facts", {}).items()}
    return facts, [Figure.from_json(f) for f in data.get("figures", [])]
