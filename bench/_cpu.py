"""CPU time of process trees (user + system, psutil), for the CPU-per-message figures."""

from __future__ import annotations

import os

import psutil  # type: ignore[import-untyped]  # no inline types; types-psutil is not locked
from _memory import role_of


def cpu_seconds(pids: set[int]) -> float:
    """User + system CPU seconds of these processes so far (children included by the
    caller: it lists every pid)."""
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def tree(pid: int) -> set[int]:
    try:
        root = psutil.Process(pid)
        return {root.pid, *(child.pid for child in root.children(recursive=True))}
    except psutil.Error:
        return set()


def trees(app_pid: int, db_pid: int) -> tuple[set[int], set[int]]:
    """(Postyard's processes, PostgreSQL's processes) as they are now."""
    db = tree(db_pid)
    return tree(app_pid) - db, db


Snapshot = dict[int, tuple[str, float]]
"""pid -> (group, CPU seconds so far)."""


def snapshot(app_pid: int, db_pid: int, others: dict[str, int]) -> Snapshot:
    """CPU so far of every process that takes part: Postyard's by role, PostgreSQL's as one
    group, ``others`` (group -> pid) and this process (the load client, the ledger poll and
    the memory sampler)."""
    app, db = trees(app_pid, db_pid)
    groups = dict.fromkeys(db, "PostgreSQL")
    for pid in app:
        try:
            groups[pid] = role_of(psutil.Process(pid))
        except psutil.Error:
            continue
    groups.update({pid: group for group, pid in others.items()})
    groups[os.getpid()] = "benchmark process"
    return {pid: (group, cpu_seconds({pid})) for pid, group in groups.items()}


def per_message_ms(before: Snapshot, after: Snapshot, messages: int) -> dict[str, float]:
    """CPU milliseconds per message by group between two snapshots. A process that started
    in between counts from zero; one that ended drops out (PostgreSQL backends rarely do)."""
    out: dict[str, float] = {}
    for pid, (group, cpu) in after.items():
        spent = cpu - before.get(pid, (group, 0.0))[1]
        out[group] = out.get(group, 0.0) + spent * 1000 / messages
    return out
