"""The webhook dispatcher: claims due deliveries under a lease, POSTs each signed event to its
endpoint, and records every attempt and what follows it (retry ladder, disabling).

Lanes overlap database round trips with HTTP; an endpoint never has more than
``per_endpoint`` attempts in flight from one worker (``postyard up`` gives each of its worker
processes a part of POSTYARD_WEBHOOKS__CONCURRENCY_PER_ENDPOINT, ``worker.Share``). A worker
that dies leaves leases that expire and come back as due (at-least-once; receivers
deduplicate on ``webhook-id``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from postyard.core.clock import Clock
from postyard.core.crypto import SecretDecryptionError
from postyard.core.db import Database
from postyard.core.lanes import ClaimGate, Lanes
from postyard.events.service import get_events_unscoped
from postyard.events.types import StoredEvent
from postyard.sending.summaries import MessageSummary, message_summaries_unscoped
from postyard.webhooks import ledger
from postyard.webhooks.ledger import Claimed, EndpointRow, Outcome
from postyard.webhooks.payloads import message_id_header, payload
from postyard.webhooks.retry import Verdict, decide, should_disable
from postyard.webhooks.sender import SendResult
from postyard.webhooks.service import signing_secrets
from postyard.webhooks.signing import webhook_headers

log = logging.getLogger(__name__)


class Sender(Protocol):
    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> SendResult: ...


@dataclass(frozen=True, slots=True)
class DispatcherConfig:
    owner: str
    batch_size: int = 200
    lanes: int = 2
    per_endpoint: int = 16
    lease: timedelta = timedelta(minutes=10)
    poll_interval: float = 1.0
    claim_interval: float = 0.0
    """Seconds after a claim that took every due delivery before the next (``ClaimGate``)."""
    maintenance_interval: float = 15.0


@dataclass(frozen=True, slots=True)
class _Batch:
    claimed: list[Claimed]
    endpoints: dict[uuid.UUID, EndpointRow]
    events: dict[uuid.UUID, StoredEvent]
    messages: dict[uuid.UUID, MessageSummary]


class WebhookDispatcher:
    def __init__(
        self,
        db: Database,
        sender: Sender,
        config: DispatcherConfig,
        clock: Clock,
        *,
        kek: bytes,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._db, self._sender, self._config, self._clock = db, sender, config, clock
        self._kek, self._rand = kek, rand
        self._slots = weakref.WeakValueDictionary[uuid.UUID, asyncio.Semaphore]()
        self._gate = ClaimGate[_Batch | None](config.claim_interval)
        self.wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch until ``stop`` is set; lanes finish their batch before returning."""
        cfg = self._config
        await Lanes(
            name="webhook",
            lanes=cfg.lanes,
            batch=self._batch,
            wake=self.wake,
            poll_interval=cfg.poll_interval,
            maintain=self._maintain,
            maintenance_interval=cfg.maintenance_interval,
        ).run(stop)

    async def run_once(self) -> int:
        """Claim and send one batch; returns how many deliveries it attempted."""
        return await self._batch()

    async def maintain(self) -> int:
        """Give back expired leases and prune the 30-day log; returns leases recovered."""
        now = self._clock.now()
        async with self._db.system_tx(reason="webhook dispatcher: maintenance") as session:
            recovered = await ledger.recover_expired_leases(session, now=now)
            await ledger.prune(session, now=now)
        return recovered

    async def _maintain(self) -> None:
        if await self.maintain():
            self.wake.set()

    async def _claim(self) -> _Batch | None:
        """One claim through the gate (``core.lanes.ClaimGate``): None when nothing was due
        or a claim that began after this call took every due delivery."""
        return await self._gate.claim(self._claim_now)

    async def _claim_now(self) -> tuple[_Batch | None, bool]:
        cfg = self._config
        # The claim is one statement; the events and messages it names are committed and
        # immutable, so they are read after it on the same connection, with no transaction.
        async with self._db.system_conn(reason="webhook dispatcher: claim") as conn:
            claim = await ledger.claim_due(
                conn,
                owner=cfg.owner,
                limit=cfg.batch_size,
                lease=cfg.lease,
                now=self._clock.now(),
            )
            took_all = len(claim.deliveries) < cfg.batch_size
            if not claim.deliveries:
                return None, took_all
            events = await get_events_unscoped(conn, [c.event_id for c in claim.deliveries])
            message_ids = [e.message_id for e in events.values() if e.message_id is not None]
            messages = await message_summaries_unscoped(conn, message_ids)
        return _Batch(claim.deliveries, claim.endpoints, events, messages), took_all

    async def _batch(self) -> int:
        batch = await self._claim()
        if batch is None:
            return 0
        bodies: dict[uuid.UUID, bytes] = {}
        for event in batch.events.values():
            message = batch.messages.get(event.message_id) if event.message_id else None
            bodies[event.id] = payload(event, message)
        secrets: dict[uuid.UUID, list[str] | str] = {}
        now = self._clock.now()
        for endpoint in batch.endpoints.values():
            try:
                secrets[endpoint.id] = signing_secrets(
                    self._kek,
                    tenant_id=endpoint.tenant_id,
                    endpoint_id=endpoint.id,
                    secret=endpoint.secret,
                    previous=endpoint.previous_secret,
                    previous_expires_at=endpoint.previous_secret_expires_at,
                    now=now,
                )
            except SecretDecryptionError as exc:
                log.exception(
                    "webhook secret does not decrypt", extra={"endpoint": str(endpoint.id)}
                )
                secrets[endpoint.id] = str(exc)
        # Each endpoint's deliveries are worked through by as many coroutines as it has
        # slots, rather than a task per delivery queueing on the slot semaphore.
        queues: dict[uuid.UUID, deque[Claimed]] = {}
        for claimed in batch.claimed:
            queues.setdefault(claimed.endpoint_id, deque()).append(claimed)
        outcomes: list[Outcome] = []
        await asyncio.gather(
            *(
                self._work_through(queue, batch, bodies, secrets, outcomes)
                for queue in queues.values()
                for _ in range(min(len(queue), self._config.per_endpoint))
            )
        )
        await self._record(outcomes)
        return len(batch.claimed)

    async def _work_through(
        self,
        queue: deque[Claimed],
        batch: _Batch,
        bodies: dict[uuid.UUID, bytes],
        secrets: dict[uuid.UUID, list[str] | str],
        outcomes: list[Outcome],
    ) -> None:
        while queue:
            outcomes.append(await self._attempt(queue.popleft(), batch, bodies, secrets))

    async def _attempt(
        self,
        claimed: Claimed,
        batch: _Batch,
        bodies: dict[uuid.UUID, bytes],
        secrets: dict[uuid.UUID, list[str] | str],
    ) -> Outcome:
        event = batch.events.get(claimed.event_id)
        endpoint = batch.endpoints.get(claimed.endpoint_id)
        event_type = event.type if event is not None else "unknown"
        keys = secrets.get(claimed.endpoint_id, "the endpoint is gone")
        if event is None or endpoint is None or isinstance(keys, str):
            why = "the event is gone" if event is None else str(keys)
            return self._outcome(claimed, event_type, SendResult(None, "", 0.0, why, refused=True))
        if endpoint.status != "enabled":
            result = SendResult(None, "", 0.0, "the endpoint is disabled", refused=True)
            return Outcome(
                claimed, event_type, "failed", None, None, "", 0, result.error, self._clock.now()
            )
        slot = self._slots.get(endpoint.id) or self._slots.setdefault(
            endpoint.id, asyncio.Semaphore(self._config.per_endpoint)
        )
        body = bodies[event.id]
        async with slot:
            stamp = int(self._clock.now().timestamp())
            headers = webhook_headers(keys, message_id_header(event), stamp, body)
            try:
                result = await self._sender.post(endpoint.url, body, headers)
            except Exception as exc:  # a sender bug must not strand the batch until the lease ends
                log.exception("webhook attempt failed unexpectedly")
                result = SendResult(None, "", 0.0, f"internal error: {exc}")
        return self._outcome(claimed, event_type, result)

    def _outcome(self, claimed: Claimed, event_type: str, result: SendResult) -> Outcome:
        now = self._clock.now()
        decision = decide(
            status=result.status,
            error=result.error,
            attempts=claimed.attempts,
            now=now,
            rand=self._rand,
            retry_after=result.retry_after,
        )
        status = {
            Verdict.SUCCEEDED: "succeeded",
            Verdict.RETRY: "pending",
            Verdict.EXHAUSTED: "failed",
            Verdict.GONE: "failed",
        }[decision.verdict]
        return Outcome(
            delivery=claimed,
            event_type=event_type,
            status=status,
            next_attempt_at=decision.next_attempt_at,
            status_code=result.status,
            response=result.excerpt,
            duration_ms=round(result.duration_ms),
            error=result.error,
            attempted_at=now,
        )

    async def _record(self, outcomes: list[Outcome]) -> None:
        now = self._clock.now()
        async with self._db.system_conn(reason="webhook dispatcher: record") as conn:
            recorded = await ledger.record_outcomes(
                conn, outcomes, owner=self._config.owner, now=now
            )
        succeeded = {o.delivery.endpoint_id for o in recorded.kept if o.status == "succeeded"}
        gone = {o.delivery.endpoint_id for o in recorded.kept if o.status_code == 410}
        disable = dict.fromkeys(sorted(gone - succeeded), "the endpoint answered 410 Gone")
        for endpoint_id, since in sorted(recorded.failing.items()):
            if endpoint_id not in disable and should_disable(since, now):
                disable[endpoint_id] = f"every attempt failed since {since.isoformat()}"
        if not disable:
            return
        # After the record: a worker that dies in between leaves the endpoint enabled, and
        # its next failure disables it.
        async with self._db.system_tx(reason="webhook dispatcher: disable endpoints") as session:
            for endpoint_id, reason in disable.items():
                await ledger.disable_endpoint(session, endpoint_id, reason=reason, now=now)
