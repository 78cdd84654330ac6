"""Foundation: organisations (tenants) and API keys, under row-level security.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from postyard.core.rls import CURRENT_TENANT_FN
from postyard.migrations.rls import protect_tenant_table, roles

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    app, system = roles()
    op.execute(CURRENT_TENANT_FN)
    op.execute(f"GRANT SELECT ON alembic_version TO {app}, {system}")
    op.create_table(
        "organizations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("slug", sa.String(63), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "status IN ('active', 'suspended', 'deleted')", name="ck_organizations_status"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_organizations"),
        sa.UniqueConstraint("slug", name="uq_organizations_slug"),
    )
    # The app role may read its own organisation; only the system role changes them.
    protect_tenant_table("organizations", tenant_column="id", app_privileges="SELECT")

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("lookup_id", sa.String(16), nullable=False),
        sa.Column("token_prefix", sa.String(32), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("scope IN ('full', 'sending')", name="ck_api_keys_scope"),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["organizations.id"],
            name="fk_api_keys_tenant_id_organizations",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("lookup_id", name="uq_api_keys_lookup_id"),
    )
    op.create_index("ix_api_keys_tenant_id", "api_keys", ["tenant_id"])
    protect_tenant_table("api_keys")


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("organizations")
    op.execute("DROP FUNCTION IF EXISTS postyard_current_tenant()")
