"""AUTH for the submission server: the API key is the password (any username), and failed
attempts are throttled per client address.

The throttle lives in one server instance, so with several processes on one port each
counts on its own: an address gets at most ``max_failures`` tries per process and lockout.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
from sqlalchemy.exc import SQLAlchemyError

from postyard.core.clock import Clock
from postyard.core.db import Database
from postyard.core.errors import InvalidApiKey, MissingApiKey, OrganizationSuspended
from postyard.smtp import replies
from postyard.tenancy.service import authenticate
from postyard.tenancy.types import Principal

log = logging.getLogger(__name__)

DEFAULT_MAX_TRACKED = 100_000


class FailureThrottle:
    """Counts failed AUTH attempts per client address: ``max_failures`` within ``lockout``
    lock the address out for ``lockout``. Memory stays bounded by ``max_tracked``."""

    def __init__(
        self,
        *,
        max_failures: int,
        lockout: timedelta,
        clock: Clock,
        max_tracked: int = DEFAULT_MAX_TRACKED,
    ) -> None:
        self._max_failures = max_failures
        self._lockout = lockout
        self._clock = clock
        self._max_tracked = max_tracked
        self._failures: dict[str, list[datetime]] = {}
        self._locked_until: dict[str, datetime] = {}

    def is_locked_out(self, address: str) -> bool:
        """True while ``address`` is locked out."""
        until = self._locked_until.get(address)
        if until is None:
            return False
        if until <= self._clock.now():
            del self._locked_until[address]
            return False
        return True

    def record_failure(self, address: str) -> None:
        """Count one failed attempt; the one that reaches the limit starts the lockout."""
        now = self._clock.now()
        recent = [t for t in self._failures.pop(address, []) if t > now - self._lockout]
        recent.append(now)
        if len(recent) >= self._max_failures:
            self._locked_until[address] = now + self._lockout
        else:
            self._failures[address] = recent
        if len(self._failures) + len(self._locked_until) > self._max_tracked:
            self._forget_stale(now)

    def _forget_stale(self, now: datetime) -> None:
        self._locked_until = {a: t for a, t in self._locked_until.items() if t > now}
        self._failures = {
            a: times for a, times in self._failures.items() if times[-1] > now - self._lockout
        }
        # Still too many (failures from very many addresses): forget the oldest entries.
        for table in (self._failures, self._locked_until):
            while table and len(self._failures) + len(self._locked_until) > self._max_tracked:
                del table[next(iter(table))]


# The database could not answer: a temporary failure (454), not a bad key.
_UNAVAILABLE = (
    SQLAlchemyError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    """The reply to an AUTH command, and the principal when it succeeded."""

    reply: str
    principal: Principal | None = None


class ApiKeyAuthenticator:
    """Checks API keys (scope ``full`` or ``sending``) and keeps the failure throttle."""

    def __init__(self, db: Database, clock: Clock, throttle: FailureThrottle) -> None:
        self._db = db
        self._clock = clock
        self._throttle = throttle

    def is_locked_out(self, address: str) -> bool:
        return self._throttle.is_locked_out(address)

    async def authenticate(self, address: str, password: str) -> AuthOutcome:
        """The outcome for a password offered from ``address``; never raises for a bad key
        or an unavailable database (those are 535 and 454 replies)."""
        try:
            async with self._db.system_conn(reason="smtp auth: look up the api key") as conn:
                principal, _ = await authenticate(conn, password, now=self._clock.now())
        except (MissingApiKey, InvalidApiKey):
            self._throttle.record_failure(address)
            return AuthOutcome(replies.AUTH_INVALID)
        except OrganizationSuspended:
            # A valid key of a suspended organisation: refused, but not a guess to throttle.
            return AuthOutcome(replies.AUTH_SUSPENDED)
        except (
            SQLAlchemyError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            OSError,
            TimeoutError,
        ):
            log.exception("smtp auth: the database is unavailable")
            return AuthOutcome(replies.AUTH_TEMPORARY_FAILURE)
        return AuthOutcome(replies.AUTH_SUCCEEDED, principal)


def password_from_plain(response: bytes) -> str | None:
    """The password in an RFC 4616 PLAIN response (``authzid NUL authcid NUL passwd``), or
    None when the response is not one. The identities are ignored: any username goes."""
    parts = response.split(b"\0")
    if len(parts) != 3:
        return None
    try:
        return parts[2].decode("utf-8")
    except UnicodeDecodeError:
        return None
