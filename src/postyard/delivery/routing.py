"""Where mail goes in each delivery mode: the capture server, a smarthost, or the MX hosts."""

from __future__ import annotations

from dataclasses import dataclass

from postyard.delivery.outcome import RecipientOutcome
from postyard.delivery.session import SourceAddress
from postyard.delivery.sites import site_of_domain
from postyard.delivery.transport import Envelope, Relay, SmtpTransport


@dataclass(frozen=True, slots=True)
class RelayDeliverer:
    """Everything to one relay (capture mode: the built-in capture server; relay mode: the
    configured smarthost)."""

    transport: SmtpTransport
    relay: Relay
    per_domain: bool = False

    async def deliver(
        self,
        domain: str,
        envelope: Envelope,
        *,
        messages_per_connection: int | None = None,
        source: SourceAddress | None = None,
    ) -> list[RecipientOutcome]:
        return await self.transport.deliver_via_relay(self.relay, envelope, source=source)

    async def site(self, domain: str) -> str:
        return site_of_domain(domain)


@dataclass(frozen=True, slots=True)
class DirectDeliverer:
    """Each domain's mail to its MX hosts (mx mode)."""

    transport: SmtpTransport
    per_domain: bool = True

    async def deliver(
        self,
        domain: str,
        envelope: Envelope,
        *,
        messages_per_connection: int | None = None,
        source: SourceAddress | None = None,
    ) -> list[RecipientOutcome]:
        return await self.transport.deliver_direct(
            domain, envelope, messages_per_connection=messages_per_connection, source=source
        )

    async def site(self, domain: str) -> str:
        return await self.transport.site_of(domain)
