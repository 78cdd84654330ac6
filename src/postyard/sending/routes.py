"""/v1/emails: thin adapters over the sending service."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request
from pydantic import ValidationError

from postyard.core.errors import AppError, ValidationFailed
from postyard.core.http import Services, validation_message
from postyard.core.ids import uuid7
from postyard.core.json_route import JsonRoute
from postyard.core.pagination import PageRequest
from postyard.events.types import EventType
from postyard.sending import idempotency, service
from postyard.sending.accept import AcceptOptions, accept_messages
from postyard.sending.compose import ComposedMessage, compose_message
from postyard.sending.grouped import GroupedAccept
from postyard.sending.last_event import last_events
from postyard.sending.models import Message
from postyard.sending.schemas import (
    BatchError,
    BatchResponse,
    EmailList,
    EmailOut,
    EmailRef,
    EmailTimeline,
    EngagementOut,
    EventOut,
    RecipientState,
    SendEmailRequest,
    SendEmailResponse,
    UpdateEmailRequest,
)
from postyard.tenancy.auth import AnyKey, FullAccess
from postyard.tracking.service import get_engagement
from postyard.tracking.types import Engagement

router = APIRouter(route_class=JsonRoute, prefix="/emails", tags=["Emails"])
MAX_BATCH = 100
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


async def _grouped(request: Request) -> GroupedAccept:
    # async: a plain function dependency would cost a threadpool hop on every request
    grouped: GroupedAccept = request.app.state.grouped_accept
    return grouped


Grouped = Annotated[GroupedAccept, Depends(_grouped)]


def _email_out(
    m: Message, latest: dict[uuid.UUID, str], engagement: Engagement | None = None
) -> EmailOut:
    return EmailOut(
        id=str(m.id),
        message_id=m.message_id_header,
        to=m.to_addrs,
        from_=m.sender,
        created_at=m.created_at,
        subject=m.subject,
        html=m.html,
        text=m.text,
        bcc=m.bcc_addrs,
        cc=m.cc_addrs,
        reply_to=m.reply_to_addrs,
        # Accepting an email writes its first event, so ``latest`` has every email.
        last_event=latest.get(m.id, EventType.EMAIL_SENT.short),
        scheduled_at=m.scheduled_at,
        tags=m.tags,
        stream=m.stream,
        engagement=(
            None
            if engagement is None
            else EngagementOut(
                opens=engagement.opens,
                machine_opens=engagement.machine_opens,
                clicks=engagement.clicks,
                machine_clicks=engagement.machine_clicks,
                unsubscribed=engagement.unsubscribed,
            )
        ),
    )


async def _accept(
    services: Services,
    principal: AnyKey,
    messages: list[ComposedMessage],
    response: dict[str, Any],
    *,
    key: str | None,
    request_hash: Callable[[], bytes],
    options: AcceptOptions,
) -> dict[str, Any]:
    """One transaction: replay check, the ledger rows, the idempotency record. The request's
    fingerprint is computed only when an Idempotency-Key needs it."""
    async with services.db.tenant_conn(principal.tenant_id) as conn:
        fingerprint = request_hash() if key is not None else b""
        if key is not None:
            replay = await idempotency.begin(conn, principal.tenant_id, key, fingerprint)
            if replay is not None:
                return replay
        await accept_messages(conn, principal, messages, now=services.clock.now(), options=options)
        if key is not None:
            await idempotency.complete(conn, principal.tenant_id, key, fingerprint, response)
    if services.waker is not None and any(m.scheduled_at is None for m in messages):
        services.waker.poke()
    return response


@router.post("", response_model=SendEmailResponse)
async def send_email(
    body: SendEmailRequest,
    principal: AnyKey,
    services: Services,
    grouped: Grouped,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Send an email. The response comes after the email is durably queued."""
    key = idempotency.validate_key(idempotency_key) if idempotency_key is not None else None
    composed = compose_message(body, message_id=uuid7(), now=services.clock.now())
    if key is None:
        # Concurrent single sends of one key share a transaction (group commit); each
        # answer still waits for the commit that stored its email.
        await grouped.accept(principal, composed)
        if services.waker is not None and composed.scheduled_at is None:
            services.waker.poke()
        return {"id": str(composed.id)}

    def request_hash() -> bytes:
        payload = body.model_dump(by_alias=True, mode="json", exclude_none=True)
        return idempotency.fingerprint("POST /emails", payload)

    return await _accept(
        services,
        principal,
        [composed],
        {"id": str(composed.id)},
        key=key,
        request_hash=request_hash,
        options=grouped.options,
    )


def _compose_item(raw: Any, services: Services) -> ComposedMessage:
    try:
        request = SendEmailRequest.model_validate(raw)
    except ValidationError as exc:
        _, message = validation_message(list(exc.errors()))
        raise ValidationFailed(message) from None
    return compose_message(request, message_id=uuid7(), now=services.clock.now())


@router.post("/batch", response_model=BatchResponse, response_model_exclude_none=True)
async def send_batch(
    principal: AnyKey,
    services: Services,
    *,
    grouped: Grouped,
    body: Annotated[list[Any], Body(description="Up to 100 emails, each as in POST /emails.")],
    idempotency_key: IdempotencyKey = None,
    batch_validation: Annotated[str, Header(alias="x-batch-validation")] = "strict",
) -> dict[str, Any]:
    """Send up to 100 emails. `x-batch-validation: strict` (default) refuses the whole batch
    when one email is invalid; `permissive` sends the valid ones and lists the errors."""
    key = idempotency.validate_key(idempotency_key) if idempotency_key is not None else None
    if batch_validation not in {"strict", "permissive"}:
        raise ValidationFailed("The x-batch-validation header must be strict or permissive.")
    if not body or len(body) > MAX_BATCH:
        msg = f"A batch holds 1 to {MAX_BATCH} emails."
        raise ValidationFailed(msg)
    composed: list[ComposedMessage] = []
    errors: list[BatchError] = []
    for index, item in enumerate(body):
        try:
            composed.append(_compose_item(item, services))
        except AppError as exc:
            if batch_validation == "strict":
                raise type(exc)(f"Email {index}: {exc.message}") from None
            errors.append(BatchError(index=index, message=exc.message))
    # Plain dicts of BatchItemId's shape: a model per email cost microseconds for nothing.
    response: dict[str, Any] = {"data": [{"id": str(c.id)} for c in composed]}
    if batch_validation == "permissive":
        response["errors"] = [e.model_dump() for e in errors]
    return await _accept(
        services,
        principal,
        composed,
        response,
        key=key,
        request_hash=lambda: idempotency.fingerprint(
            f"POST /emails/batch {batch_validation}", body
        ),
        options=grouped.options,
    )


@router.get("")
async def list_emails(
    principal: FullAccess,
    services: Services,
    limit: Annotated[int | None, Query()] = None,
    after: Annotated[str | None, Query()] = None,
    before: Annotated[str | None, Query()] = None,
) -> EmailList:
    """List sent emails, newest first."""
    page = PageRequest.parse(limit, after, before)
    async with services.db.tenant_tx(principal.tenant_id) as session:
        result = await service.list_emails(session, principal.tenant_id, page=page)
        last = await last_events(session, principal.tenant_id, [m.id for m in result.items])
    return EmailList(has_more=result.has_more, data=[_email_out(m, last) for m in result.items])


@router.get("/{email_id}")
async def get_email(email_id: str, principal: FullAccess, services: Services) -> EmailOut:
    """Retrieve an email, with its `last_event` (and, as Postyard extensions, its `stream`
    and `engagement`: opens and clicks, human and machine apart)."""
    async with services.db.tenant_tx(principal.tenant_id) as session:
        message = await service.get_email(session, principal.tenant_id, email_id)
        last = await last_events(session, principal.tenant_id, [message.id])
        engagement = await get_engagement(session, principal.tenant_id, message.id)
    return _email_out(message, last, engagement)


@router.patch("/{email_id}")
async def update_email(
    email_id: str, body: UpdateEmailRequest, principal: FullAccess, services: Services
) -> EmailRef:
    """Reschedule a scheduled email."""
    async with services.db.tenant_tx(principal.tenant_id) as session:
        moved = await service.reschedule_email(
            session, principal.tenant_id, email_id, body.scheduled_at, now=services.clock.now()
        )
    return EmailRef(id=str(moved))


@router.post("/{email_id}/cancel")
async def cancel_email(email_id: str, principal: FullAccess, services: Services) -> EmailRef:
    """Cancel an email that has not been sent yet (scheduled, queued or waiting to retry)."""
    async with services.db.tenant_tx(principal.tenant_id) as session:
        canceled = await service.cancel_email(session, principal.tenant_id, email_id)
    return EmailRef(id=str(canceled))


@router.get("/{email_id}/events")
async def email_events(email_id: str, principal: FullAccess, services: Services) -> EmailTimeline:
    """The email's timeline: each recipient's delivery state (with the last SMTP reply) and
    every event, oldest first."""
    async with services.db.tenant_tx(principal.tenant_id) as session:
        recipients, events = await service.email_timeline(session, principal.tenant_id, email_id)
    return EmailTimeline(
        recipients=[
            RecipientState(
                email=r.email,
                status=r.status,
                attempts=r.attempts,
                next_attempt_at=r.next_attempt_at,
                last_reply=r.last_reply,
                bounce_type=r.bounce_type,
            )
            for r in recipients
        ],
        data=[
            EventOut(
                id=str(e.id),
                type=e.type,
                recipient=e.recipient,
                created_at=e.created_at,
                data=e.data,
            )
            for e in events
        ],
    )
