"""The embedded PostgreSQL (the ``pgserver`` package) used when no database URL is set.

The server lives in ``DATA_DIR/pg``, listens only on a Unix socket inside it and is shared by
every Postyard process that uses the same data dir: pgserver keeps a list of the processes
holding it (under an inter-process lock) and the last one to exit stops the server.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from postyard.core.errors import ConfigurationError

log = logging.getLogger(__name__)

DATABASE_NAME = "postyard"


@dataclass(frozen=True, slots=True)
class EmbeddedServer:
    pgdata: Path
    socket_dir: Path
    pid: int

    def url(self, database: str = DATABASE_NAME) -> str:
        """Superuser URL (the owner role) of ``database`` on this server."""
        return f"postgresql://postgres@/{database}?host={quote(str(self.socket_dir))}"


@dataclass(frozen=True, slots=True)
class Restarted:
    """The server after ``restart_embedded``; ``undone`` says why the settings it was
    restarted for were undone (it did not start with them), when they were."""

    server: EmbeddedServer
    undone: str | None = None


def auto_conf(pgdata: Path) -> Path:
    """The file ``ALTER SYSTEM`` writes, read at start."""
    return pgdata / "postgresql.auto.conf"


def ensure_data_dir(data_dir: Path) -> Path:
    """Create the data dir if needed and prove it is writable (readable error otherwise)."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        msg = f"data dir {data_dir} is not writable: {exc.strerror or exc}"
        raise ConfigurationError(msg) from exc
    return data_dir.resolve()


def _prune_dead_holders(pgdata: Path, server_class: Any) -> None:
    # pgserver counts holders in .handle_pids.json and stops the server when the last one
    # leaves. A process killed with SIGKILL never leaves, which would keep the server up
    # forever; drop pids that no longer exist, under pgserver's own lock.
    path = pgdata / ".handle_pids.json"
    with server_class._lock:  # pgserver exposes no public lock
        pids = _holders(path)
        alive = _alive(pids)
        if alive != pids:
            path.write_text(json.dumps(alive))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited; only its parent has not reaped it yet
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _holders(path: Path) -> list[int]:
    """The pids in pgserver's list of the processes holding the server."""
    try:
        return [int(pid) for pid in json.loads(path.read_text())]
    except (FileNotFoundError, ValueError, TypeError):
        return []


def _alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if _pid_alive(pid)]


def restart_embedded(server: EmbeddedServer, *, undo: bytes | None = None) -> Restarted | None:
    """Restart the server (to apply a setting that needs a restart, such as max_connections)
    when this process is its only holder; None, and no restart, when another process uses
    it. Holds pgserver's lock meanwhile, so no process joins during the restart.

    ``undo`` is ``postgresql.auto.conf`` as it was before the new settings: when the server
    does not start with them (shared memory it cannot get), the file is put back and the
    server started as it was, so that neither this start nor the next fails for them."""
    from pgserver import _commands  # noqa: PLC0415  (only when embedded is used)
    from pgserver.postgres_server import PostgresServer, get_server  # noqa: PLC0415

    # pgserver runs the server as its own system user when started by root (PostgreSQL
    # refuses root); its pg_ctl wrapper is generated at import, hence getattr.
    pg_ctl = getattr(_commands, "pg_ctl")  # noqa: B009
    user = "pgserver" if os.geteuid() == 0 else None
    handle = get_server(server.pgdata, cleanup_mode="stop")  # this process's, from start
    undone: str | None = None
    with PostgresServer._lock:  # pgserver exposes no public lock
        if _alive(_holders(server.pgdata / ".handle_pids.json")) != [os.getpid()]:
            return None
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=user)
            try:
                # pgserver's own start, so that its exit hook knows the new server to stop.
                handle.ensure_postgres_running()
            except Exception as exc:
                if undo is None:
                    raise
                undone = f"{exc} (see {server.pgdata}/log)"
                with contextlib.suppress(Exception):  # a start that timed out may still run
                    pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=server.pgdata, user=user)
                auto_conf(server.pgdata).write_bytes(undo)  # as the owner left it: mode kept
                handle.ensure_postgres_running()
        except Exception as exc:
            msg = f"cannot restart the embedded PostgreSQL in {server.pgdata}: {exc}"
            raise ConfigurationError(msg) from exc
    info = handle.get_postmaster_info()
    restarted = EmbeddedServer(
        pgdata=server.pgdata, socket_dir=Path(info.socket_dir), pid=int(info.pid)
    )
    if restarted.socket_dir != server.socket_dir:  # the URLs in use name the socket dir
        msg = f"the embedded PostgreSQL moved its socket to {restarted.socket_dir} on restart"
        raise ConfigurationError(msg)
    log.info("embedded postgresql restarted", extra={"pgdata": str(server.pgdata)})
    return Restarted(restarted, undone)


def start_embedded(data_dir: Path) -> EmbeddedServer:
    """Start (or join) the embedded server; it stops when the last holder process exits."""
    pgdata = ensure_data_dir(data_dir) / "pg"
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import (  # noqa: PLC0415  (only when embedded is used)
            PostgresServer,
            get_server,
        )

        if pgdata.exists():
            _prune_dead_holders(pgdata, PostgresServer)
        try:
            server = get_server(pgdata, cleanup_mode="stop")
        except Exception as exc:
            msg = f"cannot start the embedded PostgreSQL in {pgdata}: {exc} (see {pgdata}/log)"
            raise ConfigurationError(msg) from exc
        # Runs before pgserver's own exit hook (atexit is last in, first out): a holder
        # killed meanwhile (a `postyard up` parent with SIGKILL) must not keep the server up
        # once this, the last live holder, leaves.
        atexit.register(_prune_dead_holders, pgdata, PostgresServer)
    info = server.get_postmaster_info()
    embedded = EmbeddedServer(pgdata=pgdata, socket_dir=Path(info.socket_dir), pid=int(info.pid))
    log.info("embedded postgresql ready", extra={"pgdata": str(pgdata), "pid": embedded.pid})
    return embedded
