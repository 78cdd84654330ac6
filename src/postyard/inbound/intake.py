"""One report, for one of the listener's addresses, from bytes to effects.

The token (or, at the feedback address, the quoted original) names a delivery; a
``system_tx`` finds its tenant, and one ``tenant_tx`` applies the report. Anything that
cannot be acted on is counted in ``inbound_drops`` instead, so that either way the report
is accounted for durably before the listener answers 250.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from postyard.core.clock import Clock
from postyard.core.db import Database
from postyard.delivery import verp
from postyard.domains import senders
from postyard.inbound import service
from postyard.inbound.addresses import AddressKind, InboundAddress
from postyard.inbound.drops import DropReason, count_drop
from postyard.inbound.service import Applied, Effect
from postyard.inbound.types import BounceReport, ComplaintReport, NotAReport, Report
from postyard.sending import feedback
from postyard.sending.feedback import DeliveryRef
from postyard.tracking import tokens

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IntakeConfig:
    verp_key: bytes
    unsubscribe_key: bytes
    """The key mailto unsubscribe tokens are signed with (``tracking.tokens``)."""
    unsubscribe_max_age: timedelta


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a report: an effect, or a drop and its reason."""

    effect: Effect | None
    dropped: DropReason | None = None
    suppressed: bool = False


class Intake:
    """Applies reports; holds the database, the clock and the keys, nothing per report."""

    def __init__(self, db: Database, clock: Clock, config: IntakeConfig) -> None:
        self._db = db
        self._clock = clock
        self._config = config

    async def take(self, address: InboundAddress, report: Report) -> Outcome:
        """Apply ``report`` (received for ``address``) or count it as dropped. Raises only
        for infrastructure failures (the listener then answers 451 and the sender retries)."""
        if address.kind is AddressKind.UNSUBSCRIBE:
            return await self._unsubscribe(address)
        if isinstance(report, NotAReport):
            return await self._drop(DropReason(report.reason))
        if address.kind is AddressKind.BOUNCE:
            target = await self._verp_target(address.address)
            if isinstance(target, DropReason):
                return await self._drop(target)
        else:
            if not isinstance(report, ComplaintReport):
                return await self._drop(DropReason.NOT_A_COMPLAINT)
            found = await self._complaint_target(address, report)
            if found is None:
                return await self._drop(DropReason.UNKNOWN_MESSAGE)
            target = found
        if isinstance(report, ComplaintReport):
            if not report.is_complaint:
                return await self._drop(DropReason.NOT_A_COMPLAINT)
            return await self._apply(target, report)
        if not any(r.action.value in {"failed", "delayed"} for r in report.recipients):
            return await self._drop(DropReason.NOT_A_FAILURE)
        return await self._apply(target, report)

    async def _apply(self, target: DeliveryRef, report: BounceReport | ComplaintReport) -> Outcome:
        now = self._clock.now()
        async with self._db.tenant_tx(target.tenant_id) as session:
            applied: Applied
            if isinstance(report, BounceReport):
                applied = await service.apply_bounce(session, target, report, now=now)
            else:
                applied = await service.apply_complaint(session, target, report, now=now)
        return await self._result(applied)

    async def _result(self, applied: Applied) -> Outcome:
        if applied.effect is Effect.NOT_SENT:
            return await self._drop(DropReason.NOT_SENT)
        if applied.effect is Effect.GONE:
            return await self._drop(DropReason.UNKNOWN_DELIVERY)
        return Outcome(applied.effect, suppressed=applied.suppressed)

    async def _unsubscribe(self, address: InboundAddress) -> Outcome:
        try:
            claim = tokens.verify_mailto_unsubscribe_token(
                self._config.unsubscribe_key,
                address.token,
                now=self._clock.now(),
                max_age=self._config.unsubscribe_max_age,
            )
        except tokens.ExpiredToken:
            return await self._drop(DropReason.EXPIRED_TOKEN)
        except tokens.InvalidToken:
            return await self._drop(DropReason.FORGED_TOKEN)
        target = await self._delivery(claim.delivery_id)
        if target is None:
            return await self._drop(DropReason.UNKNOWN_DELIVERY)
        async with self._db.tenant_tx(target.tenant_id) as session:
            applied = await service.apply_unsubscribe(session, target, now=self._clock.now())
        return await self._result(applied)

    async def _verp_target(self, address: str) -> DeliveryRef | DropReason:
        delivery_id = verp.parse_return_path(address, self._config.verp_key)
        if delivery_id is None:
            return DropReason.FORGED_TOKEN
        target = await self._delivery(delivery_id)
        return target if target is not None else DropReason.UNKNOWN_DELIVERY

    async def _delivery(self, delivery_id: uuid.UUID) -> DeliveryRef | None:
        async with self._db.system_tx(reason="mx: the delivery a signed token names") as session:
            return await feedback.find_delivery_unscoped(session, delivery_id)

    async def _complaint_target(
        self, address: InboundAddress, report: ComplaintReport
    ) -> DeliveryRef | None:
        """The delivery a complaint at the feedback address is about: the VERP return path
        quoted in it (signed), else the Message-ID of a one-recipient message of a tenant
        whose return-path domain received the complaint."""
        original = report.original
        for candidate in (
            original.return_path if original else None,
            report.original_mail_from,
        ):
            if candidate:
                target = await self._verp_target(candidate)
                if isinstance(target, DeliveryRef):
                    return target
        if original is None or original.message_id is None:
            return None
        async with self._db.system_tx(reason="mx: the message a complaint names") as session:
            owners = await senders.return_path_owners_unscoped(session, address.domain)
            return await feedback.find_sole_delivery_by_message_id_unscoped(
                session, owners, original.message_id
            )

    async def _drop(self, reason: DropReason) -> Outcome:
        log.info("mx: report dropped", extra={"reason": reason.value})
        async with self._db.system_tx(reason="mx: count a dropped report") as session:
            await count_drop(session, reason, now=self._clock.now())
        return Outcome(None, dropped=reason)
