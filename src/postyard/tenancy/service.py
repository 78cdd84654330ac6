"""Use cases of the tenancy domain: organisations, API keys and authentication.

Functions take the session of a transaction their caller opened (``system_tx`` for
organisations and authentication, ``tenant_tx`` for a tenant's keys); none commits.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from postyard.core.db import TenantId
from postyard.core.errors import (
    InvalidApiKey,
    MissingApiKey,
    NotFound,
    OrganizationSuspended,
    ValidationFailed,
)
from postyard.core.ids import parse_uuid, uuid7
from postyard.core.pagination import Page, PageRequest, fetch_page
from postyard.tenancy import keys
from postyard.tenancy.errors import SlugTaken
from postyard.tenancy.models import ApiKey, Organization
from postyard.tenancy.slugs import is_valid_slug, slugify
from postyard.tenancy.types import (
    ApiKeyView,
    CreatedApiKey,
    OrganizationView,
    OrgStatus,
    Principal,
    Scope,
)

# last_used_at is a hint, not a log: write it at most once a minute per key.
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_KEY_NAME = 50


def _org_view(org: Organization) -> OrganizationView:
    return OrganizationView(
        id=TenantId(org.id),
        slug=org.slug,
        name=org.name,
        status=OrgStatus(org.status),
        created_at=org.created_at,
    )


def _key_view(key: ApiKey) -> ApiKeyView:
    return ApiKeyView(
        id=key.id,
        name=key.name,
        scope=Scope(key.scope),
        token_prefix=key.token_prefix,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
    )


async def create_organization(
    session: AsyncSession, *, name: str, slug: str | None = None
) -> OrganizationView:
    """Create an active organisation. Raises ValidationFailed, SlugTaken."""
    name = name.strip()
    if not name or len(name) > 200:
        msg = "The organization name must have 1 to 200 characters."
        raise ValidationFailed(msg)
    slug = slug if slug is not None else slugify(name)
    if not is_valid_slug(slug):
        msg = (
            f"The slug {slug!r} is invalid: use 1-63 lowercase letters, digits and single "
            "hyphens, starting and ending with a letter or digit."
        )
        raise ValidationFailed(msg)
    # ON CONFLICT instead of catching IntegrityError: the caller's transaction stays usable.
    org = await session.scalar(
        insert(Organization)
        .values(id=uuid7(), slug=slug, name=name, status=OrgStatus.ACTIVE)
        .on_conflict_do_nothing(index_elements=[Organization.slug])
        .returning(Organization)
    )
    if org is None:
        msg = f"An organization with the slug {slug!r} already exists."
        raise SlugTaken(msg)
    return _org_view(org)


async def get_organization(session: AsyncSession, ref: str) -> OrganizationView | None:
    """The organisation whose id or slug is ``ref``, or None."""
    org_id = parse_uuid(ref)
    cond = Organization.id == org_id if org_id is not None else Organization.slug == ref
    org = await session.scalar(select(Organization).where(cond))
    return _org_view(org) if org is not None else None


async def require_organization(session: AsyncSession, ref: str) -> OrganizationView:
    """Like get_organization; raises NotFound."""
    org = await get_organization(session, ref)
    if org is None or org.status is OrgStatus.DELETED:
        msg = f"Organization {ref!r} not found."
        raise NotFound(msg)
    return org


async def list_organizations(session: AsyncSession) -> list[OrganizationView]:
    rows = await session.scalars(
        select(Organization)
        .where(Organization.status != OrgStatus.DELETED)
        .order_by(Organization.id)
    )
    return [_org_view(org) for org in rows]


async def set_organization_status(
    session: AsyncSession, ref: str, status: OrgStatus
) -> OrganizationView:
    """Suspend, reactivate or delete an organisation. Raises NotFound."""
    org = await require_organization(session, ref)
    await session.execute(
        update(Organization)
        .where(Organization.id == org.id)
        .values(status=status, updated_at=func.now())
    )
    return OrganizationView(
        id=org.id, slug=org.slug, name=org.name, status=status, created_at=org.created_at
    )


async def create_api_key(
    session: AsyncSession, tenant_id: TenantId, *, name: str, scope: Scope
) -> CreatedApiKey:
    """Create a key; the token is returned once and only its digest is stored."""
    name = name.strip()
    if not name or len(name) > MAX_KEY_NAME:
        msg = f"The `name` field must have 1 to {MAX_KEY_NAME} characters."
        raise ValidationFailed(msg)
    new = keys.generate_token()
    key = ApiKey(
        id=uuid7(),
        tenant_id=tenant_id,
        name=name,
        lookup_id=new.lookup_id,
        token_prefix=new.prefix,
        token_hash=new.digest,
        scope=scope,
    )
    session.add(key)
    await session.flush()
    await session.refresh(key)
    return CreatedApiKey(id=key.id, token=new.token, view=_key_view(key))


async def list_api_keys(
    session: AsyncSession, tenant_id: TenantId, *, page: PageRequest
) -> Page[ApiKeyView]:
    """The tenant's active (not revoked) keys, newest first."""
    stmt = select(ApiKey).where(ApiKey.tenant_id == tenant_id, ApiKey.revoked_at.is_(None))
    result = await fetch_page(session, stmt, ApiKey.id, page)
    return Page(items=[_key_view(k) for k in result.items], has_more=result.has_more)


async def revoke_api_key(session: AsyncSession, tenant_id: TenantId, key_id: str) -> uuid.UUID:
    """Revoke a key at once (it authenticates nothing afterwards). Raises NotFound."""
    parsed = parse_uuid(key_id)
    revoked: uuid.UUID | None = None
    if parsed is not None:
        revoked = await session.scalar(
            update(ApiKey)
            .where(ApiKey.id == parsed, ApiKey.tenant_id == tenant_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=func.now())
            .returning(ApiKey.id)
        )
    if revoked is None:
        msg = "API key not found."
        raise NotFound(msg)
    return revoked


async def authenticate(session: AsyncSession, token: str | None, *, now: datetime) -> Principal:
    """The principal a bearer token stands for (session: a system_tx).

    Raises MissingApiKey (no token), InvalidApiKey (malformed, unknown, revoked, or its
    organisation deleted) or OrganizationSuspended.
    """
    if not token:
        msg = "Missing API key in the authorization header. Use `Authorization: Bearer <key>`."
        raise MissingApiKey(msg)
    lookup_id = keys.parse_lookup_id(token)
    row = None
    if lookup_id is not None:
        row = (
            await session.execute(
                select(ApiKey, Organization.status)
                .join(Organization, Organization.id == ApiKey.tenant_id)
                .where(ApiKey.lookup_id == lookup_id)
            )
        ).first()
    if row is None or lookup_id is None:
        raise InvalidApiKey("API key is invalid.")
    key, org_status = row
    if not keys.token_matches(token, key.token_hash) or key.revoked_at is not None:
        raise InvalidApiKey("API key is invalid.")
    if org_status == OrgStatus.DELETED:
        raise InvalidApiKey("API key is invalid.")
    if org_status == OrgStatus.SUSPENDED:
        msg = "This organization is suspended; its API keys are refused until it is reactivated."
        raise OrganizationSuspended(msg)
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        await session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
    return Principal(tenant_id=TenantId(key.tenant_id), api_key_id=key.id, scope=Scope(key.scope))
