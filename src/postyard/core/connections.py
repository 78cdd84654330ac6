"""How many PostgreSQL connections Postyard's processes may open, against how many the
server allows. Pure: the server's figures come in.

Each process has four pools (``core/db.py``): SQLAlchemy's app and system engines of
``pool_size`` connections each, the bare asyncpg app pool of ``pool_size`` and its system
pool of ``system_pool_size(pool_size)``, plus one LISTEN connection. The pools open
connections lazily, so the sum is reached only under a burst; a server with too few slots
then refuses connections ("too many clients already") and requests fail with 503 or 451.
``postyard up`` checks its sum at start (``runtime.fit_connections``).
"""

from __future__ import annotations

from dataclasses import dataclass

from postyard.core.driver_pools import system_pool_size

OUTSIDE_RESERVE = 10
"""Slots left for what is not a serving process: CLI commands, a psql session, backups."""
EMBEDDED_MAX_CONNECTIONS = 1000
"""The most the embedded server is raised to: each slot costs shared memory whether used or
not, and a server that cannot get it does not start. Dozens of processes need an external
server."""


def per_process(pool_size: int) -> int:
    """The most connections one process opens (its four pools full, and LISTEN)."""
    return 3 * pool_size + system_pool_size(pool_size) + 1


def budget(processes: int, pool_size: int) -> int:
    """The most connections ``processes`` serving processes open, plus OUTSIDE_RESERVE."""
    return processes * per_process(pool_size) + OUTSIDE_RESERVE


@dataclass(frozen=True, slots=True)
class Slots:
    """The server's connection settings."""

    max_connections: int
    reserved: int
    """superuser_reserved_connections plus reserved_connections (PostgreSQL 16): slots
    ordinary roles never get."""

    @property
    def available(self) -> int:
        return self.max_connections - self.reserved

    def max_connections_for(self, needed: int) -> int:
        """The max_connections that leaves ``needed`` slots to ordinary roles."""
        return needed + self.reserved


def embedded_target(slots: Slots, needed: int) -> int | None:
    """The max_connections to give the embedded server so that ``needed`` slots are left to
    Postyard's roles (at most EMBEDDED_MAX_CONNECTIONS), or None to leave it as it is (room
    enough already, or already at the cap)."""
    if slots.available >= needed:
        return None
    target = min(slots.max_connections_for(needed), EMBEDDED_MAX_CONNECTIONS)
    return target if target > slots.max_connections else None
