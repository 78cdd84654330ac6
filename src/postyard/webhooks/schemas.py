"""Request and response bodies of /v1/webhooks (Resend's shapes, plus our extensions)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from postyard.webhooks.types import AttemptView, EndpointView


class CreateWebhookRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field(min_length=1, max_length=4096, description="The https URL to POST to.")
    events: list[str] = Field(description="Event types to send, e.g. `email.delivered`.")


class UpdateWebhookRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    webhook_id: str | None = Field(
        default=None, description="Sent by Resend's SDKs; when given, the id in the path."
    )
    endpoint: str | None = Field(default=None, min_length=1, max_length=4096)
    events: list[str] | None = None
    status: Literal["enabled", "disabled"] | None = None


class ReplaySinceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: AwareDatetime = Field(description="Replay failed deliveries of events since then.")


class CreatedWebhook(BaseModel):
    object: Literal["webhook"] = "webhook"
    id: str
    signing_secret: str = Field(description="Shown only here: store it to verify signatures.")


class RotatedSecret(BaseModel):
    object: Literal["webhook"] = "webhook"
    id: str
    signing_secret: str
    previous_secret_expires_at: datetime | None


class WebhookOut(BaseModel):
    object: Literal["webhook"] = "webhook"
    id: str
    endpoint: str
    events: list[str]
    status: str
    created_at: datetime
    disabled_reason: str | None = None
    failing_since: datetime | None = None
    previous_secret_expires_at: datetime | None = None

    @classmethod
    def of(cls, view: EndpointView) -> WebhookOut:
        return cls(
            id=str(view.id),
            endpoint=view.url,
            events=view.events,
            status=view.status.value,
            created_at=view.created_at,
            disabled_reason=view.disabled_reason,
            failing_since=view.failing_since,
            previous_secret_expires_at=view.previous_secret_expires_at,
        )


class WebhookList(BaseModel):
    object: Literal["list"] = "list"
    has_more: bool
    data: list[WebhookOut]


class WebhookRef(BaseModel):
    object: Literal["webhook"] = "webhook"
    id: str


class DeletedWebhook(WebhookRef):
    deleted: bool = True


class AttemptOut(BaseModel):
    object: Literal["webhook_attempt"] = "webhook_attempt"
    id: str
    delivery_id: str
    event_type: str
    attempt: int
    status_code: int | None
    response: str
    duration_ms: int
    error: str | None
    success: bool
    created_at: datetime

    @classmethod
    def of(cls, view: AttemptView) -> AttemptOut:
        return cls(
            id=str(view.id),
            delivery_id=str(view.delivery_id),
            event_type=view.event_type,
            attempt=view.attempt,
            status_code=view.status_code,
            response=view.response,
            duration_ms=view.duration_ms,
            error=view.error,
            success=view.error is None,
            created_at=view.created_at,
        )


class AttemptList(BaseModel):
    object: Literal["list"] = "list"
    has_more: bool
    data: list[AttemptOut]


class ReplayedDelivery(BaseModel):
    object: Literal["webhook_delivery"] = "webhook_delivery"
    id: str
    status: str
    next_attempt_at: datetime


class ReplayedSince(BaseModel):
    object: Literal["webhook_replay"] = "webhook_replay"
    webhook_id: str
    replayed: int
