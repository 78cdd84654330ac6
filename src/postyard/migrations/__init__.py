"""Alembic migrations, run as the owner role by ``postyard migrate`` (and ``up``)."""
