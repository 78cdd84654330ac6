"""Webhook attempts without a foreign key to their delivery; they go with their endpoint.

The key cost every recorded attempt a lookup and a row lock on its delivery, and its index an
entry, for one purpose: deleting attempts with their delivery. Deliveries are deleted with
their endpoint (or organization) or, finished, after 30 days, when their attempts are pruned
by age anyway. A statement trigger on webhook_endpoints now deletes the attempts of endpoints
deleted directly or through their organization.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 17:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# SECURITY INVOKER (the default): row-level security applies as for the deleting role, which
# can see the attempts of the endpoints it can delete.
FORGET_FUNCTION = """
CREATE FUNCTION postyard_webhook_attempts_forget() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM webhook_attempts a USING old_endpoints o WHERE a.endpoint_id = o.id;
    RETURN NULL;
END
$$
"""
FORGET_TRIGGER = """
CREATE TRIGGER webhook_attempts_forget AFTER DELETE ON webhook_endpoints
REFERENCING OLD TABLE AS old_endpoints
FOR EACH STATEMENT EXECUTE FUNCTION postyard_webhook_attempts_forget()
"""


def upgrade() -> None:
    op.drop_constraint(
        "fk_webhook_attempts_delivery_id_webhook_deliveries", "webhook_attempts", type_="foreignkey"
    )
    op.drop_index("ix_webhook_attempts_delivery_id", table_name="webhook_attempts")
    op.execute(FORGET_FUNCTION)
    op.execute(FORGET_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER webhook_attempts_forget ON webhook_endpoints")
    op.execute("DROP FUNCTION postyard_webhook_attempts_forget()")
    op.execute(
        "DELETE FROM webhook_attempts a WHERE NOT EXISTS"
        " (SELECT 1 FROM webhook_deliveries d WHERE d.id = a.delivery_id)"
    )
    op.create_index("ix_webhook_attempts_delivery_id", "webhook_attempts", ["delivery_id"])
    op.create_foreign_key(
        "fk_webhook_attempts_delivery_id_webhook_deliveries",
        "webhook_attempts",
        "webhook_deliveries",
        ["delivery_id"],
        ["id"],
        ondelete="CASCADE",
    )
