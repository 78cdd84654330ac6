"""Suppression list; deliveries may be 'suppressed' and record the class of their bounce.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 11:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from postyard.migrations.rls import protect_tenant_table

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_OLD_STATUSES = (
    "'queued', 'scheduled', 'sending', 'deferred', 'delivered', 'bounced', 'failed', 'canceled'"
)


def upgrade() -> None:
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("source_email_id", sa.Uuid(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "reason IN ('hard_bounce', 'complaint', 'unsubscribe', 'manual')",
            name=op.f("ck_suppressions_reason"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["organizations.id"],
            name=op.f("fk_suppressions_tenant_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
    )
    op.create_index(
        "uq_suppressions_tenant_id_lower_email",
        "suppressions",
        ["tenant_id", sa.text("lower(email)")],
        unique=True,
    )
    protect_tenant_table("suppressions")

    op.drop_constraint(op.f("ck_deliveries_status"), "deliveries", type_="check")
    op.create_check_constraint(
        op.f("ck_deliveries_status"),
        "deliveries",
        f"status IN ({_OLD_STATUSES}, 'suppressed')",
    )
    op.add_column("deliveries", sa.Column("bounce_type", sa.String(length=16), nullable=True))
    op.create_check_constraint(
        op.f("ck_deliveries_bounce_type"),
        "deliveries",
        "bounce_type IN ('permanent', 'transient', 'block', 'undetermined')",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_deliveries_bounce_type"), "deliveries", type_="check")
    op.drop_column("deliveries", "bounce_type")
    op.execute("DELETE FROM deliveries WHERE status = 'suppressed'")
    op.drop_constraint(op.f("ck_deliveries_status"), "deliveries", type_="check")
    op.create_check_constraint(
        op.f("ck_deliveries_status"), "deliveries", f"status IN ({_OLD_STATUSES})"
    )
    op.drop_index("uq_suppressions_tenant_id_lower_email", table_name="suppressions")
    op.drop_table("suppressions")
