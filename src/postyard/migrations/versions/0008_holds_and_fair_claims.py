"""Holds (operator and tenant), the `held` delivery status, the stream on each delivery, and
the per-tenant due index the fair claim walks.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 11:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from postyard.migrations.rls import protect_tenant_table

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_WAITING = sa.text("status IN ('queued', 'scheduled', 'deferred')")
_OLD_STATUSES = (
    "status IN ('queued', 'scheduled', 'sending', 'deferred', 'delivered', 'bounced', "
    "'failed', 'canceled', 'suppressed')"
)
_NEW_STATUSES = (
    "status IN ('queued', 'scheduled', 'sending', 'deferred', 'delivered', 'bounced', "
    "'failed', 'canceled', 'suppressed', 'held')"
)


def upgrade() -> None:
    op.create_table(
        "holds",
        sa.Column("id", sa.Uuid(), nullable=False),
        # NULL: an operator's hold on every tenant (only the system role sees those rows).
        sa.Column("tenant_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=253), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "kind IN ('tenant', 'domain', 'destination')", name=op.f("ck_holds_kind")
        ),
        sa.CheckConstraint("origin IN ('tenant', 'operator')", name=op.f("ck_holds_origin")),
        sa.CheckConstraint(
            "(kind = 'tenant') = (value = '')", name=op.f("ck_holds_value_matches_kind")
        ),
        sa.CheckConstraint(
            "tenant_id IS NOT NULL OR origin = 'operator'", name=op.f("ck_holds_global_by_operator")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["organizations.id"],
            name=op.f("fk_holds_tenant_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holds")),
    )
    op.create_index(
        "ix_holds_active", "holds", ["tenant_id"], postgresql_where=sa.text("released_at IS NULL")
    )
    protect_tenant_table("holds")

    op.drop_constraint(op.f("ck_deliveries_status"), "deliveries", type_="check")
    op.create_check_constraint(op.f("ck_deliveries_status"), "deliveries", _NEW_STATUSES)
    op.add_column("deliveries", sa.Column("held_by", sa.Uuid(), nullable=True))
    op.create_index(
        "ix_deliveries_held", "deliveries", ["held_by"], postgresql_where=sa.text("status = 'held'")
    )
    # The message's stream, on the row the claim orders: transactional before bulk.
    op.add_column(
        "deliveries",
        sa.Column("bulk", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.execute(
        "UPDATE deliveries d SET bulk = true FROM messages m"
        " WHERE m.id = d.message_id AND m.stream = 'bulk'"
        " AND d.status IN ('queued', 'scheduled', 'deferred')"
    )
    # The fair claim walks tenants with waiting rows (a skip scan on the leading column) and
    # takes each tenant's transactional rows, then its bulk rows, oldest first, from the
    # same index.
    op.create_index(
        "ix_deliveries_tenant_due",
        "deliveries",
        ["tenant_id", "bulk", "next_attempt_at"],
        postgresql_where=_WAITING,
    )
    op.drop_index("ix_deliveries_due", table_name="deliveries", postgresql_where=_WAITING)


def downgrade() -> None:
    op.create_index(
        "ix_deliveries_due", "deliveries", ["next_attempt_at"], postgresql_where=_WAITING
    )
    op.drop_index("ix_deliveries_tenant_due", table_name="deliveries", postgresql_where=_WAITING)
    op.drop_index(
        "ix_deliveries_held", table_name="deliveries", postgresql_where=sa.text("status = 'held'")
    )
    op.execute(
        "UPDATE deliveries SET status = 'queued', next_attempt_at = now() WHERE status = 'held'"
    )
    op.drop_column("deliveries", "held_by")
    op.drop_column("deliveries", "bulk")
    op.drop_constraint(op.f("ck_deliveries_status"), "deliveries", type_="check")
    op.create_check_constraint(op.f("ck_deliveries_status"), "deliveries", _OLD_STATUSES)
    op.drop_table("holds")
