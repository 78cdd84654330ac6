"""Pure decisions of the delivery worker: which recipients travel in one SMTP transaction,
and what a recipient's SMTP outcome means for the ledger."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime

from postyard.delivery.classify import (
    BounceCategory,
    Classification,
    classification_of,
    classify_outcome,
)
from postyard.delivery.outcome import OutcomeKind, RecipientOutcome
from postyard.delivery.retry import RetryPolicy, next_attempt
from postyard.sending.ledger import Bounce, ClaimedDelivery, DeliveryResult, Result


def to_result(
    delivery: ClaimedDelivery,
    outcome: RecipientOutcome,
    *,
    policy: RetryPolicy,
    now: datetime,
    rand: Callable[[], float],
    recipients_in_transaction: int = 1,
) -> DeliveryResult:
    """A recipient's SMTP outcome as a ledger result (pure): 4xx are retried on the policy's
    schedule until its maximum age, then failed; a bounce carries its classification."""
    reply = str(outcome.reply) if outcome.reply is not None else outcome.detail
    if outcome.kind is OutcomeKind.DELIVERED:
        return DeliveryResult(delivery, Result.DELIVERED, reply)
    classified = classify_outcome(outcome, recipients_in_transaction=recipients_in_transaction)
    if classified is not None:
        return DeliveryResult(delivery, Result.BOUNCED, reply, bounce=bounce_of(classified))
    when = next_attempt(
        policy,
        attempts=delivery.attempts,
        first_attempt_at=delivery.first_attempt_at,
        now=now,
        rand=rand,
    )
    if when is None:
        return DeliveryResult(delivery, Result.FAILED, f"gave up after retries: {reply}")
    return DeliveryResult(delivery, Result.DEFERRED, reply, when)


def bounce_of(classified: Classification) -> Bounce:
    return Bounce(
        type=classified.type.value,
        category=classified.category.value,
        resend_type=classified.resend_type,
        sub_type=classified.sub_type,
    )


# A message our side cannot put on the wire says nothing about the address.
UNDELIVERABLE = bounce_of(classification_of(BounceCategory.UNDETERMINED, final=True))


def group_for_sending(
    claimed: list[ClaimedDelivery], *, per_domain: bool, per_recipient: set[uuid.UUID]
) -> dict[tuple[uuid.UUID, str], list[ClaimedDelivery]]:
    """Recipients that travel in one SMTP transaction: same message and, for direct delivery,
    same domain (pure). Messages in ``per_recipient`` (those with a VERP return path, whose
    envelope sender names one recipient) go one recipient per transaction."""
    groups: dict[tuple[uuid.UUID, str], list[ClaimedDelivery]] = defaultdict(list)
    for d in claimed:
        if d.message_id in per_recipient:
            groups[(d.message_id, str(d.id))].append(d)
        else:
            groups[(d.message_id, d.domain if per_domain else "")].append(d)
    return groups
