"""Sending domains and their DKIM keys (private keys encrypted); messages.from_domain.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 06:01:10.758179
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from postyard.migrations.rls import protect_tenant_table

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "domains",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("return_path", sa.String(length=63), nullable=False),
        sa.Column("open_tracking", sa.Boolean(), nullable=False),
        sa.Column("click_tracking", sa.Boolean(), nullable=False),
        sa.Column("tls", sa.String(length=16), nullable=False),
        sa.Column("tracking_subdomain", sa.String(length=63), nullable=True),
        sa.Column("record_statuses", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("verification_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("tls IN ('opportunistic', 'enforced')", name=op.f("ck_domains_tls")),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["organizations.id"],
            name=op.f("fk_domains_tenant_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_domains")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_domains_tenant_id_name")),
    )
    op.create_index(
        "ix_domains_next_check_at",
        "domains",
        ["next_check_at"],
        unique=False,
        postgresql_where=sa.text("next_check_at IS NOT NULL"),
    )
    op.create_table(
        "dkim_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("domain_id", sa.Uuid(), nullable=False),
        sa.Column("selector", sa.String(length=63), nullable=False),
        sa.Column("algorithm", sa.String(length=16), nullable=False),
        sa.Column("private_key", sa.LargeBinary(), nullable=False),
        sa.Column("public_record", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "algorithm IN ('rsa-sha256', 'ed25519-sha256')", name=op.f("ck_dkim_keys_algorithm")
        ),
        sa.CheckConstraint(
            "state IN ('published', 'active', 'retired')", name=op.f("ck_dkim_keys_state")
        ),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            name=op.f("fk_dkim_keys_domain_id_domains"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["organizations.id"],
            name=op.f("fk_dkim_keys_tenant_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dkim_keys")),
        sa.UniqueConstraint("domain_id", "selector", name=op.f("uq_dkim_keys_domain_id_selector")),
    )
    op.add_column(
        "messages", sa.Column("from_domain", sa.Text(), server_default="", nullable=False)
    )
    op.execute("UPDATE messages SET from_domain = lower(split_part(envelope_from, '@', 2))")
    protect_tenant_table("domains")
    protect_tenant_table("dkim_keys")


def downgrade() -> None:
    op.drop_column("messages", "from_domain")
    op.drop_table("dkim_keys")
    op.drop_index(
        "ix_domains_next_check_at",
        table_name="domains",
        postgresql_where=sa.text("next_check_at IS NOT NULL"),
    )
    op.drop_table("domains")
