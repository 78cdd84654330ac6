"""An email's last event is read from its events; messages.last_event goes.

Recording each recipient's outcome rewrote the message's row to move ``last_event``: a new
version of the whole row (its three index entries included, as the page seldom had room
for a version beside the old one) and, later, vacuuming the old one. Every state change
already writes an event in the same transaction, so ``sending/last_event.py`` reads the
latest of them instead, and the message row is written once.

Downgrading recomputes the column from the events.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 05:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_FROM_EVENTS = """
UPDATE messages m SET last_event = coalesce((
    SELECT split_part(e.type, '.', 2)
      FROM events e
     WHERE e.tenant_id = m.tenant_id AND e.message_id = m.id
       AND e.type IN ('email.sent', 'email.scheduled', 'email.suppressed', 'email.delivered',
                      'email.delivery_delayed', 'email.bounced', 'email.failed',
                      'email.canceled', 'email.complained')
       AND NOT (e.type = 'email.delivery_delayed' AND coalesce(e.data->>'source', '') = 'dsn')
     ORDER BY e.seq DESC
     LIMIT 1), 'sent')
"""


def upgrade() -> None:
    op.drop_column("messages", "last_event")


def downgrade() -> None:
    op.add_column("messages", sa.Column("last_event", sa.String(length=32), nullable=True))
    op.execute(_FROM_EVENTS)
    op.alter_column("messages", "last_event", nullable=False)
