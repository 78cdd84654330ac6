"""aiosmtpd hooks of the submission server: each checks, calls one service and returns the
reply line (aiosmtpd sends it). ``server`` is the connection's ``SubmissionSMTP``."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from aiosmtpd.smtp import TLSSetupException

from postyard.core.clock import Clock
from postyard.core.db import Database
from postyard.core.ids import uuid7
from postyard.core.notify import Waker
from postyard.sending import idempotency
from postyard.sending.accept import AcceptOptions, accept_messages
from postyard.sending.addresses import InvalidAddress, parse_address
from postyard.sending.errors import (
    ConcurrentIdempotentRequests,
    DomainNotVerified,
    InvalidIdempotentRequest,
)
from postyard.sending.grouped import GroupedAccept
from postyard.smtp import replies
from postyard.smtp.message import (
    InvalidSubmission,
    SmtpEnvelope,
    Submission,
    has_bare_line_ending,
    parse_submission,
)
from postyard.tenancy.types import Principal
from postyard.tracking.types import TrackingConfig

log = logging.getLogger(__name__)

# Parsing a message of megabytes holds the event loop for a noticeable time, and with it
# every other connection: above this size it runs in a thread.
PARSE_IN_THREAD_BYTES = 256 * 1024


def _addr_spec(address: str) -> str | None:
    """The address with its domain in ASCII (IDNA), or None when it is not valid."""
    try:
        return parse_address(address, field="address").addr_spec
    except InvalidAddress:
        return None


class SubmissionHandler:
    """The hooks; holds the database, the clock and the process's group commit (the
    messages of concurrent sessions of one API key stored in one transaction), no
    per-connection state. ``aclose`` once the connections are closed."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        require_verified_domain: bool = False,
        waker: Waker | None = None,
        tracking: TrackingConfig | None = None,
        group_commit_window: float = 0.0,
        group_commit_max_messages: int = 100,
    ) -> None:
        self._waker = waker
        self._db = db
        self._clock = clock
        self._options = AcceptOptions(
            source="smtp", require_verified_domain=require_verified_domain, tracking=tracking
        )
        self._grouped = GroupedAccept(
            db,
            clock,
            self._options,
            window=group_commit_window,
            max_messages=group_commit_max_messages,
        )

    async def aclose(self) -> None:
        """Wait for the groups being committed."""
        await self._grouped.aclose()

    async def handle_EHLO(  # noqa: N802 - aiosmtpd finds hooks by name
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # a five-argument EHLO hook records it (aiosmtpd)
        lines: list[str] = server.ehlo_lines()
        return lines

    async def handle_MAIL(  # noqa: N802 - aiosmtpd finds hooks by name
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if server.transactions >= server.limits.max_messages_per_connection:
            return replies.TOO_MANY_MESSAGES
        if not address.isascii() and not envelope.smtp_utf8:
            return replies.NEEDS_SMTPUTF8
        sender = _addr_spec(address)
        if sender is None:
            return replies.BAD_SENDER
        envelope.mail_from = sender
        envelope.mail_options.extend(options)
        server.transactions += 1
        return replies.SENDER_OK

    async def handle_RCPT(  # noqa: N802 - aiosmtpd finds hooks by name
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= server.limits.max_recipients:
            return replies.TOO_MANY_RECIPIENTS
        if not address.isascii() and not envelope.smtp_utf8:
            return replies.NEEDS_SMTPUTF8
        recipient = _addr_spec(address)
        if recipient is None:
            return replies.BAD_RECIPIENT
        if recipient.lower() not in {r.lower() for r in envelope.rcpt_tos}:
            envelope.rcpt_tos.append(recipient)
        envelope.rcpt_options.extend(options)
        return replies.RECIPIENT_OK

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd finds hooks by name
        principal = session.auth_data
        if not isinstance(principal, Principal):
            return replies.AUTH_REQUIRED
        data: bytes = envelope.original_content or b""
        if has_bare_line_ending(data):
            return replies.BARE_LINE_ENDING
        smtp_envelope = SmtpEnvelope(
            mail_from=envelope.mail_from,
            recipients=tuple(envelope.rcpt_tos),
            smtputf8=bool(envelope.smtp_utf8),
        )
        try:
            submission = await self._parse(data, smtp_envelope)
            with server.committing():
                email_id = await self._commit(principal, submission)
            if self._waker is not None:
                self._waker.poke()
            return replies.queued(email_id)
        except InvalidSubmission as exc:
            return replies.message_refused(exc.reason)
        except InvalidIdempotentRequest:
            return replies.IDEMPOTENCY_MISMATCH
        except ConcurrentIdempotentRequests:
            return replies.IDEMPOTENCY_IN_USE
        except DomainNotVerified:
            return replies.SENDER_DOMAIN_NOT_VERIFIED
        except Exception:
            # RFC 5321 section 6.1: no commit, no 250, whatever went wrong; 451 makes the
            # client keep the message and try again. (Returning a reply, rather than
            # raising, also lets aiosmtpd reset the transaction.)
            log.exception("smtp: message not stored")
            return replies.NOT_STORED

    async def handle_exception(self, error: Exception) -> str:
        """A command failed unexpectedly: a temporary failure, without internals."""
        if isinstance(error, TLSSetupException):
            log.info("smtp: TLS handshake failed", exc_info=error)
        else:
            log.error("smtp: command failed", exc_info=error)
        return replies.LOCAL_ERROR

    async def _parse(self, data: bytes, envelope: SmtpEnvelope) -> Submission:
        message_id, now = uuid7(), self._clock.now()
        if len(data) > PARSE_IN_THREAD_BYTES:
            return await asyncio.to_thread(
                parse_submission, data, envelope, message_id=message_id, now=now
            )
        return parse_submission(data, envelope, message_id=message_id, now=now)

    async def _commit(self, principal: Principal, submission: Submission) -> uuid.UUID:
        """Store the message (or find the one stored under its idempotency key); returns the
        email id once the transaction that stored it has committed."""
        message, key = submission.message, submission.idempotency_key
        if key is None:
            return await self._grouped.accept(principal, message)
        # A keyed message commits alone, its key's lock and record in its transaction (as
        # in the API).
        tenant_id = principal.tenant_id
        async with self._db.tenant_conn(tenant_id) as conn:
            if key is not None:
                replay = await idempotency.begin(conn, tenant_id, key, submission.request_hash)
                if replay is not None:
                    return uuid.UUID(str(replay["id"]))
            await accept_messages(
                conn, principal, [message], now=self._clock.now(), options=self._options
            )
            if key is not None:
                await idempotency.complete(
                    conn, tenant_id, key, submission.request_hash, {"id": str(message.id)}
                )
        return message.id
