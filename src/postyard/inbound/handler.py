"""aiosmtpd hooks of the inbound MX: which recipients exist (return-path domains only),
and DATA that answers 250 only once the report is applied or counted as dropped.
``server`` is the connection's ``SubmissionSMTP`` (the submission server's protocol,
without AUTH)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from aiosmtpd.smtp import TLSSetupException

from postyard.core.clock import Clock
from postyard.inbound.addresses import inbound_address
from postyard.inbound.intake import Intake
from postyard.inbound.reports import parse_report
from postyard.inbound.types import Report
from postyard.smtp import replies
from postyard.smtp.message import has_bare_line_ending

log = logging.getLogger(__name__)

PARSE_IN_THREAD_BYTES = 256 * 1024
DOMAIN_TTL = timedelta(seconds=60)
_MAX_ADDRESS = 320

DomainCheck = Callable[[str], Awaitable[bool]]


class ReturnPathDomains:
    """Whether a domain is some tenant's return-path domain, cached a minute per process
    (a new domain receives no bounces before its first message is sent anyway)."""

    def __init__(self, lookup: DomainCheck, clock: Clock) -> None:
        self._lookup = lookup
        self._clock = clock
        self._cache: dict[str, tuple[datetime, bool]] = {}

    async def known(self, domain: str) -> bool:
        now = self._clock.now()
        cached = self._cache.get(domain)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await self._lookup(domain)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[domain] = (now + DOMAIN_TTL, found)
        return found


class MxHandler:
    """The hooks; holds the intake and the domain cache, no per-connection state."""

    def __init__(self, intake: Intake, domains: ReturnPathDomains) -> None:
        self._intake = intake
        self._domains = domains

    async def handle_EHLO(  # noqa: N802 - aiosmtpd finds hooks by name
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        lines: list[str] = server.ehlo_lines()
        return lines

    async def handle_MAIL(  # noqa: N802 - aiosmtpd finds hooks by name
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if server.transactions >= server.limits.max_messages_per_connection:
            return replies.TOO_MANY_MESSAGES
        if len(address) > _MAX_ADDRESS:
            return replies.BAD_SENDER
        # Reports come from the null sender (RFC 5321 section 4.5.5), autoresponders and
        # feedback loops from anyone: the sender is recorded, never trusted.
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        server.transactions += 1
        return replies.SENDER_OK

    async def handle_RCPT(  # noqa: N802 - aiosmtpd finds hooks by name
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= server.limits.max_recipients:
            return replies.TOO_MANY_RECIPIENTS
        if len(address) > _MAX_ADDRESS or not address.isascii():
            return replies.MX_UNKNOWN_RECIPIENT
        found = inbound_address(address)
        domain = address.rpartition("@")[2].lower().rstrip(".")
        try:
            known = bool(domain) and await self._domains.known(domain)
        except Exception:
            log.exception("mx: return-path domain lookup failed")
            return replies.MX_LOOKUP_FAILED
        if not known:
            return replies.MX_RELAY_DENIED
        if found is None:
            return replies.MX_UNKNOWN_RECIPIENT
        if found.address not in envelope.rcpt_tos:
            envelope.rcpt_tos.append(found.address)
        envelope.rcpt_options.extend(options)
        return replies.RECIPIENT_OK

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd finds hooks by name
        data: bytes = envelope.original_content or b""
        if has_bare_line_ending(data):
            return replies.BARE_LINE_ENDING
        report = await self._parse(data)
        try:
            with server.committing():
                for address in envelope.rcpt_tos:
                    found = inbound_address(address)
                    if found is not None:
                        outcome = await self._intake.take(found, report)
                        log.info(
                            "mx: report taken",
                            extra={
                                "kind": found.kind.value,
                                "effect": outcome.effect,
                                "dropped": outcome.dropped,
                            },
                        )
        except Exception:
            # No 250 unless every recipient's report is recorded: 451 makes the remote MTA
            # keep the report and retry (applying a report twice is harmless).
            log.exception("mx: report not recorded")
            return replies.NOT_STORED
        return replies.REPORT_ACCEPTED

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            log.info("mx: TLS handshake failed", exc_info=error)
        else:
            log.error("mx: command failed", exc_info=error)
        return replies.LOCAL_ERROR

    @staticmethod
    async def _parse(data: bytes) -> Report:
        if len(data) > PARSE_IN_THREAD_BYTES:
            return await asyncio.to_thread(parse_report, data)
        return parse_report(data)
