"""Row-level security: the one recipe every tenant table goes through (pure SQL text), and
the check that proves a table follows it. Migrations apply the recipe; the test suite runs
the check over every table that has a tenant column.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

CURRENT_TENANT_FN = """
CREATE OR REPLACE FUNCTION postyard_current_tenant() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT nullif(current_setting('app.tenant_id', true), '')::uuid $$
"""

FULL_DML = "SELECT, INSERT, UPDATE, DELETE"


def tenant_table_sql(
    table: str,
    *,
    app_role: str,
    system_role: str,
    tenant_column: str = "tenant_id",
    app_privileges: str = FULL_DML,
) -> list[str]:
    """ENABLE + FORCE RLS; the app role sees and writes only the current tenant's rows (none
    when no tenant is set); the system role sees all; nobody else gets anything."""
    scoped = f"{tenant_column} = postyard_current_tenant()"
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY tenant_isolation ON {table} TO {app_role} "
        f"USING ({scoped}) WITH CHECK ({scoped})",
        f"CREATE POLICY system_access ON {table} TO {system_role} USING (true) WITH CHECK (true)",
        f"GRANT {app_privileges} ON {table} TO {app_role}",
        f"GRANT {FULL_DML} ON {table} TO {system_role}",
    ]


_TABLE_FACTS = text(
    """
    SELECT c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner) AS owner,
           (SELECT count(*) FROM pg_policy p
             WHERE p.polrelid = c.oid
               AND p.polpermissive
               AND p.polroles = ARRAY[(SELECT oid FROM pg_roles WHERE rolname = :app)]::oid[]
               AND pg_get_expr(p.polqual, p.polrelid)
                   LIKE '%' || :col || ' = postyard_current_tenant()%'
               AND pg_get_expr(p.polwithcheck, p.polrelid)
                   LIKE '%' || :col || ' = postyard_current_tenant()%') AS tenant_policies,
           (SELECT count(*) FROM pg_policy p
             WHERE p.polrelid = c.oid
               AND (p.polroles @> ARRAY[0]::oid[]
                    OR p.polroles @> ARRAY[(SELECT oid FROM pg_roles WHERE rolname = :app)]::oid[])
               AND pg_get_expr(p.polqual, p.polrelid) NOT LIKE
                   '%' || :col || ' = postyard_current_tenant()%') AS loose_policies
      FROM pg_class c
     WHERE c.oid = CAST(:table AS regclass)
    """
)


async def rls_violations(
    conn: AsyncConnection, table: str, *, app_role: str, tenant_column: str = "tenant_id"
) -> list[str]:
    """What is wrong with ``table``'s row-level security for the app role ([] when sound)."""
    facts = (
        await conn.execute(_TABLE_FACTS, {"table": table, "app": app_role, "col": tenant_column})
    ).one()
    problems = []
    if not facts.relrowsecurity:
        problems.append(f"{table}: row level security is not enabled")
    if not facts.relforcerowsecurity:
        problems.append(f"{table}: row level security is not forced (FORCE)")
    if facts.owner == app_role:
        problems.append(f"{table}: owned by the app role")
    if facts.tenant_policies != 1:
        problems.append(f"{table}: no tenant_isolation policy for {app_role} on {tenant_column}")
    if facts.loose_policies:
        problems.append(f"{table}: a policy lets {app_role} (or PUBLIC) see other tenants")
    return problems


async def tenant_tables(conn: AsyncConnection) -> list[str]:
    """Every table of the public schema with a ``tenant_id`` column."""
    rows = await conn.execute(
        text(
            "SELECT c.table_name FROM information_schema.columns c "
            "JOIN information_schema.tables t USING (table_schema, table_name) "
            "WHERE c.table_schema = 'public' AND c.column_name = 'tenant_id' "
            "AND t.table_type = 'BASE TABLE' ORDER BY 1"
        )
    )
    return [row[0] for row in rows]
