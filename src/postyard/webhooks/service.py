"""Use cases of webhook endpoints: create (with a secret shown once), read, update, remove,
rotate the secret, read the attempt log, replay deliveries.

Secrets are stored encrypted (``core.crypto``), bound to the tenant and the endpoint.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from postyard.core.crypto import decrypt_secret, encrypt_secret
from postyard.core.db import TenantId
from postyard.core.ids import parse_uuid, uuid7
from postyard.core.pagination import Page, PageRequest, fetch_page
from postyard.webhooks.errors import (
    InvalidWebhookEndpoint,
    InvalidWebhookEvent,
    WebhookDisabled,
    WebhookNotFound,
)
from postyard.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from postyard.webhooks.signing import generate_secret
from postyard.webhooks.ssrf import AddressPolicy, InvalidWebhookUrl, parse_webhook_url
from postyard.webhooks.types import (
    SUBSCRIBABLE_EVENTS,
    AttemptView,
    CreatedEndpoint,
    DeliveryStatus,
    DeliveryView,
    EndpointStatus,
    EndpointView,
)

MAX_EVENTS = 64


def secret_purpose(endpoint_id: uuid.UUID) -> str:
    """The associated data that binds an encrypted secret to its endpoint."""
    return f"webhook-secret:{endpoint_id}"


def check_url(url: str, policy: AddressPolicy) -> str:
    """``url`` if a webhook may be sent to it (what the URL alone decides; the addresses a
    name resolves to are checked at every attempt). Raises InvalidWebhookEndpoint."""
    try:
        parse_webhook_url(url, policy)
    except InvalidWebhookUrl as exc:
        raise InvalidWebhookEndpoint(f"The `endpoint` URL is not allowed: {exc}.") from None
    return url


def check_events(events: Sequence[str]) -> list[str]:
    """The event names, deduplicated in their order. Raises InvalidWebhookEvent when empty,
    too many, or one is not an event name."""
    if not events:
        raise InvalidWebhookEvent("The `events` list must name at least one event.")
    unknown = sorted({e for e in events if e not in SUBSCRIBABLE_EVENTS})
    if unknown:
        names = ", ".join(repr(e[:64]) for e in unknown[:5])
        known = ", ".join(sorted(SUBSCRIBABLE_EVENTS))
        raise InvalidWebhookEvent(f"Unknown event type(s): {names}. Known types: {known}.")
    unique = list(dict.fromkeys(events))
    if len(unique) > MAX_EVENTS:
        raise InvalidWebhookEvent(f"At most {MAX_EVENTS} event types per webhook.")
    return unique


def _view(endpoint: WebhookEndpoint) -> EndpointView:
    return EndpointView(
        id=endpoint.id,
        url=endpoint.url,
        events=list(endpoint.events),
        status=EndpointStatus(endpoint.status),
        disabled_reason=endpoint.disabled_reason,
        failing_since=endpoint.failing_since,
        previous_secret_expires_at=endpoint.previous_secret_expires_at,
        created_at=endpoint.created_at,
    )


async def _require(
    session: AsyncSession, tenant_id: TenantId, endpoint_id: str, *, lock: bool = False
) -> WebhookEndpoint:
    parsed = parse_uuid(endpoint_id)
    endpoint = None
    if parsed is not None:
        stmt = select(WebhookEndpoint).where(
            WebhookEndpoint.id == parsed, WebhookEndpoint.tenant_id == tenant_id
        )
        endpoint = await session.scalar(stmt.with_for_update() if lock else stmt)
    if endpoint is None:
        raise WebhookNotFound("Webhook not found.")
    return endpoint


async def create_endpoint(
    session: AsyncSession,
    tenant_id: TenantId,
    *,
    url: str,
    events: Sequence[str],
    kek: bytes,
    policy: AddressPolicy,
    now: datetime,
) -> CreatedEndpoint:
    """Add an enabled endpoint for ``events``. Raises InvalidWebhookEndpoint for a URL the
    SSRF policy refuses and InvalidWebhookEvent for unknown event names."""
    check_url(url, policy)
    names = check_events(events)
    endpoint_id = uuid7()
    secret = generate_secret()
    endpoint = WebhookEndpoint(
        id=endpoint_id,
        tenant_id=tenant_id,
        url=url,
        events=names,
        status=EndpointStatus.ENABLED.value,
        secret=encrypt_secret(
            kek, secret.encode(), tenant_id=tenant_id, purpose=secret_purpose(endpoint_id)
        ),
        created_at=now,
        updated_at=now,
    )
    session.add(endpoint)
    await session.flush()
    return CreatedEndpoint(view=_view(endpoint), secret=secret)


async def list_endpoints(
    session: AsyncSession, tenant_id: TenantId, *, page: PageRequest
) -> Page[EndpointView]:
    """The tenant's endpoints, newest first."""
    stmt = select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant_id)
    result = await fetch_page(session, stmt, WebhookEndpoint.id, page)
    return Page(items=[_view(e) for e in result.items], has_more=result.has_more)


async def get_endpoint(
    session: AsyncSession, tenant_id: TenantId, endpoint_id: str
) -> EndpointView:
    """One endpoint; raises WebhookNotFound (also for another tenant's)."""
    return _view(await _require(session, tenant_id, endpoint_id))


async def update_endpoint(
    session: AsyncSession,
    tenant_id: TenantId,
    endpoint_id: str,
    *,
    url: str | None = None,
    events: Sequence[str] | None = None,
    status: EndpointStatus | None = None,
    policy: AddressPolicy,
    now: datetime,
) -> EndpointView:
    """Change the URL, the events or the status. Enabling clears the failure record;
    disabling fails the deliveries still waiting (replay them after enabling again).
    Raises WebhookNotFound, InvalidWebhookEndpoint, InvalidWebhookEvent."""
    endpoint = await _require(session, tenant_id, endpoint_id, lock=True)
    if url is not None:
        endpoint.url = check_url(url, policy)
    if events is not None:
        endpoint.events = check_events(events)
    if status is EndpointStatus.ENABLED and endpoint.status != status.value:
        endpoint.status, endpoint.disabled_reason, endpoint.failing_since = status.value, None, None
    elif status is EndpointStatus.DISABLED and endpoint.status != status.value:
        await disable(session, endpoint, reason="disabled through the API", now=now)
    endpoint.updated_at = now
    await session.flush()
    return _view(endpoint)


async def disable(
    session: AsyncSession, endpoint: WebhookEndpoint, *, reason: str, now: datetime
) -> None:
    """Disable ``endpoint`` and fail its waiting deliveries (not the ones in flight)."""
    endpoint.status, endpoint.disabled_reason, endpoint.updated_at = "disabled", reason, now
    await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint.id,
            WebhookDelivery.status == DeliveryStatus.PENDING.value,
        )
        .values(
            status=DeliveryStatus.FAILED.value,
            last_error=f"endpoint disabled: {reason}",
            updated_at=now,
        )
    )


async def delete_endpoint(
    session: AsyncSession, tenant_id: TenantId, endpoint_id: str
) -> uuid.UUID:
    """Remove an endpoint with its deliveries and attempt log. Raises WebhookNotFound."""
    endpoint = await _require(session, tenant_id, endpoint_id)
    await session.execute(
        delete(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint.id, WebhookEndpoint.tenant_id == tenant_id
        )
    )
    return endpoint.id


async def rotate_secret(
    session: AsyncSession,
    tenant_id: TenantId,
    endpoint_id: str,
    *,
    kek: bytes,
    overlap: timedelta,
    now: datetime,
) -> CreatedEndpoint:
    """A new secret signs from now on; the current one keeps signing beside it (both
    signatures in one header) until ``now + overlap``. A rotation during an overlap drops
    the oldest secret. Raises WebhookNotFound."""
    endpoint = await _require(session, tenant_id, endpoint_id, lock=True)
    secret = generate_secret()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + overlap
    endpoint.secret = encrypt_secret(
        kek, secret.encode(), tenant_id=tenant_id, purpose=secret_purpose(endpoint.id)
    )
    endpoint.updated_at = now
    await session.flush()
    return CreatedEndpoint(view=_view(endpoint), secret=secret)


def signing_secrets(
    kek: bytes,
    *,
    tenant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    secret: bytes,
    previous: bytes | None,
    previous_expires_at: datetime | None,
    now: datetime,
) -> list[str]:
    """The secrets that sign now: the current one, then the previous one during its overlap.
    Raises SecretDecryptionError for a blob that does not decrypt."""
    purpose = secret_purpose(endpoint_id)
    blobs = [secret]
    if previous is not None and previous_expires_at is not None and now < previous_expires_at:
        blobs.append(previous)
    return [decrypt_secret(kek, b, tenant_id=tenant_id, purpose=purpose).decode() for b in blobs]


async def list_attempts(
    session: AsyncSession, tenant_id: TenantId, endpoint_id: str, *, page: PageRequest
) -> Page[AttemptView]:
    """The endpoint's attempt log, newest first (kept 30 days). Raises WebhookNotFound."""
    endpoint = await _require(session, tenant_id, endpoint_id)
    stmt = select(WebhookAttempt).where(
        WebhookAttempt.tenant_id == tenant_id, WebhookAttempt.endpoint_id == endpoint.id
    )
    result = await fetch_page(session, stmt, WebhookAttempt.id, page)
    return Page(
        items=[
            AttemptView(
                id=a.id,
                delivery_id=a.delivery_id,
                event_type=a.event_type,
                attempt=a.attempt,
                status_code=a.status_code,
                response=a.response,
                duration_ms=a.duration_ms,
                error=a.error,
                created_at=a.created_at,
            )
            for a in result.items
        ],
        has_more=result.has_more,
    )


async def replay_delivery(
    session: AsyncSession, tenant_id: TenantId, endpoint_id: str, delivery_id: str, *, now: datetime
) -> DeliveryView:
    """Send one delivery again now, with a fresh retry ladder (one in flight is left to
    finish). Raises WebhookNotFound, and WebhookDisabled while the endpoint is disabled."""
    endpoint = await _require(session, tenant_id, endpoint_id)
    parsed = parse_uuid(delivery_id)
    row = None
    if parsed is not None:
        row = await session.scalar(
            select(WebhookDelivery)
            .where(
                WebhookDelivery.id == parsed,
                WebhookDelivery.tenant_id == tenant_id,
                WebhookDelivery.endpoint_id == endpoint.id,
            )
            .with_for_update()
        )
    if row is None:
        raise WebhookNotFound("Webhook delivery not found.")
    if endpoint.status != EndpointStatus.ENABLED.value:
        raise WebhookDisabled("The webhook is disabled: enable it before replaying.")
    if row.status != DeliveryStatus.SENDING.value:
        row.status, row.attempts, row.next_attempt_at = DeliveryStatus.PENDING.value, 0, now
        row.updated_at = now
        await session.flush()
    return DeliveryView(
        id=row.id,
        endpoint_id=row.endpoint_id,
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
    )


async def replay_failed_since(
    session: AsyncSession, tenant_id: TenantId, endpoint_id: str, *, since: datetime, now: datetime
) -> int:
    """Send again every failed delivery of events written at or after ``since``; returns
    how many. Raises WebhookNotFound, and WebhookDisabled while the endpoint is disabled."""
    endpoint = await _require(session, tenant_id, endpoint_id)
    if endpoint.status != EndpointStatus.ENABLED.value:
        raise WebhookDisabled("The webhook is disabled: enable it before replaying.")
    result = await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.tenant_id == tenant_id,
            WebhookDelivery.endpoint_id == endpoint.id,
            WebhookDelivery.status == DeliveryStatus.FAILED.value,
            WebhookDelivery.created_at >= since,
        )
        .values(
            status=DeliveryStatus.PENDING.value, attempts=0, next_attempt_at=now, updated_at=now
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
