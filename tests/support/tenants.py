"""An organisation with a full-access key, made through the services the CLI calls."""

from __future__ import annotations

import uuid

from postyard.core.db import Database, TenantId
from postyard.tenancy import service as tenancy
from postyard.tenancy.types import Scope


async def tenant_with_key(db: Database, name: str) -> tuple[TenantId, dict[str, str]]:
    """A new organisation (unique slug) and the Authorization header of a key of it."""
    async with db.system_tx(reason="test") as s:
        org = await tenancy.create_organization(s, name=name, slug=f"{name}-{uuid.uuid4().hex[:8]}")
    async with db.tenant_tx(org.id) as s:
        key = await tenancy.create_api_key(s, org.id, name="k", scope=Scope.FULL)
    return org.id, {"Authorization": f"Bearer {key.token}"}
