"""Request and response bodies of /v1/domains (Resend's shapes)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from postyard.domains.types import DomainView

REGION = "self-hosted"


class CreateDomainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=300)
    region: str | None = Field(default=None, description="Accepted for compatibility; ignored.")
    custom_return_path: str | None = Field(
        default=None, description="Return-path (bounce) subdomain; default `send`."
    )
    open_tracking: bool = False
    click_tracking: bool = False
    tls: Literal["opportunistic", "enforced"] = "opportunistic"
    tracking_subdomain: str | None = None


class UpdateDomainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    open_tracking: bool | None = None
    click_tracking: bool | None = None
    tls: Literal["opportunistic", "enforced"] | None = None
    tracking_subdomain: str | None = None


class RecordOut(BaseModel):
    record: str
    name: str
    type: str
    ttl: str = "Auto"
    status: str
    value: str
    priority: int | None = None


class DomainOut(BaseModel):
    object: Literal["domain"] = "domain"
    id: str
    name: str
    status: str
    created_at: datetime
    region: str = REGION
    open_tracking: bool
    click_tracking: bool
    tls: str
    tracking_subdomain: str | None
    return_path: str
    records: list[RecordOut]

    @classmethod
    def of(cls, view: DomainView) -> DomainOut:
        return cls(
            id=str(view.id),
            name=view.name,
            status=view.status.value,
            created_at=view.created_at,
            open_tracking=view.open_tracking,
            click_tracking=view.click_tracking,
            tls=view.tls,
            tracking_subdomain=view.tracking_subdomain,
            return_path=view.return_path,
            records=[
                RecordOut(
                    record=r.record,
                    name=r.name,
                    type=r.type,
                    status=status.value,
                    value=r.value,
                    priority=r.priority,
                )
                for r, status in view.records
            ],
        )


class DomainList(BaseModel):
    object: Literal["list"] = "list"
    has_more: bool
    data: list[DomainOut]


class DomainRef(BaseModel):
    object: Literal["domain"] = "domain"
    id: str
    status: str | None = None


class DeletedDomain(BaseModel):
    object: Literal["domain"] = "domain"
    id: str
    deleted: bool = True
