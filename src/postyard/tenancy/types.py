"""Values of the tenancy domain shared with other domains and adapters."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from postyard.core.db import TenantId


class OrgStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    DELETED = "deleted"


class Scope(StrEnum):
    """What an API key may do: everything, or only send email."""

    FULL = "full"
    SENDING = "sending"


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of an API request or SMTP session, after authentication."""

    tenant_id: TenantId
    api_key_id: uuid.UUID
    scope: Scope


@dataclass(frozen=True, slots=True)
class OrganizationView:
    id: TenantId
    slug: str
    name: str
    status: OrgStatus
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKeyView:
    id: uuid.UUID
    name: str
    scope: Scope
    token_prefix: str
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    """A new key; ``token`` exists only here and is never stored or shown again."""

    id: uuid.UUID
    token: str
    view: ApiKeyView
