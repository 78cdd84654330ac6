"""Open SMTP sessions kept per destination and reused across deliveries.

Reusing a session saves the TCP handshake, the greeting, EHLO and (with TLS) the STARTTLS
round trips; it costs one RSET per reuse (Postfix CONNECTION_CACHE_README; measured at
1.5-1.9x the messages per second with aiosmtplib), which the next transaction sends
(``transaction.run_transaction``), in the same write as its envelope where the server offers
PIPELINING. The pool bounds, per destination, how many sessions exist at once (in use, idle
or closing) and how many messages one session carries, because receivers limit both. Idle
sessions are closed after ``idle_timeout`` seconds.

The pool does not open sessions: the caller leases a slot, gets an idle session or None, and
opens one itself when it gets None. Sessions are used by one lease at a time.

A lease that waits for a slot may be given one by a ride instead (RFC 2920 section 3.1: the
message content may begin a pipelined group): the holder of a session about to send its
message after DATA's 354 takes the first waiter's envelope (``Lease.next_rider``) and sends
that envelope's MAIL, RCPTs and DATA in the same write as its own message and final dot;
once it has its own reply it hands the session and its slot over (``Lease.hand_over``), with
the rider's replies on their way. One write and one read per message instead of two, on the
client and on the server.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiosmtplib

if TYPE_CHECKING:
    from postyard.delivery.exchange import ReplyReader
    from postyard.delivery.wire import Envelope


@dataclass(eq=False, slots=True)
class PooledSession:
    """An open, greeted (and, where asked for, TLS-protected and authenticated) SMTP session.

    ``label`` names the peer in outcome details, e.g. ``mx1.example[192.0.2.1]:25``.
    ``messages`` counts the transactions started on it. ``reader`` takes its replies during
    exchanges (``exchange``; made by the first). ``idle_until``: when a parked session is
    closed; ``idle_timer`` fires at or before it (set once, moved on when it comes early).
    """

    smtp: aiosmtplib.SMTP
    label: str
    messages: int = 0
    idle_timer: asyncio.TimerHandle | None = None
    idle_until: float = 0.0
    reader: ReplyReader | None = None

    def close(self) -> None:
        """Close the connection now, and stop the reply timer, which would otherwise keep
        the reader for up to a command timeout."""
        self.smtp.close()
        if self.reader is not None:
            self.reader.stop_timer()


@dataclass(eq=False, slots=True)
class _Waiter:
    """A lease waiting for a slot; ``envelope`` is what it would send, for a ride."""

    future: asyncio.Future[tuple[PooledSession, int] | None]
    envelope: Envelope | None
    max_messages: int | None


@dataclass(eq=False, slots=True)
class Rider:
    """A waiting lease whose envelope a holder sends with its own message (``next_rider``):
    ``commands`` are MAIL, the RCPTs and DATA as written for it."""

    commands: list[bytes]
    waiter: _Waiter


@dataclass(eq=False, slots=True)
class Lease:
    """One slot of a destination, held for one transaction.

    ``session`` is a reused session (the holder starts with RSET) or None; the holder opens
    a session and assigns it when it is None. Set ``reusable`` once the session is back in a
    known state (a transaction ended with a reply); otherwise the session is closed when the
    lease ends. ``riding`` > 0: the session was handed over by a ride, with this lease's
    envelope written and that many replies to it on their way (``Rider``).
    """

    session: PooledSession | None
    reusable: bool = False
    max_messages: int | None = None
    """Messages this session may carry in all (None: the pool's limit)."""
    riding: int = 0
    handed_over: bool = False
    """The session and the slot went to a rider: nothing to give back on exit."""
    _destination: _Destination | None = None
    _limit: int = 0

    def next_rider(
        self,
        session: PooledSession,
        commands_of: Callable[[PooledSession, Envelope], list[bytes] | None],
    ) -> Rider | None:
        """The first lease waiting for this destination's slot, taken out of the queue, when
        it can ride on ``session``: it waits with an envelope, ``commands_of`` gives that
        envelope's commands on this session (None: it cannot go on it) and both leases allow
        ``session`` one more message. Call ``hand_over`` once the holder has its reply."""
        destination = self._destination
        if destination is None or not destination.waiters or self.handed_over:
            return None
        waiter = destination.waiters[0]
        if waiter.envelope is None or waiter.future.done():
            return None
        limit = min(self._limit, waiter.max_messages or self._limit)
        if session.messages >= limit:
            return None
        commands = commands_of(session, waiter.envelope)
        if commands is None:
            return None
        destination.waiters.popleft()
        return Rider(commands, waiter)

    def hand_over(self, rider: Rider, session: PooledSession) -> None:
        """Give ``session`` and this lease's slot to ``rider``, whose replies (one per
        command) are on their way. A rider that stopped waiting meanwhile (cancelled) cannot
        take it: its replies would come to nobody, so the session is closed and the slot
        stays with this lease."""
        if rider.waiter.future.done():
            session.close()
            return
        rider.waiter.future.set_result((session, len(rider.commands)))
        self.handed_over = True


@dataclass(eq=False, slots=True)
class _Destination:
    capacity: int
    busy: int = 0
    waiters: deque[_Waiter] = field(default_factory=deque)
    idle: list[PooledSession] = field(default_factory=list)
    users: int = 0


class _Holding:
    """``ConnectionPool.lease``'s context manager (a class: ``asynccontextmanager``'s
    generator cost measurable CPU per message)."""

    __slots__ = ("_destination", "_envelope", "_key", "_lease", "_max_messages", "_pool")

    def __init__(
        self,
        pool: ConnectionPool,
        key: Hashable,
        max_messages: int | None,
        envelope: Envelope | None,
    ) -> None:
        self._pool, self._key, self._max_messages = pool, key, max_messages
        self._envelope = envelope
        self._destination: _Destination | None = None
        self._lease: Lease | None = None

    async def __aenter__(self) -> Lease:
        if self._destination is not None:
            raise RuntimeError("a lease is entered once")
        self._destination, self._lease = await self._pool._enter(
            self._key, self._max_messages, self._envelope
        )
        return self._lease

    async def __aexit__(self, *exc_info: object) -> None:
        if self._destination is not None and self._lease is not None:
            await self._pool._exit(self._key, self._destination, self._lease)


class ConnectionPool:
    """Sessions per destination key, bounded by ``max_connections`` and ``max_messages``."""

    def __init__(
        self,
        *,
        max_connections: int,
        max_messages: int,
        idle_timeout: float,
        command_timeout: float,
    ) -> None:
        if max_connections < 1 or max_messages < 1 or idle_timeout <= 0:
            raise ValueError("pool limits must be positive")
        self._max_connections = max_connections
        self._max_messages = max_messages
        self._idle_timeout = idle_timeout
        self._command_timeout = command_timeout
        self._destinations: dict[Hashable, _Destination] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._closed = False

    def lease(
        self, key: Hashable, *, max_messages: int | None = None, envelope: Envelope | None = None
    ) -> _Holding:
        """Hold one of ``key``'s slots for the duration of an ``async with`` block, which
        gives the ``Lease``.

        Waits while ``max_connections`` sessions to ``key`` exist and are busy; a lease that
        waits with its ``envelope`` may be given a slot by a ride (``Lease.riding``). On exit the
        session goes back to the idle list when ``reusable`` is set, is connected and has
        carried fewer than ``max_messages`` messages; otherwise it is closed (with QUIT when
        it is healthy) before the slot is released, so the cap also counts closing sessions.
        Entering raises RuntimeError after ``aclose``.
        """
        return _Holding(self, key, max_messages, envelope)

    async def _enter(
        self, key: Hashable, max_messages: int | None, envelope: Envelope | None
    ) -> tuple[_Destination, Lease]:
        if self._closed:
            raise RuntimeError("the connection pool is closed")
        destination = self._destinations.get(key)
        if destination is None:
            destination = _Destination(self._max_connections)
            self._destinations[key] = destination
        destination.users += 1
        try:
            handed = await self._acquire(destination, envelope, max_messages)
        except BaseException:
            destination.users -= 1
            self._forget_if_unused(key, destination)
            raise
        limit = min(self._max_messages, max_messages or self._max_messages)
        if handed is not None:
            session, riding = handed
            lease = Lease(session, max_messages=max_messages, riding=riding)
        else:
            lease = Lease(self._take_idle(destination), max_messages=max_messages)
        lease._destination, lease._limit = destination, limit
        return destination, lease

    async def _exit(self, key: Hashable, destination: _Destination, lease: Lease) -> None:
        try:
            if not lease.handed_over:  # else the session and the slot are the rider's
                try:
                    await self._give_back(key, destination, lease)
                finally:
                    self._release(destination)
        finally:
            destination.users -= 1
            self._forget_if_unused(key, destination)

    async def _acquire(
        self, destination: _Destination, envelope: Envelope | None, max_messages: int | None
    ) -> tuple[PooledSession, int] | None:
        """One of ``destination``'s slots, first come first served; with it a session that a
        holder handed over by a ride (and the replies on their way), or None."""
        if destination.busy < destination.capacity and not destination.waiters:
            destination.busy += 1
            return None
        waiter = _Waiter(asyncio.get_running_loop().create_future(), envelope, max_messages)
        destination.waiters.append(waiter)
        try:
            return await waiter.future
        except BaseException:
            if waiter.future.cancelled():
                if waiter in destination.waiters:
                    destination.waiters.remove(waiter)
            else:  # the slot was given just before the cancellation: give it on
                handed = waiter.future.result()
                if handed is not None:
                    handed[0].close()  # replies to a ride nobody will read
                self._release(destination)
            raise

    def _release(self, destination: _Destination) -> None:
        """A slot goes to the first waiter still waiting, else back to the destination."""
        while destination.waiters:
            waiter = destination.waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_result(None)
                return
        destination.busy -= 1

    async def aclose(self) -> None:
        """Close every idle session (with QUIT) and refuse new leases.

        Sessions leased at the time are closed when their lease ends. Never raises for
        network errors.
        """
        self._closed = True
        idle: list[PooledSession] = []
        for destination in self._destinations.values():
            for session in destination.idle:
                _cancel_timer(session)
            idle.extend(destination.idle)
            destination.idle.clear()
        await asyncio.gather(*(self._quit(session) for session in idle), *self._retiring)

    def _take_idle(self, destination: _Destination) -> PooledSession | None:
        while destination.idle:
            # The most recently used is the least likely stale. Its idle timer is left to
            # lapse (``_expire``) rather than cancelled and made anew for every message.
            session = destination.idle.pop()
            if session.smtp.is_connected:
                return session
        return None

    async def _give_back(self, key: Hashable, destination: _Destination, lease: Lease) -> None:
        session = lease.session
        if session is None:
            return
        healthy = lease.reusable and session.smtp.is_connected
        limit = min(self._max_messages, lease.max_messages or self._max_messages)
        if healthy and session.messages < limit and not self._closed:
            loop = asyncio.get_running_loop()
            session.idle_until = loop.time() + self._idle_timeout
            if session.idle_timer is None:
                session.idle_timer = loop.call_at(
                    session.idle_until, self._expire, key, destination, session
                )
            destination.idle.append(session)
        elif healthy:
            await self._quit(session)
        else:
            session.close()

    def _expire(self, key: Hashable, destination: _Destination, session: PooledSession) -> None:
        session.idle_timer = None
        if session not in destination.idle:
            return  # in use, or closed: parking it again sets a new timer
        loop = asyncio.get_running_loop()
        if loop.time() < session.idle_until:  # used and parked again since the timer was set
            session.idle_timer = loop.call_at(
                session.idle_until, self._expire, key, destination, session
            )
            return
        destination.idle.remove(session)
        destination.users += 1  # now, so that the destination is not forgotten meanwhile
        task = asyncio.get_running_loop().create_task(self._retire(key, destination, session))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _retire(
        self, key: Hashable, destination: _Destination, session: PooledSession
    ) -> None:
        try:
            await self._acquire(destination, None, None)
            try:
                await self._quit(session)
            finally:
                self._release(destination)
        finally:
            destination.users -= 1
            self._forget_if_unused(key, destination)

    async def _quit(self, session: PooledSession) -> None:
        try:
            await session.smtp.quit(timeout=self._command_timeout)
        except (aiosmtplib.SMTPException, OSError):
            pass  # closing anyway; a failed QUIT changes nothing
        finally:
            session.close()

    def _forget_if_unused(self, key: Hashable, destination: _Destination) -> None:
        unused = destination.users == 0 and not destination.idle
        if unused and self._destinations.get(key) is destination:
            del self._destinations[key]


def _cancel_timer(session: PooledSession) -> None:
    if session.idle_timer is not None:
        session.idle_timer.cancel()
        session.idle_timer = None
