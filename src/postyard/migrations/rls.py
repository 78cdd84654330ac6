"""Row-level security in migrations: applies core.rls's recipe with the configured roles."""

from __future__ import annotations

from alembic import op

from postyard.core.rls import FULL_DML, tenant_table_sql


def roles() -> tuple[str, str]:
    """(app role, system role), handed to Alembic by the migration runner."""
    config = op.get_context().config
    assert config is not None, "migrations run only through postyard.migrations.runner"
    return config.attributes["app_role"], config.attributes["system_role"]


def protect_tenant_table(
    table: str, *, tenant_column: str = "tenant_id", app_privileges: str = FULL_DML
) -> None:
    app, system = roles()
    for statement in tenant_table_sql(
        table,
        app_role=app,
        system_role=system,
        tenant_column=tenant_column,
        app_privileges=app_privileges,
    ):
        op.execute(statement)
