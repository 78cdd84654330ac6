"""The delivery worker: claims due recipients under a lease, sends each message once per
destination with all of its recipients there, and records every recipient's outcome.

Several lanes run in one worker so that database round trips and SMTP sessions overlap.
A lane finishes the batch it holds before it stops; a worker that dies leaves leases that
expire, and whichever worker recovers them retries the rows (at-least-once).
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from postyard.core.clock import Clock
from postyard.core.db import Database, TenantId
from postyard.core.lanes import ClaimGate, Lanes
from postyard.delivery import ippools, shaping_state, verp
from postyard.delivery.claim import Claim, claim_batch
from postyard.delivery.holds import Hold, hold_for
from postyard.delivery.identity import UNVERIFIED, SenderIdentity
from postyard.delivery.ippools import PoolConfig
from postyard.delivery.outcome import OutcomeKind, RecipientOutcome
from postyard.delivery.record import record_results
from postyard.delivery.results import UNDELIVERABLE, group_for_sending, to_result
from postyard.delivery.retry import RetryPolicy
from postyard.delivery.session import SourceAddress
from postyard.delivery.shaping import SiteShaper
from postyard.delivery.transport import Envelope
from postyard.delivery.warmup import WarmupPolicy
from postyard.domains.dkim import DkimSigningError
from postyard.sending import idempotency, ledger
from postyard.sending.ledger import (
    Candidate,
    ClaimedDelivery,
    DeliveryResult,
    Held,
    OutboundMessage,
    Postponed,
    Result,
)
from postyard.tenancy import ratelimit

log = logging.getLogger(__name__)


class Deliverer(Protocol):
    """Where one envelope goes: a relay (every domain alike) or the domain's MX hosts."""

    @property
    def per_domain(self) -> bool: ...

    async def deliver(
        self,
        domain: str,
        envelope: Envelope,
        *,
        messages_per_connection: int | None = None,
        source: SourceAddress | None = None,
    ) -> list[RecipientOutcome]: ...

    async def site(self, domain: str) -> str:
        """The destination site of ``domain`` (``delivery.sites``)."""
        ...


class Identities(Protocol):
    """Who a message is sent as (``delivery.identity.IdentityCache`` in production)."""

    async def get(self, tenant_id: TenantId, domain: str) -> SenderIdentity: ...


@dataclass(slots=True)
class Sent:
    """What one batch's sending produced: ledger results, and rows a hold caught late."""

    results: list[DeliveryResult] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)
    postponed: list[Postponed] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    owner: str
    batch_size: int = 200
    lanes: int = 4
    concurrency: int = 100
    lease: timedelta = timedelta(minutes=15)
    poll_interval: float = 1.0
    claim_interval: float = 0.0
    """Seconds after a claim that took every due row before the next (``ClaimGate``)."""
    maintenance_interval: float = 15.0
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    warmups: WarmupPolicy = field(default_factory=lambda: WarmupPolicy(schedule=()))


class DeliveryWorker:
    def __init__(
        self,
        db: Database,
        deliverer: Deliverer,
        config: WorkerConfig,
        clock: Clock,
        *,
        identities: Identities | None = None,
        verp_key: bytes = b"",
        jobs: Sequence[Callable[[], Awaitable[object]]] = (),
        rand: Callable[[], float] = random.random,
        shaper: SiteShaper | None = None,
        pools: PoolConfig | None = None,
    ) -> None:
        self._shaper = shaper
        self._pools = pools
        self._assignments: dict[tuple[TenantId, str], str] = {}
        self._assignments_loaded = False
        self._identities = identities
        self._jobs = jobs
        self._verp_key = verp_key
        self._db = db
        self._deliverer = deliverer
        self._config = config
        self._clock = clock
        self._rand = rand
        self._sending = asyncio.Semaphore(config.concurrency)
        self._gate = ClaimGate[tuple[Claim, list[ClaimedDelivery], list[DeliveryResult]]](
            config.claim_interval
        )
        self.wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; lanes finish their batch before returning."""
        cfg = self._config
        await Lanes(
            name="delivery",
            lanes=cfg.lanes,
            batch=self._batch,
            wake=self.wake,
            poll_interval=cfg.poll_interval,
            maintain=self._maintain,
            maintenance_interval=cfg.maintenance_interval,
        ).run(stop)

    async def run_once(self) -> int:
        """Claim and deliver one batch; returns how many recipients it handled (tests)."""
        return await self._batch()

    def _source_of(self, candidate: Candidate) -> str | None:
        """The address ``candidate`` will leave from: what ``_deliver`` will choose."""
        assert self._pools is not None
        chosen = ippools.choose(
            self._pools,
            self._assignments,
            tenant_id=candidate.tenant_id,
            bulk=candidate.bulk,
            message_id=candidate.message_id,
        )
        return chosen.address if chosen is not None else None

    async def _batch(self) -> int:
        cfg = self._config
        if self._pools is not None and not self._assignments_loaded:
            async with self._db.system_tx(reason="delivery worker: ip pools") as session:
                self._assignments = await ippools.load_assignments(session)
            self._assignments_loaded = True
        got = await self._claim()
        if got is None:
            return 0
        claim, to_send, suppressed = got
        claimed, messages = claim.claimed, claim.messages
        if not claimed:
            return claim.held + claim.postponed
        try:
            sent = await self._deliver(to_send, messages, claim.holds)
            sent.results[:0] = suppressed
        except asyncio.CancelledError:
            # Stopped mid-batch: hand the rows back now rather than at lease expiry. Some may
            # have reached the remote server already; they will be sent again (at-least-once).
            async with self._db.system_tx(reason="delivery worker: release") as session:
                await ledger.release(session, [c.id for c in claimed], owner=cfg.owner)
            raise
        async with self._db.system_tx(reason="delivery worker: record") as session:
            await record_results(session, sent.results, owner=cfg.owner, now=self._clock.now())
            await ledger.hold(session, sent.held, now=self._clock.now())
            await ledger.postpone(session, sent.postponed, now=self._clock.now())
            if self._shaper is not None:
                changed = self._shaper.changed()
                await shaping_state.publish(session, changed, now=self._clock.now())
        return len(claimed) + claim.held + claim.postponed

    async def _claim(
        self,
    ) -> tuple[Claim, list[ClaimedDelivery], list[DeliveryResult]] | None:
        """One claim through the gate (``core.lanes.ClaimGate``), or None when a claim that
        began after this call took every due row."""
        return await self._gate.claim(self._claim_now)

    async def _claim_now(
        self,
    ) -> tuple[tuple[Claim, list[ClaimedDelivery], list[DeliveryResult]], bool]:
        cfg = self._config
        async with self._db.system_tx(reason="delivery worker: claim") as session:
            claim = await claim_batch(
                session, owner=cfg.owner, limit=cfg.batch_size, lease=cfg.lease,
                now=self._clock.now(), warmups=cfg.warmups,
                source_of=self._source_of if self._pools is not None else None,
            )  # fmt: skip
            # Addresses suppressed after their email was accepted (scheduled, retried).
            to_send, suppressed = (
                await ledger.hold_back_suppressed(session, claim.claimed, now=self._clock.now())
                if claim.claimed
                else ([], [])
            )
        return (claim, to_send, suppressed), claim.took_all_due

    async def _prepare(
        self, messages: dict[uuid.UUID, OutboundMessage]
    ) -> dict[uuid.UUID, tuple[bytes, str | None]]:
        """Per message: the bytes to send (DKIM-signed when its domain is verified, signed
        once per batch however many recipients) and its return-path domain."""
        prepared: dict[uuid.UUID, tuple[bytes, str | None]] = {}
        for message in messages.values():
            identity = (
                await self._identities.get(message.tenant_id, message.from_domain)
                if self._identities is not None
                else UNVERIFIED
            )
            data = message.raw
            if identity.signer is not None:
                try:
                    data = identity.signer.sign(message.raw)
                except DkimSigningError:
                    # Unsigned still aligns through the VERP return path (SPF); losing or
                    # holding the mail for a signature would be worse.
                    log.exception("could not sign", extra={"message_id": str(message.id)})
            prepared[message.id] = (data, identity.return_path_domain)
        return prepared

    async def _deliver(
        self,
        claimed: list[ClaimedDelivery],
        messages: dict[uuid.UUID, OutboundMessage],
        holds: list[Hold],
    ) -> Sent:
        prepared = await self._prepare(messages)
        verp = {mid for mid, (_, return_path) in prepared.items() if return_path}
        groups = group_for_sending(
            claimed, per_domain=self._deliverer.per_domain, per_recipient=verp
        )
        sent = Sent()
        await asyncio.gather(
            *(
                self._send_group(messages[key[0]], prepared[key[0]], rows, holds, sent)
                for key, rows in groups.items()
            )
        )
        return sent

    async def _send_group(
        self,
        message: OutboundMessage,
        prepared: tuple[bytes, str | None],
        rows: list[ClaimedDelivery],
        holds: list[Hold],
        sent: Sent,
    ) -> None:
        shaper = self._shaper if self._deliverer.per_domain else None
        site = await self._deliverer.site(rows[0].domain) if holds or shaper else ""
        if holds:
            hold = hold_for(
                holds,
                tenant_id=message.tenant_id,
                from_domain=message.from_domain,
                recipient_domain=rows[0].domain,
                site=site,
            )
            if hold is not None:
                sent.held.extend(Held(r.id, hold.id, hold.describe()) for r in rows)
                return
        if shaper is None:
            sent.results.extend((await self._send(message, prepared, rows))[1])
            return
        admission = shaper.admit(site, len(rows), self._clock.now())
        if admission.until is not None:
            sent.postponed.extend(Postponed(r.id, admission.until, admission.reason) for r in rows)
            return
        if admission.pause > 0:
            await asyncio.sleep(admission.pause)
        async with shaper.connection(site):
            outcomes, results = await self._send(
                message, prepared, rows, shaper.messages_per_connection(site)
            )
        blocked = next(
            (r.reply for r in results if r.bounce is not None and r.bounce.type == "block"), None
        )
        shaper.observe(site, outcomes, self._clock.now(), blocked=blocked)
        sent.results.extend(results)

    async def _send(
        self,
        message: OutboundMessage,
        prepared: tuple[bytes, str | None],
        rows: list[ClaimedDelivery],
        messages_per_connection: int | None = None,
    ) -> tuple[list[RecipientOutcome], list[DeliveryResult]]:
        """Send one group; returns the SMTP outcomes and the ledger results they make."""
        data, return_path_domain = prepared
        mail_from = (
            verp.return_path(rows[0].id, return_path_domain, self._verp_key)
            if return_path_domain
            else message.envelope_from
        )
        now_results: list[DeliveryResult] = []
        try:
            envelope = Envelope(
                mail_from=mail_from,
                recipients=tuple(r.recipient for r in rows),
                data=data,
                smtputf8=message.smtputf8,
            )
        except ValueError as exc:
            return [], [
                DeliveryResult(r, Result.BOUNCED, f"not deliverable: {exc}", bounce=UNDELIVERABLE)
                for r in rows
            ]
        source = (
            ippools.choose(
                self._pools,
                self._assignments,
                tenant_id=message.tenant_id,
                bulk=rows[0].bulk,
                message_id=message.id,
            )
            if self._pools is not None
            else None
        )
        async with self._sending:
            try:
                outcomes = await self._deliverer.deliver(
                    rows[0].domain,
                    envelope,
                    messages_per_connection=messages_per_connection,
                    source=source,
                )
            except Exception as exc:  # a bug here must not strand the batch until lease expiry
                log.exception("delivery failed unexpectedly", extra={"message_id": str(message.id)})
                outcomes = [
                    RecipientOutcome(
                        r.recipient, OutcomeKind.DEFERRED, None, f"internal error: {exc}"
                    )
                    for r in rows
                ]
        now = self._clock.now()
        for row, outcome in zip(rows, outcomes, strict=True):
            now_results.append(
                to_result(
                    row,
                    outcome,
                    policy=self._config.policy,
                    now=now,
                    rand=self._rand,
                    recipients_in_transaction=len(rows),
                )
            )
        return outcomes, now_results

    async def _maintain(self) -> None:
        """One maintenance round: recover expired leases, forget expired idempotency keys
        and rate windows, reload shared state, run the extra jobs."""
        async with self._db.system_tx(reason="delivery worker: maintenance") as session:
            recovered = await ledger.recover_expired_leases(session)
            await idempotency.forget_expired(session)
            await ratelimit.forget_old_windows(session, now=self._clock.now())
            if self._pools is not None:
                self._assignments = await ippools.load_assignments(session)
                self._assignments_loaded = True
            if self._shaper is not None:
                shared = await shaping_state.load(session)
                self._shaper.merge(shared, self._clock.now())
        if recovered:
            log.warning("recovered expired leases", extra={"rows": recovered})
            self.wake.set()
        for job in self._jobs:
            await job()
