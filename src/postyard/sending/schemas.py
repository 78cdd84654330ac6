"""Request and response bodies of /v1/emails (Resend's shapes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

Recipients = str | list[str]


class AttachmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str | list[int] | None = Field(
        default=None, description="Base64 content (or a list of byte values, as the SDKs send)."
    )
    filename: str | None = Field(default=None, max_length=255)
    path: str | None = Field(default=None, description="Remote URL: not fetched (refused).")
    content_type: str | None = Field(default=None, max_length=255)
    content_id: str | None = Field(
        default=None, max_length=255, description="Makes the attachment inline: cid:<content_id>."
    )
    inline_content_id: str | None = Field(default=None, max_length=255)


class TagIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    value: str


class SendEmailRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str = Field(alias="from", description='"you@example.com" or "Name <you@example.com>".')
    to: Recipients
    subject: str
    cc: Recipients | None = None
    bcc: Recipients | None = None
    reply_to: Recipients | None = None
    html: str | None = None
    text: str | None = Field(
        default=None, description="Plain text; generated from html when absent; '' disables it."
    )
    headers: dict[str, str] | None = None
    attachments: list[AttachmentIn] | None = None
    tags: list[TagIn] | None = None
    scheduled_at: str | None = Field(
        default=None, description="ISO 8601 or natural language ('in 1 hour'), ≤ 30 days ahead."
    )
    stream: Literal["transactional", "bulk"] | None = Field(
        default=None,
        description="Postyard extension: `transactional` (default) or `bulk` (marketing, "
        "newsletters: gets List-Unsubscribe with one-click and CFBL headers).",
    )
    open_tracking: StrictBool | None = Field(
        default=None, description="Postyard extension: overrides the domain's `open_tracking`."
    )
    click_tracking: StrictBool | None = Field(
        default=None, description="Postyard extension: overrides the domain's `click_tracking`."
    )
    list_unsubscribe: StrictBool | None = Field(
        default=None,
        description="Postyard extension: add List-Unsubscribe (one-click) headers; default: "
        "true for `bulk`, false for `transactional`.",
    )


class SendEmailResponse(BaseModel):
    id: str


class BatchItemId(BaseModel):
    id: str


class BatchError(BaseModel):
    index: int
    message: str


class BatchResponse(BaseModel):
    data: list[BatchItemId]
    errors: list[BatchError] | None = None


class UpdateEmailRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scheduled_at: str
    id: str | None = Field(default=None, description="Ignored (Resend's SDKs repeat the id).")


class EmailRef(BaseModel):
    object: Literal["email"] = "email"
    id: str


class EngagementOut(BaseModel):
    opens: int
    machine_opens: int
    clicks: int
    machine_clicks: int
    unsubscribed: bool


class EmailOut(BaseModel):
    object: Literal["email"] = "email"
    id: str
    message_id: str
    to: list[str]
    from_: str = Field(serialization_alias="from")
    created_at: datetime
    subject: str
    html: str | None
    text: str | None
    bcc: list[str]
    cc: list[str]
    reply_to: list[str]
    last_event: str
    scheduled_at: datetime | None
    tags: list[dict[str, Any]]
    stream: str = Field(description="Postyard extension: `transactional` or `bulk`.")
    engagement: EngagementOut | None = Field(
        default=None,
        description="Postyard extension: opens and clicks, human and machine apart (null when "
        "the email tracks nothing; only in GET /emails/{id}).",
    )


class EmailList(BaseModel):
    object: Literal["list"] = "list"
    has_more: bool
    data: list[EmailOut]


class RecipientState(BaseModel):
    email: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_reply: str | None
    bounce_type: str | None = None


class EventOut(BaseModel):
    id: str
    type: str
    recipient: str | None
    created_at: datetime
    data: dict[str, Any]


class EmailTimeline(BaseModel):
    object: Literal["list"] = "list"
    recipients: list[RecipientState]
    data: list[EventOut]
