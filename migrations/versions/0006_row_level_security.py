"""Row-level security: the database shows and accepts only the current workspace's rows.

A phase after the constraints (0004): it cannot come earlier, because rows
without a workspace would vanish from the app.

- The web app's role (APP_DATABASE_ROLE, default tenantatlas_app) is created when
  missing (that needs CREATEROLE; in production a DBA may create it first, with a
  password) as a login role that is not a superuser and cannot bypass RLS. It gets
  SELECT/INSERT/UPDATE/DELETE on the tables (read-only on alembic_version) and owns
  nothing.
- RLS is ENABLEd and FORCEd on every table with a workspace_id: the twelve
  tenant-owned tables, tenants, audit_logs, workspace_memberships, tenant_visits,
  tenant_pins. Each policy compares workspace_id with the transaction's
  app.current_workspace_id, a plain equality the (workspace_id, ...) indexes serve;
  with nothing set the comparison is NULL and no row passes (fail closed).
  Exceptions, each narrower than a workspace: a user's own memberships (to list
  their workspaces) and their own audit entries without a workspace (sign-in).
- workspace_tenant_counts(user_id): the tenant counts of a user's workspaces for
  the workspace list, the one cross-workspace read the app needs; SECURITY DEFINER,
  it returns counts only, for workspaces the user belongs to.

The migration owner (and the operator commands, which run as it) must be able to
bypass RLS (superuser or BYPASSRLS): FORCE applies to table owners too.

Reversible: the downgrade drops the policies, the function and the grants, and
disables RLS; it leaves the role (other databases may use it).

Revision ID: 0006_row_level_security
Revises: 0005_user_session_token
Create Date: 2026-11-24
"""
import os

from alembic import op

revision = "0006_row_level_security"
down_revision = "0005_user_session_token"
branch_labels = None
depends_on = None

APP_ROLE = os.environ.get("APP_DATABASE_ROLE", "tenantatlas_app")
CURRENT_WORKSPACE = "NULLIF(current_setting('app.current_workspace_id', true), '')::bigint"
CURRENT_USER_ID = "NULLIF(current_setting('app.current_user_id', true), '')::bigint"

WORKSPACE_TABLES = (
    "policies", "policy_versions", "backup_sets", "backup_items", "restore_runs", "backup_schedules",
    "inventory_items", "inventory_links", "entra_groups", "findings", "entra_role_definitions",
    "tenant_permissions", "tenants", "tenant_visits", "tenant_pins",
)
# table -> (USING, WITH CHECK)
POLICIES = {table: (f"workspace_id = {CURRENT_WORKSPACE}",) * 2 for table in WORKSPACE_TABLES}
POLICIES["workspace_memberships"] = (
    f"workspace_id = {CURRENT_WORKSPACE} OR user_id = {CURRENT_USER_ID}",
    f"workspace_id = {CURRENT_WORKSPACE}",
)
POLICIES["audit_logs"] = (
    f"workspace_id = {CURRENT_WORKSPACE} OR (workspace_id IS NULL AND actor_user_id = {CURRENT_USER_ID})",
    f"workspace_id = {CURRENT_WORKSPACE} OR (workspace_id IS NULL AND tenant_id IS NULL)",
)


def upgrade():
    op.execute(f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
            END IF;
        END
        $$""")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_ROLE}")
    op.execute(f"REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM {APP_ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {APP_ROLE}")
    for table, (using, check) in POLICIES.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY current_workspace ON {table} USING ({using}) WITH CHECK ({check})")
    op.execute("""
        CREATE FUNCTION workspace_tenant_counts(for_user_id bigint)
        RETURNS TABLE (workspace_id bigint, active bigint, archived bigint)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            SELECT t.workspace_id, count(*) FILTER (WHERE t.status = 'active'),
                   count(*) FILTER (WHERE t.status = 'archived')
              FROM tenants t
              JOIN workspace_memberships m ON m.workspace_id = t.workspace_id AND m.user_id = for_user_id
             GROUP BY t.workspace_id
        $$""")
    op.execute("REVOKE ALL ON FUNCTION workspace_tenant_counts(bigint) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION workspace_tenant_counts(bigint) TO {APP_ROLE}")


def downgrade():
    op.execute("DROP FUNCTION IF EXISTS workspace_tenant_counts(bigint)")
    for table in POLICIES:
        op.execute(f"DROP POLICY IF EXISTS current_workspace ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM {APP_ROLE}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE USAGE, SELECT ON SEQUENCES FROM {APP_ROLE}")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {APP_ROLE}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {APP_ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {APP_ROLE}")
