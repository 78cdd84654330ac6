"""Bodies of /v1/suppressions."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from postyard.suppression.types import SuppressionReason, SuppressionView


class CreateSuppressionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=400, description="The address to stop sending to.")
    reason: SuppressionReason = Field(
        default=SuppressionReason.MANUAL, description="Why; `manual` when absent."
    )
    expires_at: datetime | None = Field(
        default=None,
        description="When the entry stops suppressing (ISO 8601, UTC when no offset); "
        "never when absent.",
    )


class SuppressionOut(BaseModel):
    object: Literal["suppression"] = "suppression"
    id: str
    email: str
    reason: SuppressionReason
    source_email_id: str | None
    detail: str | None
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, view: SuppressionView) -> SuppressionOut:
        return cls(
            id=str(view.id),
            email=view.email,
            reason=view.reason,
            source_email_id=str(view.source_email_id) if view.source_email_id else None,
            detail=view.detail,
            expires_at=view.expires_at,
            created_at=view.created_at,
            updated_at=view.updated_at,
        )


class SuppressionList(BaseModel):
    object: Literal["list"] = "list"
    has_more: bool
    data: list[SuppressionOut]


class DeletedSuppression(BaseModel):
    object: Literal["suppression"] = "suppression"
    id: str
    email: str
    deleted: bool = True
