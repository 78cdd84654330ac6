"""The migrations and the SQLAlchemy models describe the same schema."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from postyard.core.db import Base
from postyard.migrations.models import load_all_models
from postyard.runtime import Runtime


def _diff(sync: Connection) -> list[Any]:
    context = MigrationContext.configure(sync, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_models_match_the_migrated_schema(runtime: Runtime) -> None:
    load_all_models()
    engine = create_async_engine(runtime.urls.owner)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
    finally:
        await engine.dispose()
    assert diff == []
