"""Adaptive shaping state per destination site, shared by the workers (not tenant data).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 12:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from postyard.migrations.rls import roles

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "destination_states",
        sa.Column("site", sa.String(length=253), nullable=False),
        sa.Column("rate", sa.Float(), nullable=False),
        sa.Column("suspended_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("throttles_in_a_row", sa.Integer(), nullable=False),
        sa.Column("last_throttle", sa.Text(), nullable=True),
        sa.Column("last_change", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("site", name=op.f("pk_destination_states")),
    )
    _, system = roles()
    # Written by workers, read by the API and CLI: all through system_tx.
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON destination_states TO {system}")


def downgrade() -> None:
    op.drop_table("destination_states")
