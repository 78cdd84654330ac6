"""Request and response bodies of the API-key endpoints (Resend's shapes)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from postyard.tenancy.types import ApiKeyView, Scope


class Permission(StrEnum):
    FULL_ACCESS = "full_access"
    SENDING_ACCESS = "sending_access"

    @property
    def scope(self) -> Scope:
        return Scope.FULL if self is Permission.FULL_ACCESS else Scope.SENDING


class CreateApiKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=50, description="The API key name.")
    permission: Permission = Field(
        default=Permission.FULL_ACCESS,
        description="full_access: every endpoint; sending_access: only sending email.",
    )
    domain_id: str | None = Field(
        default=None, description="Restrict a sending key to one domain (needs domains)."
    )


class CreateApiKeyResponse(BaseModel):
    id: str
    token: str


class ApiKeyItem(BaseModel):
    id: str
    name: str
    permission: Permission
    token_prefix: str
    created_at: datetime
    last_used_at: datetime | None

    @classmethod
    def of(cls, view: ApiKeyView) -> ApiKeyItem:
        return cls(
            id=str(view.id),
            name=view.name,
            permission=(
                Permission.FULL_ACCESS if view.scope is Scope.FULL else Permission.SENDING_ACCESS
            ),
            token_prefix=view.token_prefix,
            created_at=view.created_at,
            last_used_at=view.last_used_at,
        )


class ApiKeyList(BaseModel):
    object: Literal["list"] = "list"
    has_more: bool
    data: list[ApiKeyItem]


class DeletedApiKey(BaseModel):
    object: Literal["api_key"] = "api_key"
    id: str
    deleted: bool = True
