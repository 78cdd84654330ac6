"""Warm-up ramps per source address of the IP pools, with the day's count.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 13:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from postyard.migrations.rls import roles

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ip_warmups",
        sa.Column("address", sa.String(length=45), nullable=False),
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
        sa.CheckConstraint("sent >= 0", name=op.f("ck_ip_warmups_sent")),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_ip_warmups")),
    )
    _, system = roles()
    # The instance's addresses, not a tenant's: workers and the CLI, through system_tx.
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ip_warmups TO {system}")


def downgrade() -> None:
    op.drop_table("ip_warmups")
