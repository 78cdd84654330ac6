"""IP pool assignments per tenant and stream.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 12:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from postyard.migrations.rls import protect_tenant_table

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ip_pool_assignments",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("stream", sa.String(length=16), nullable=False),
        sa.Column("pool", sa.String(length=64), nullable=False),
        sa.CheckConstraint(
            "stream IN ('transactional', 'bulk')", name=op.f("ck_ip_pool_assignments_stream")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["organizations.id"],
            name=op.f("fk_ip_pool_assignments_tenant_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "stream", name=op.f("pk_ip_pool_assignments")),
    )
    protect_tenant_table("ip_pool_assignments")


def downgrade() -> None:
    op.drop_table("ip_pool_assignments")
