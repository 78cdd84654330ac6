"""A sampling profile of a process under test with py-spy (installed into this virtualenv
with pip when absent), summarised as a short text file of the hottest functions."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

from _procs import STOP_GUARD_SECONDS

SAMPLES_PER_SECOND = 100


def ensure_py_spy() -> str:
    """The py-spy next to this interpreter, pip-installed the first time."""
    here = Path(sys.executable).parent / "py-spy"
    if not here.exists():
        print("installing py-spy into the virtualenv with pip ...")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "py-spy"],
            check=True,
        )  # fmt: skip
    found = str(here) if here.exists() else shutil.which("py-spy")
    if found is None:
        msg = "py-spy is not installed and pip could not install it"
        raise RuntimeError(msg)
    return found


@contextlib.asynccontextmanager
async def recording(pid: int, raw: Path, log: Path) -> AsyncIterator[None]:
    """Sample ``pid`` (its threads, not its children) while the block runs; collapsed stacks
    go to ``raw``. py-spy writes them when it gets SIGINT."""
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            ensure_py_spy(), "record", "--pid", str(pid), "--format", "raw",
            "--output", str(raw), "--rate", str(SAMPLES_PER_SECOND), "--function",
            "--nonblocking", stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), STOP_GUARD_SECONDS)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def _function(frame: str) -> str:
    """``name (path/to/module.py:12)`` -> ``name (module path)``, shorter paths."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rpartition(":")[0]
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})" if path else name


def summarise(raw: Path, *, title: str, top: int = 25) -> str:
    """Markdown: the functions with the most samples on the CPU themselves (self) and on
    the stack (total), as shares of all samples."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack.split(";")[1:]]  # [0] is the process
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    if samples == 0:
        return f"## {title}\n\nNo samples (py-spy could not attach?).\n"

    def table(counter: Counter[str]) -> str:
        rows = [f"| {n / samples:6.1%} | `{name}` |" for name, n in counter.most_common(top)]
        return "| share | function |\n|---:|---|\n" + "\n".join(rows)

    # Whole-program frames (the CLI, the event loop) are on every stack: only Postyard's own
    # functions below the entry points tell where the time goes.
    ours = Counter({k: v for k, v in total.items() if _ours(k)})
    return (
        f"## {title}\n\n{samples:,} samples at {SAMPLES_PER_SECOND} per second (py-spy, "
        "idle threads left out).\n\n"
        f"### On the CPU itself (self)\n\n{table(own)}\n\n"
        f"### Postyard's functions on the stack (total)\n\n{table(ours)}\n"
    )


def _ours(function: str) -> bool:
    path = function.rpartition(" (")[2]
    return path.startswith("postyard/") and not path.startswith(_ENTRY_POINTS)


_ENTRY_POINTS = ("postyard/__main__", "postyard/cli/")
