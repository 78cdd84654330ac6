"""Webhook endpoints, deliveries and attempts; the fan-out trigger on events.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 11:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from postyard.migrations.rls import protect_tenant_table

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# One statement per INSERT into events, whatever its row count: the transition table holds
# the new rows. SECURITY INVOKER (the default), so row-level security applies as for the
# writer: a tenant transaction sees and fans out to its own endpoints only, a system
# transaction to every tenant's. Ids are UUIDv7 (ordered like the ids Python makes).
FANOUT_FUNCTION = """
CREATE FUNCTION postyard_webhook_fanout() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries
        (id, tenant_id, endpoint_id, event_id, status, attempts, next_attempt_at,
         created_at, updated_at)
    SELECT encode(
               set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
                   PLACING substring(int8send(
                       floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                   FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid,
           e.tenant_id, w.id, e.id, 'pending', 0, now(), e.created_at, now()
      FROM new_events e
      JOIN webhook_endpoints w
        ON w.tenant_id = e.tenant_id AND w.status = 'enabled' AND e.type = ANY (w.events);
    RETURN NULL;
END
$$
"""
FANOUT_TRIGGER = """
CREATE TRIGGER webhook_fanout AFTER INSERT ON events
REFERENCING NEW TABLE AS new_events
FOR EACH STATEMENT EXECUTE FUNCTION postyard_webhook_fanout()
"""


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    ]


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"],
        ["organizations.id"],
        name=op.f(f"fk_{table}_tenant_id_organizations"),
        ondelete="CASCADE",
    )


def _endpoint_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["endpoint_id"],
        ["webhook_endpoints.id"],
        name=op.f(f"fk_{table}_endpoint_id_webhook_endpoints"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("events", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("previous_secret", sa.LargeBinary(), nullable=True),
        sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        *_timestamps(),
        sa.CheckConstraint(
            "status IN ('enabled', 'disabled')", name=op.f("ck_webhook_endpoints_status")
        ),
        sa.CheckConstraint("cardinality(events) > 0", name=op.f("ck_webhook_endpoints_events")),
        _tenant_fk("webhook_endpoints"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    op.create_index(
        "ix_webhook_endpoints_fanout",
        "webhook_endpoints",
        ["tenant_id"],
        postgresql_where=sa.text("status = 'enabled'"),
    )
    op.create_index("ix_webhook_endpoints_tenant_id_id", "webhook_endpoints", ["tenant_id", "id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        *_timestamps(),
        sa.CheckConstraint(
            "status IN ('pending', 'sending', 'succeeded', 'failed')",
            name=op.f("ck_webhook_deliveries_status"),
        ),
        # No foreign keys to organizations or events: each costs a lookup per fanned-out row
        # on the accept path. Deliveries go with their endpoint (which goes with its
        # organization); a delivery whose event is gone is recorded as failed.
        _endpoint_fk("webhook_deliveries"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_webhook_deliveries_leased",
        "webhook_deliveries",
        ["lease_expires_at"],
        postgresql_where=sa.text("status = 'sending'"),
    )
    op.create_index(
        "ix_webhook_deliveries_endpoint_id_created_at",
        "webhook_deliveries",
        ["endpoint_id", "created_at"],
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("delivery_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        # Attempts go with their delivery; further foreign keys would only add a lookup each.
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
            name=op.f("fk_webhook_attempts_delivery_id_webhook_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
    )
    op.create_index("ix_webhook_attempts_endpoint_id_id", "webhook_attempts", ["endpoint_id", "id"])
    op.create_index("ix_webhook_attempts_created_at", "webhook_attempts", ["created_at"])
    op.create_index("ix_webhook_attempts_delivery_id", "webhook_attempts", ["delivery_id"])
    for table in ("webhook_endpoints", "webhook_deliveries", "webhook_attempts"):
        protect_tenant_table(table)
    op.execute(FANOUT_FUNCTION)
    op.execute(FANOUT_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER webhook_fanout ON events")
    op.execute("DROP FUNCTION postyard_webhook_fanout()")
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_endpoints")
