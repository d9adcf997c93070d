"""The Graph connection and sync runs: what TenantAtlas knows of its connection to each tenant.

- tenants: connection state (not_connected, connected, missing_permissions,
  consent_revoked, failing), when and by whom consent was given, the application
  permissions the last token carried, consecutive failures and a pause, the last and
  next sync, the groups delta link. Every new column is nullable or has a constant
  default, so adding it rewrites no rows (PostgreSQL 11+) and holds its lock briefly; the
  constraints are added NOT VALID and validated, and the index built CONCURRENTLY, after
  that transaction has committed.
- policies: the normalized content hash and when a policy disappeared from a complete
  listing (kept, never deleted). Both nullable: no rewrite.
- sync_runs: one row per sync with its counts per family; a partial unique index allows
  one queued-or-running run per tenant.
- consent_requests: the single-use nonce behind each admin-consent round trip.
- Both new tables are tenant-owned: workspace binding and row-level security as 0006.
- tenants_due_for_sync(limit): the scheduler's one cross-workspace read; SECURITY
  DEFINER on pg_catalog's search path (as 0008), it returns ids only.

Reversible.

Revision ID: 0009_graph_connection_and_sync
Revises: 0008_definer_search_path
Create Date: 2026-11-30
"""
import os

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from migrations.rollout import run_outside_transaction

revision = "0009_graph_connection_and_sync"
down_revision = "0008_definer_search_path"
branch_labels = None
depends_on = None

APP_ROLE = os.environ.get("APP_DATABASE_ROLE", "tenantatlas_app")
CURRENT_WORKSPACE = "NULLIF(current_setting('app.current_workspace_id', true), '')::bigint"
CONNECTION_STATUSES = ("not_connected", "connected", "missing_permissions", "consent_revoked", "failing")
NEW_TABLES = ("sync_runs", "consent_requests")


def _in(column, values):
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _tenant_owned(table, *columns, constraints=()):
    op.create_table(
        table,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("tenant_id", sa.BigInteger, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("workspace_id", sa.BigInteger, sa.ForeignKey("workspaces.id"), nullable=False),
        *columns,
        sa.ForeignKeyConstraint(["tenant_id", "workspace_id"], ["tenants.id", "tenants.workspace_id"],
                                onupdate="CASCADE", name=f"fk_{table}_tenant_id_workspace_id_tenants"),
        *constraints,
    )
    op.create_index(f"ix_{table}_tenant_id", table, ["tenant_id"])
    op.create_index(f"ix_{table}_workspace_id_tenant_id", table, ["workspace_id", "tenant_id"])


def upgrade():
    add = op.add_column
    add("tenants", sa.Column("connection_status", sa.String(24), nullable=False, server_default="not_connected"))
    add("tenants", sa.Column("consented_at", sa.DateTime(timezone=True)))
    add("tenants", sa.Column("consented_by_user_id", sa.BigInteger))
    add("tenants", sa.Column("granted_permissions", JSONB, nullable=False, server_default="[]"))
    add("tenants", sa.Column("permissions_checked_at", sa.DateTime(timezone=True)))
    add("tenants", sa.Column("connection_error", sa.String(500)))
    add("tenants", sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"))
    add("tenants", sa.Column("sync_paused_at", sa.DateTime(timezone=True)))
    add("tenants", sa.Column("last_sync_at", sa.DateTime(timezone=True)))
    add("tenants", sa.Column("last_sync_status", sa.String(16)))
    add("tenants", sa.Column("next_sync_at", sa.DateTime(timezone=True)))
    add("tenants", sa.Column("groups_delta_link", sa.Text))
    # NOT VALID now (no scan); VALIDATE and the index below, after this transaction has
    # committed and released its ACCESS EXCLUSIVE lock on tenants.
    op.execute(f"ALTER TABLE tenants ADD CONSTRAINT ck_tenants_connection_status_known "
               f"CHECK ({_in('connection_status', CONNECTION_STATUSES)}) NOT VALID")
    op.execute("ALTER TABLE tenants ADD CONSTRAINT fk_tenants_consented_by_user_id_users FOREIGN KEY "
               "(consented_by_user_id) REFERENCES users (id) ON DELETE SET NULL NOT VALID")

    add("policies", sa.Column("content_hash", sa.String(64)))
    add("policies", sa.Column("deleted_at", sa.DateTime(timezone=True)))

    _tenant_owned(
        "sync_runs",
        sa.Column("status", sa.String(16), nullable=False, server_default="queued"),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("requested_by_user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("families", JSONB, nullable=False, server_default="{}"),
        sa.Column("current_family", sa.String(64)),
        sa.Column("requests", sa.Integer, nullable=False, server_default="0"),
        sa.Column("throttled", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.String(1000)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        constraints=(
            sa.UniqueConstraint("id", "tenant_id", name="uq_sync_runs_id_tenant_id"),
            sa.CheckConstraint(_in("status", ("queued", "running", "succeeded", "partial", "failed")),
                               name="ck_sync_runs_status_known"),
            sa.CheckConstraint(_in("trigger", ("user", "schedule", "command", "connect")),
                               name="ck_sync_runs_trigger_known"),
        ),
    )
    op.create_index("ix_sync_runs_tenant_id_created_at", "sync_runs", ["tenant_id", "created_at"])
    op.create_index("ux_sync_runs_one_active_per_tenant", "sync_runs", ["tenant_id"], unique=True,
                    postgresql_where=sa.text("status IN ('queued', 'running')"))

    _tenant_owned(
        "consent_requests",
        sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("used_at", sa.DateTime(timezone=True)),
    )

    for table in NEW_TABLES:
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY current_workspace ON {table} USING (workspace_id = {CURRENT_WORKSPACE}) "
                   f"WITH CHECK (workspace_id = {CURRENT_WORKSPACE})")

    op.execute("""
        CREATE FUNCTION tenants_due_for_sync(max_tenants integer)
        RETURNS TABLE (tenant_id bigint, workspace_id bigint)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
            SELECT t.id, t.workspace_id
              FROM public.tenants t
             WHERE t.next_sync_at <= now()
               AND t.status = 'active'
               AND t.sync_paused_at IS NULL
               AND t.connection_status IN ('connected', 'missing_permissions', 'failing')
             ORDER BY t.next_sync_at
             LIMIT least(greatest(max_tenants, 0), 10000)
        $$""")
    op.execute("REVOKE ALL ON FUNCTION tenants_due_for_sync(integer) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION tenants_due_for_sync(integer) TO {APP_ROLE}")

    # Outside the transaction: VALIDATE scans under SHARE UPDATE EXCLUSIVE (writes go on), the
    # index is built CONCURRENTLY; each commits on its own under the short lock_timeout.
    run_outside_transaction("ALTER TABLE tenants VALIDATE CONSTRAINT ck_tenants_connection_status_known",
                            "ALTER TABLE tenants VALIDATE CONSTRAINT fk_tenants_consented_by_user_id_users",
                            "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_tenants_next_sync_at ON tenants (next_sync_at) "
                            "WHERE next_sync_at IS NOT NULL", lift_statement_timeout=True)


def downgrade():
    op.execute("DROP FUNCTION IF EXISTS tenants_due_for_sync(integer)")
    for table in NEW_TABLES:
        op.drop_table(table)
    op.drop_column("policies", "deleted_at")
    op.drop_column("policies", "content_hash")
    op.execute("DROP INDEX IF EXISTS ix_tenants_next_sync_at")
    op.execute("ALTER TABLE tenants DROP CONSTRAINT fk_tenants_consented_by_user_id_users")
    op.execute("ALTER TABLE tenants DROP CONSTRAINT ck_tenants_connection_status_known")
    for column in ("groups_delta_link", "next_sync_at", "last_sync_status", "last_sync_at", "sync_paused_at",
                   "consecutive_failures", "connection_error", "permissions_checked_at", "granted_permissions",
                   "consented_by_user_id", "consented_at", "connection_status"):
        op.drop_column("tenants", column)
