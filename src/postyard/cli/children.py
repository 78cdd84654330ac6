"""The child processes ``postyard up`` supervises: the worker processes (delivery and
webhooks; each is told its share of the per-process limits, ``postyard.worker.Share``), and
extra API and SMTP processes that listen on the parent's ports (SO_REUSEPORT, the kernel
spreads new connections over them).

Each child runs in a session of its own, so a Ctrl-C in the terminal reaches only the
parent, which then stops the children with SIGTERM and waits for them. A child also asks the
kernel for SIGTERM when the parent dies (Linux ``PR_SET_PDEATHSIG``), so even a parent killed
with SIGKILL leaves no orphans holding the ports and the embedded PostgreSQL. A child that
exits on its own stops everything: better a visible stop than half a platform.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from postyard.smtpd import SmtpRole

log = logging.getLogger(__name__)

SUPERVISOR_OPTION = "--supervisor-pid"
SHARE_OPTION = "--share"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def stop_with_supervisor(supervisor_pid: int, stop: asyncio.Event) -> None:
    """In a child: have the kernel send SIGTERM (handled like any stop) when the supervisor
    dies, and stop at once if it is already gone (it died before the request was made)."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("cannot ask to be stopped with the supervisor", extra={"pid": os.getpid()})
    if os.getppid() != supervisor_pid:
        stop.set()


class Children:
    """Started children and the tasks that watch them; ``aclose`` stops and reaps them all."""

    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop
        self._procs: list[tuple[str, asyncio.subprocess.Process]] = []
        self.watchers: list[asyncio.Task[None]] = []

    async def start(
        self, command: str, env: Mapping[str, str] | None = None, args: Sequence[str] = ()
    ) -> None:
        """Run ``postyard COMMAND [ARGS]`` with this environment plus ``env``."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "postyard",
            command,
            SUPERVISOR_OPTION,
            str(os.getpid()),
            *args,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self._procs.append((command, proc))
        self.watchers.append(asyncio.create_task(self._watch(command, proc)))

    async def _watch(self, command: str, proc: asyncio.subprocess.Process) -> None:
        waiter = asyncio.create_task(proc.wait())
        stopper = asyncio.create_task(self._stop.wait())
        await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if waiter.done() and not self._stop.is_set():
            log.error("a child process exited", extra={"role": command, "code": proc.returncode})
            self._stop.set()
        elif not waiter.done():
            waiter.cancel()

    async def aclose(self) -> None:
        for _, proc in self._procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        await asyncio.gather(*(proc.wait() for _, proc in self._procs))


@dataclass(frozen=True, slots=True)
class Processes:
    """What ``postyard up`` starts besides itself: how many worker processes, and how many
    API and SMTP processes in all (this one included) share the ports."""

    http: int
    smtp: int
    workers: int

    @property
    def total(self) -> int:
        """Processes in all: this one (an API and an SMTP process), the other API and SMTP
        processes, and the workers."""
        return 1 + (self.http - 1) + (self.smtp - 1) + self.workers


async def start_workers(children: Children, processes: Processes) -> None:
    """Start the worker processes, each with its share (``INDEX/COUNT``) of the limits."""
    for index in range(processes.workers):
        await children.start("worker", args=[SHARE_OPTION, f"{index}/{processes.workers}"])


async def start_servers(
    children: Children, processes: Processes, sock: socket.socket, smtp_role: SmtpRole
) -> list[str]:
    """Start the API and SMTP processes beyond this one, on this one's ports."""
    for _ in range(processes.http - 1):
        await children.start("api", {"POSTYARD_HTTP__PORT": str(sock.getsockname()[1])})
    smtp_env = {"POSTYARD_SMTP__PORT": str(smtp_role.port)}
    if smtp_role.implicit_tls_port is not None:
        smtp_env["POSTYARD_SMTP__IMPLICIT_TLS_PORT"] = str(smtp_role.implicit_tls_port)
    for _ in range(processes.smtp - 1):
        await children.start("smtp", smtp_env)
    workers = "1 worker" if processes.workers == 1 else f"{processes.workers} workers"
    return [
        "  Delivery:  in the worker processes (the first prints its own line)",
        f"  Processes: {processes.http} API and {processes.smtp} SMTP sharing the ports, "
        f"{workers} (delivery and webhooks)",
    ]
