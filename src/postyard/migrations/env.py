"""Alembic environment: runs on the connection the migration runner hands over."""

from __future__ import annotations

from alembic import context

from postyard.core.db import Base
from postyard.migrations.models import load_all_models

load_all_models()
connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
