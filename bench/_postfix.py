"""A throwaway Postfix instance for a benchmark reference: its own configuration, queue and
data directories under a temporary directory, one smtpd on a loopback port, everything
relayed to one host and port, a log file instead of syslog. Started with
``postfix -c DIR start`` and stopped with ``postfix -c DIR stop`` (and its processes waited
for); it needs root and the ``postfix`` user and ``postdrop`` group of Debian's package.

Postfix's processes do not name the directory on their command lines (the master passes it
on in MAIL_CONFIG): ``processes_using`` also looks at their environments.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import pwd
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import _harness as h
import psutil  # type: ignore[import-untyped]  # no inline types; types-psutil is not locked

MAIL_OWNER = "postfix"
SETGID_GROUP = "postdrop"
# The services a relay-only instance uses; the smtpd line is added with its port. Columns:
# service, type, private, unprivileged, chroot, wakeup, process limit, command.
_SERVICES = """\
pickup     unix  n - n 60    1 pickup
cleanup    unix  n - n -     0 cleanup
qmgr       unix  n - n 300   1 qmgr
rewrite    unix  - - n -     - trivial-rewrite
bounce     unix  - - n -     0 bounce
defer      unix  - - n -     0 bounce
trace      unix  - - n -     0 bounce
verify     unix  - - n -     1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -     - proxymap
smtp       unix  - - n -     - smtp
relay      unix  - - n -     - smtp
showq      unix  n - n -     - showq
error      unix  - - n -     - error
retry      unix  - - n -     - error
discard    unix  - - n -     - discard
anvil      unix  - - n -     1 anvil
scache     unix  - - n -     1 scache
postlog    unix-dgram n - n - 1 postlogd
"""
# Where messages wait: the incoming, active, deferred and hold queues and the maildrop.
_QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")


@dataclass(frozen=True, slots=True)
class PostfixInstance:
    root: Path
    smtpd_port: int

    @property
    def config_dir(self) -> Path:
        return self.root / "etc"

    @property
    def queue_dir(self) -> Path:
        return self.root / "spool"

    @property
    def log_file(self) -> Path:
        return self.root / "maillog"

    def queued(self) -> int:
        """Messages in the queues right now (one queue file each)."""
        return sum(
            len(files) for queue in _QUEUES for _, _, files in os.walk(self.queue_dir / queue)
        )

    def deferred(self) -> int:
        return sum(len(files) for _, _, files in os.walk(self.queue_dir / "deferred"))

    def sent_in_log(self) -> int:
        """Deliveries the log reports as sent."""
        try:
            return self.log_file.read_bytes().count(b" status=sent ")
        except FileNotFoundError:
            return 0

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def master_pid(self) -> int | None:
        try:
            return int((self.queue_dir / "pid" / "master.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def main_cf(self, relay_port: int) -> dict[str, str]:
        return {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.root / "lib"),
            "mail_owner": MAIL_OWNER,
            "setgid_group": SETGID_GROUP,
            "myhostname": "reference.bench.example",
            "mydestination": "",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "relayhost": f"[{h.LOOPBACK}]:{relay_port}",
            # By default smtpd waits up to 1 s before each message while arrivals outrun
            # deliveries: the accept rate would be the delivery rate. Off, it is the rate of
            # queueing to disk (Postyard has no such brake).
            "in_flow_delay": "0s",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "biff": "no",
            # No syslog here: postlogd writes the log to a file of the instance.
            "maillog_file": str(self.log_file),
            "maillog_file_prefixes": str(self.root),
        }

    def write_config(self, relay_port: int) -> None:
        self.config_dir.mkdir(parents=True)
        self.queue_dir.mkdir()
        self.queue_dir.chmod(0o755)  # root's, like /var/spool/postfix; check fills it
        main = "".join(f"{k} = {v}\n" for k, v in self.main_cf(relay_port).items())
        (self.config_dir / "main.cf").write_text(main)
        smtpd = f"{h.LOOPBACK}:{self.smtpd_port} inet n - n - - smtpd\n"
        (self.config_dir / "master.cf").write_text(smtpd + _SERVICES)

    def postfix(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [h.postfix_tool("postfix"), "-c", str(self.config_dir), command],
            capture_output=True,
            text=True,
            check=False,
            timeout=h.STOP_GUARD_SECONDS,
        )


def check_privileges() -> None:
    """Postfix's master runs as root and its daemons as ``postfix``; say so early."""
    if os.geteuid() != 0:
        msg = "the Postfix reference needs root (its master runs as root)"
        raise RuntimeError(msg)
    try:
        pwd.getpwnam(MAIL_OWNER)
        grp.getgrnam(SETGID_GROUP)
    except KeyError as exc:
        msg = f"Postfix needs the {MAIL_OWNER} user and {SETGID_GROUP} group: {exc}"
        raise RuntimeError(msg) from exc


@contextlib.contextmanager
def postfix_instance(root: Path, *, smtpd_port: int, relay_port: int) -> Iterator[PostfixInstance]:
    """A Postfix that accepts from loopback on ``smtpd_port`` and relays everything to
    ``[127.0.0.1]:relay_port``; yielded once its smtpd port accepts connections."""
    check_privileges()
    instance = PostfixInstance(root, smtpd_port)
    # The daemons run as postfix and must reach the queue: ``root`` is made in a directory of
    # the benchmark's own (a temp dir is 0700), which gets search permission for others.
    root.parent.chmod(root.parent.stat().st_mode | 0o111)
    root.mkdir()
    root.chmod(0o755)  # not left to the umask
    closed = [p for p in root.parents if p.stat().st_mode & 0o001 == 0]
    if closed:
        msg = f"the postfix user cannot reach {root} through {closed[0]} (set TMPDIR)"
        raise RuntimeError(msg)
    instance.write_config(relay_port)
    # check creates the queue and data directories with their owners and modes.
    for command in ("check", "start"):
        done = instance.postfix(command)
        if done.returncode != 0:
            msg = f"postfix {command} failed: {done.stderr.strip()}\n{instance.log_tail()}"
            _stop(instance)
            raise RuntimeError(msg)
    try:
        _wait_listening(instance)
        yield instance
    finally:
        _stop(instance)


def _wait_listening(instance: PostfixInstance) -> None:
    deadline = time.monotonic() + h.START_GUARD_SECONDS
    while True:
        with (
            contextlib.suppress(OSError),
            socket.create_connection((h.LOOPBACK, instance.smtpd_port), 1.0),
        ):
            return
        if time.monotonic() > deadline:
            msg = f"postfix does not listen on {instance.smtpd_port}:\n{instance.log_tail()}"
            raise RuntimeError(msg)
        time.sleep(0.05)


def _stop(instance: PostfixInstance) -> None:
    """``postfix stop``, then wait for the master and every process it had started."""
    pid = instance.master_pid()
    procs: list[psutil.Process] = []
    if pid is not None:
        with contextlib.suppress(psutil.Error):
            master = psutil.Process(pid)
            procs = [master, *master.children(recursive=True)]
    if not procs:
        return
    done = instance.postfix("stop")
    if done.returncode != 0:
        print(f"postfix stop failed: {done.stderr.strip()}")
    _, alive = psutil.wait_procs(procs, timeout=h.STOP_GUARD_SECONDS)
    for proc in alive:
        print(f"postfix process {proc.pid} outlived postfix stop: killing it")
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=h.STOP_GUARD_SECONDS)


def processes_using(marker: str) -> list[str]:
    """Processes whose command line or environment mentions ``marker`` (a temp dir)."""
    found: list[str] = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            cmdline = " ".join(proc.cmdline())
            environ = " ".join(proc.environ().values())
            if marker in cmdline or marker in environ:
                found.append(f"{proc.pid} {cmdline}")
    return found


async def wait_queue_empty(pf: PostfixInstance, stall_seconds: float) -> float:
    """Poll the queues every 100 ms until they are empty; the perf_counter time of the poll
    that saw it. Raises when the queue stops shrinking for ``stall_seconds``."""
    last, moved = -1, time.monotonic()
    while (queued := pf.queued()) > 0:
        if queued != last:
            last, moved = queued, time.monotonic()
        elif time.monotonic() - moved > stall_seconds:
            msg = f"the Postfix queue stalled at {queued} ({pf.deferred()} deferred)"
            raise RuntimeError(msg)
        await asyncio.sleep(0.1)
    return time.perf_counter()


@dataclass(frozen=True, slots=True)
class PeerRates:
    """Postfix as a peer fed by smtp-source: messages per second accepted (smtp-source's
    run) and delivered (first connect to empty queues)."""

    accept: float
    delivered: float
    backlog_at_accept_end: int
    logged_sent: int


async def fed_by_smtp_source(
    root: Path, *, sink_port: int, messages: int, sessions: int, size: int, stall_seconds: float
) -> PeerRates:
    """A throwaway Postfix relaying to ``sink_port``, fed by smtp-source (``-d``, reused
    sessions): its accept and delivered rates."""
    port = h.free_port()
    with postfix_instance(root, smtpd_port=port, relay_port=sink_port) as pf:
        started = time.perf_counter()
        accept = await asyncio.to_thread(
            h.smtp_source_rate, port, messages=messages, sessions=sessions, size=size
        )
        backlog = pf.queued()
        emptied = await wait_queue_empty(pf, stall_seconds)
        for _ in range(50):  # postlogd may write the last lines a moment later
            if pf.sent_in_log() >= messages:
                break
            await asyncio.sleep(0.2)
        return PeerRates(accept, messages / (emptied - started), backlog, pf.sent_in_log())
