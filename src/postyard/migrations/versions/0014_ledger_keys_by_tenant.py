"""Deliveries and message contents reference their message by (tenant, id).

Each row had two foreign keys: to its message, and to its organization. The second said
nothing the first did not (the message belongs to the organization, and goes with it), yet
cost a look-up and a row lock on the organization per row written: the one row every
concurrent acceptance of a tenant locks, two more times per message. One composite key to
the message replaces both, and is stricter: a row's tenant is its message's tenant.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 06:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_CHILDREN = ("deliveries", "message_contents")


def upgrade() -> None:
    op.create_unique_constraint("uq_messages_tenant_id_id", "messages", ["tenant_id", "id"])
    op.drop_index("ix_messages_tenant_id_id", table_name="messages")
    for table in _CHILDREN:
        op.drop_constraint(f"fk_{table}_message_id_messages", table, type_="foreignkey")
        op.drop_constraint(f"fk_{table}_tenant_id_organizations", table, type_="foreignkey")
        op.create_foreign_key(
            f"fk_{table}_tenant_id_messages",
            table,
            "messages",
            ["tenant_id", "message_id"],
            ["tenant_id", "id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    for table in _CHILDREN:
        op.drop_constraint(f"fk_{table}_tenant_id_messages", table, type_="foreignkey")
        op.create_foreign_key(
            f"fk_{table}_tenant_id_organizations",
            table,
            "organizations",
            ["tenant_id"],
            ["id"],
            ondelete="CASCADE",
        )
        op.create_foreign_key(
            f"fk_{table}_message_id_messages",
            table,
            "messages",
            ["message_id"],
            ["id"],
            ondelete="CASCADE",
        )
    op.create_index("ix_messages_tenant_id_id", "messages", ["tenant_id", "id"], unique=False)
    op.drop_constraint("uq_messages_tenant_id_id", "messages", type_="unique")
