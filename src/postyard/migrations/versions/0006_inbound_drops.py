"""Inbound: counts of reports the MX listener dropped.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 12:15:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from postyard.migrations.rls import roles

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbound_drops",
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("reason", name=op.f("pk_inbound_drops")),
    )
    _, system = roles()
    # Dropped reports belong to no tenant: counted and read through system_tx only.
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON inbound_drops TO {system}")


def downgrade() -> None:
    op.drop_table("inbound_drops")
