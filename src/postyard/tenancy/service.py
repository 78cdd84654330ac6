"""Use cases of the tenancy domain: organisations, API keys and authentication.

Functions take the session of a transaction their caller opened (``system_tx`` for
organisations, ``tenant_tx`` for a tenant's keys; authentication, a hot path, a bare
``system_conn`` connection); none commits.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import asyncpg
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from postyard.core.db import DriverStatement, TenantId
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


# One round trip: the key and its organisation, the (throttled) last_used_at touch and the
# rate-limit window count. Writes happen only for a key whose digest matches and that is not
# revoked, so an unknown or forged token changes nothing.
_AUTHENTICATE = DriverStatement.of(
    """
    WITH k AS (
        SELECT k.id, k.tenant_id, k.scope, k.token_hash, k.revoked_at, k.last_used_at,
               o.status AS org_status
          FROM api_keys k JOIN organizations o ON o.id = k.tenant_id
         WHERE k.lookup_id = :lookup
    ), valid AS (
        SELECT id, last_used_at FROM k
         WHERE token_hash = :digest AND revoked_at IS NULL AND org_status = 'active'
    ), touch AS (
        UPDATE api_keys a SET last_used_at = :now FROM valid
         WHERE a.id = valid.id
           AND (valid.last_used_at IS NULL OR valid.last_used_at <= :stale)
        RETURNING a.id
    ), counted AS (
        INSERT INTO rate_limit_windows (api_key_id, window_start, count)
        SELECT id, :window, 1 FROM valid WHERE CAST(:limit AS integer) > 0
        ON CONFLICT (api_key_id, window_start)
        DO UPDATE SET count = rate_limit_windows.count + 1
        RETURNING count
    )
    SELECT k.id, k.tenant_id, k.scope, k.token_hash, k.revoked_at, k.org_status,
           (SELECT count FROM counted) AS request_count
      FROM k
    """
)


async def authenticate(
    conn: asyncpg.Connection,
    token: str | None,
    *,
    now: datetime,
    rate_limit: int = 0,
) -> tuple[Principal, int | None]:
    """The principal a bearer token stands for, and (with ``rate_limit`` > 0) how many
    requests its key made in the current one-second window, this one included. One
    statement on a system-role connection (``Database.system_conn``: a hot path).

    Raises MissingApiKey (no token), InvalidApiKey (malformed, unknown, revoked, or its
    organisation deleted) or OrganizationSuspended.
    """
    if not token:
        msg = "Missing API key in the authorization header. Use `Authorization: Bearer <key>`."
        raise MissingApiKey(msg)
    lookup_id = keys.parse_lookup_id(token)
    if lookup_id is None:
        raise InvalidApiKey("API key is invalid.")
    row = await conn.fetchrow(
        _AUTHENTICATE.sql,
        *_AUTHENTICATE.arguments(
            {
                "lookup": lookup_id,
                "digest": keys.digest_token(token),
                "now": now,
                "stale": now - LAST_USED_RESOLUTION,
                "window": now.replace(microsecond=0),
                "limit": rate_limit,
            }
        ),
    )
    if row is None:
        raise InvalidApiKey("API key is invalid.")
    if not keys.token_matches(token, row["token_hash"]) or row["revoked_at"] is not None:
        raise InvalidApiKey("API key is invalid.")
    if row["org_status"] == OrgStatus.DELETED:
        raise InvalidApiKey("API key is invalid.")
    if row["org_status"] == OrgStatus.SUSPENDED:
        msg = "This organization is suspended; its API keys are refused until it is reactivated."
        raise OrganizationSuspended(msg)
    principal = Principal(
        tenant_id=TenantId(row["tenant_id"]), api_key_id=row["id"], scope=Scope(row["scope"])
    )
    count: int | None = row["request_count"]
    return principal, count
