"""Message streams (transactional or bulk) and tracked messages (links, counts, unsubscribe).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 11:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from postyard.migrations.rls import protect_tenant_table

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "messages",
        sa.Column("stream", sa.String(length=16), server_default="transactional", nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_messages_stream"), "messages", "stream IN ('transactional', 'bulk')"
    )
    op.create_table(
        "tracked_messages",
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("delivery_id", sa.Uuid(), nullable=True),
        sa.Column("recipient", sa.Text(), nullable=True),
        sa.Column("open_tracking", sa.Boolean(), nullable=False),
        sa.Column("click_tracking", sa.Boolean(), nullable=False),
        sa.Column("unsubscribe", sa.Boolean(), nullable=False),
        sa.Column("links", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("opens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("machine_opens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("clicks", sa.Integer(), server_default="0", nullable=False),
        sa.Column("machine_clicks", sa.Integer(), server_default="0", nullable=False),
        sa.Column("unsubscribed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_tracked_messages_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["organizations.id"],
            name=op.f("fk_tracked_messages_tenant_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_tracked_messages")),
    )
    op.create_index(
        "ix_tracked_messages_delivery_id",
        "tracked_messages",
        ["delivery_id"],
        postgresql_where=sa.text("delivery_id IS NOT NULL"),
    )
    protect_tenant_table("tracked_messages")


def downgrade() -> None:
    op.drop_table("tracked_messages")
    op.drop_constraint(op.f("ck_messages_stream"), "messages", type_="check")
    op.drop_column("messages", "stream")
