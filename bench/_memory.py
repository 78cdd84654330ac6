"""Peak memory of the processes under test, sampled while a benchmark runs."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field

import psutil  # type: ignore[import-untyped]  # no inline types; types-psutil is not locked

_ROLES = {"up": "API + SMTP", "api": "API", "worker": "worker", "smtp": "SMTP"}


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def role_of(proc: psutil.Process) -> str:
    """``postyard ROLE`` for Postyard's processes (``python -m postyard ROLE``), else the
    process name."""
    with contextlib.suppress(psutil.Error):
        args = proc.cmdline()
        if "postyard" in args:
            after = args[args.index("postyard") + 1 :]
            if after and after[0] in _ROLES:
                return f"{_ROLES[after[0]]} (postyard {after[0]})"
        return str(proc.name())
    return "gone"


@dataclass(slots=True)
class PeakMemory:
    """Peak memory of a process tree (``app``), per role and in all, and of the database
    server's processes."""

    app_pid: int
    db_pid: int
    app_rss: int = 0
    db_rss: int = 0
    db_pss: int = 0
    db_max_rss: int = 0
    """The largest RSS of any one PostgreSQL process."""
    roles: Counter[str] = field(default_factory=Counter)
    """Peak RSS of one process per role (the largest of the role's processes: the target is
    per process, and `up` runs several processes of some roles)."""

    def sample(self) -> None:
        db = _tree(self.db_pid)
        db_pids = {p.pid for p in db}
        now: Counter[str] = Counter()
        app_rss = db_rss = db_pss = 0
        for proc in _tree(self.app_pid):
            if proc.pid not in db_pids:
                with contextlib.suppress(psutil.Error):
                    rss = int(proc.memory_info().rss)
                    app_rss += rss
                    role = role_of(proc)
                    now[role] = max(now[role], rss)
        for proc in db:
            with contextlib.suppress(psutil.Error):
                # PSS shares each page among the processes mapping it: summed RSS counts the
                # shared buffers once per backend.
                full = proc.memory_full_info()
                db_rss += int(full.rss)
                self.db_max_rss = max(self.db_max_rss, int(full.rss))
                db_pss += int(full.pss)
        self.app_rss = max(self.app_rss, app_rss)
        for role, rss in now.items():
            self.roles[role] = max(self.roles[role], rss)
        self.db_rss = max(self.db_rss, db_rss)
        self.db_pss = max(self.db_pss, db_pss)

    def retarget(self, app_pid: int, db_pid: int) -> None:
        """Follow new processes (a restart); the peaks so far are kept."""
        self.app_pid, self.db_pid = app_pid, db_pid


async def sample_memory(peak: PeakMemory, interval: float = 0.5) -> None:
    """Sample until cancelled."""
    while True:
        peak.sample()
        await asyncio.sleep(interval)
