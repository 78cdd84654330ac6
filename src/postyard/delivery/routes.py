"""/v1/emails/{id}/content: what the capture server received for an email."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from postyard.core.http import Services
from postyard.core.json_route import JsonRoute
from postyard.delivery.capture import captured_for
from postyard.sending import service as sending
from postyard.tenancy.auth import FullAccess

router = APIRouter(route_class=JsonRoute, prefix="/emails", tags=["Emails"])


class CapturedOut(BaseModel):
    recipients: list[str]
    mail_from: str
    received_at: datetime
    raw: str


class EmailContent(BaseModel):
    object: Literal["email_content"] = "email_content"
    id: str
    captured: list[CapturedOut]


@router.get("/{email_id}/content")
async def email_content(email_id: str, principal: FullAccess, services: Services) -> EmailContent:
    """The raw MIME the capture server received for this email (capture mode), one entry per
    SMTP transaction. Empty until the worker has delivered it."""
    async with services.db.tenant_tx(principal.tenant_id) as session:
        message = await sending.get_email(session, principal.tenant_id, email_id)
        captured = await captured_for(session, principal.tenant_id, message.id)
    return EmailContent(
        id=str(message.id),
        captured=[
            CapturedOut(
                recipients=c.recipients,
                mail_from=c.mail_from,
                received_at=c.received_at,
                raw=c.raw.decode("utf-8", errors="replace"),
            )
            for c in captured
        ],
    )
