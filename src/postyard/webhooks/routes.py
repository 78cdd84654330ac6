"""/v1/webhooks: thin adapters over the webhooks service."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from postyard.core.errors import ValidationFailed
from postyard.core.http import Services
from postyard.core.json_route import JsonRoute
from postyard.core.pagination import PageRequest
from postyard.tenancy.auth import FullAccess
from postyard.webhooks import service
from postyard.webhooks.schemas import (
    AttemptList,
    AttemptOut,
    CreatedWebhook,
    CreateWebhookRequest,
    DeletedWebhook,
    ReplayedDelivery,
    ReplayedSince,
    ReplaySinceRequest,
    RotatedSecret,
    UpdateWebhookRequest,
    WebhookList,
    WebhookOut,
    WebhookRef,
)
from postyard.webhooks.ssrf import AddressPolicy
from postyard.webhooks.types import EndpointStatus

router = APIRouter(route_class=JsonRoute, prefix="/webhooks", tags=["Webhooks"])


@dataclass(frozen=True, slots=True)
class WebhookDeps:
    """What the webhook routes need beyond AppServices, set on app.state at start-up."""

    policy: AddressPolicy
    kek: bytes
    rotation_overlap: timedelta


def _deps(request: Request) -> WebhookDeps:
    deps: WebhookDeps = request.app.state.webhook_deps
    return deps


Deps = Annotated[WebhookDeps, Depends(_deps)]
Limit = Annotated[int | None, Query()]
Cursor = Annotated[str | None, Query()]


@router.post("")
async def create_webhook(
    body: CreateWebhookRequest, principal: FullAccess, services: Services, deps: Deps
) -> CreatedWebhook:
    """Add an endpoint for the given events. The signing secret is in this response only."""
    async with services.db.tenant_tx(principal.tenant_id) as session:
        created = await service.create_endpoint(
            session,
            principal.tenant_id,
            url=body.endpoint,
            events=body.events,
            kek=deps.kek,
            policy=deps.policy,
            now=services.clock.now(),
        )
    return CreatedWebhook(id=str(created.view.id), signing_secret=created.secret)


@router.get("")
async def list_webhooks(
    principal: FullAccess,
    services: Services,
    *,
    limit: Limit = None,
    after: Cursor = None,
    before: Cursor = None,
) -> WebhookList:
    """List the organization's webhooks, newest first."""
    page = PageRequest.parse(limit, after, before)
    async with services.db.tenant_tx(principal.tenant_id) as session:
        result = await service.list_endpoints(session, principal.tenant_id, page=page)
    return WebhookList(has_more=result.has_more, data=[WebhookOut.of(v) for v in result.items])


@router.get("/{webhook_id}")
async def get_webhook(webhook_id: str, principal: FullAccess, services: Services) -> WebhookOut:
    """One webhook (without its secret)."""
    async with services.db.tenant_tx(principal.tenant_id) as session:
        view = await service.get_endpoint(session, principal.tenant_id, webhook_id)
    return WebhookOut.of(view)


@router.patch("/{webhook_id}")
async def update_webhook(
    webhook_id: str,
    body: UpdateWebhookRequest,
    principal: FullAccess,
    services: Services,
    deps: Deps,
) -> WebhookRef:
    """Change the endpoint URL, the events, or the status (`enabled` / `disabled`)."""
    if body.webhook_id is not None and body.webhook_id != webhook_id:
        raise ValidationFailed("`webhook_id` in the body names another webhook than the path.")
    async with services.db.tenant_tx(principal.tenant_id) as session:
        view = await service.update_endpoint(
            session,
            principal.tenant_id,
            webhook_id,
            url=body.endpoint,
            events=body.events,
            status=EndpointStatus(body.status) if body.status else None,
            policy=deps.policy,
            now=services.clock.now(),
        )
    return WebhookRef(id=str(view.id))


@router.delete("/{webhook_id}")
async def delete_webhook(
    webhook_id: str, principal: FullAccess, services: Services
) -> DeletedWebhook:
    """Remove a webhook, its pending deliveries and its attempt log."""
    async with services.db.tenant_tx(principal.tenant_id) as session:
        deleted = await service.delete_endpoint(session, principal.tenant_id, webhook_id)
    return DeletedWebhook(id=str(deleted))


@router.post("/{webhook_id}/rotate-secret")
async def rotate_secret(
    webhook_id: str, principal: FullAccess, services: Services, deps: Deps
) -> RotatedSecret:
    """A new signing secret (shown once). The old one keeps signing beside it until
    `previous_secret_expires_at`: both signatures go in `webhook-signature`."""
    async with services.db.tenant_tx(principal.tenant_id) as session:
        rotated = await service.rotate_secret(
            session,
            principal.tenant_id,
            webhook_id,
            kek=deps.kek,
            overlap=deps.rotation_overlap,
            now=services.clock.now(),
        )
    return RotatedSecret(
        id=str(rotated.view.id),
        signing_secret=rotated.secret,
        previous_secret_expires_at=rotated.view.previous_secret_expires_at,
    )


@router.get("/{webhook_id}/deliveries")
async def list_deliveries(
    webhook_id: str,
    principal: FullAccess,
    services: Services,
    *,
    limit: Limit = None,
    after: Cursor = None,
    before: Cursor = None,
) -> AttemptList:
    """The attempt log (status, response excerpt, duration, error), newest first; 30 days."""
    page = PageRequest.parse(limit, after, before)
    async with services.db.tenant_tx(principal.tenant_id) as session:
        result = await service.list_attempts(session, principal.tenant_id, webhook_id, page=page)
    return AttemptList(has_more=result.has_more, data=[AttemptOut.of(a) for a in result.items])


@router.post("/{webhook_id}/deliveries/{delivery_id}/replay")
async def replay_delivery(
    webhook_id: str, delivery_id: str, principal: FullAccess, services: Services
) -> ReplayedDelivery:
    """Send one delivery again now, with a fresh retry schedule."""
    async with services.db.tenant_tx(principal.tenant_id) as session:
        view = await service.replay_delivery(
            session, principal.tenant_id, webhook_id, delivery_id, now=services.clock.now()
        )
    return ReplayedDelivery(
        id=str(view.id), status=view.status.value, next_attempt_at=view.next_attempt_at
    )


@router.post("/{webhook_id}/replay")
async def replay_failed(
    webhook_id: str, body: ReplaySinceRequest, principal: FullAccess, services: Services
) -> ReplayedSince:
    """Send again every failed delivery of events written since `since`."""
    async with services.db.tenant_tx(principal.tenant_id) as session:
        count = await service.replay_failed_since(
            session, principal.tenant_id, webhook_id, since=body.since, now=services.clock.now()
        )
    return ReplayedSince(webhook_id=webhook_id, replayed=count)
