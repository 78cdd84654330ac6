"""Warm-up ramps per sending domain, with the day's count.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 11:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from postyard.migrations.rls import protect_tenant_table

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "warmups",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("started_on", sa.Date(), nullable=False),
        sa.Column("schedule", postgresql.ARRAY(sa.Integer()), nullable=True),
        sa.Column("counted_on", sa.Date(), nullable=False),
        sa.Column("sent", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("sent >= 0", name=op.f("ck_warmups_sent")),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["organizations.id"],
            name=op.f("fk_warmups_tenant_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "domain", name=op.f("pk_warmups")),
    )
    protect_tenant_table("warmups")


def downgrade() -> None:
    op.drop_table("warmups")
