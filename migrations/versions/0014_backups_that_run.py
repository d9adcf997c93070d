"""Backups that run and restores that restore: content-addressed payloads, planned restores.

- backup_payloads: an object's restorable JSON (the object as Graph returns it, with its
  settings and assignments), stored once per tenant and content hash. Policy versions point
  at theirs (policy_versions.payload_id), so "Restore this version" needs no backup.
- backup_items is rebuilt as the content-addressed "object as it was": (tenant, family,
  graph id, payload) once, whatever the number of backups holding it. A backup set lists
  its items in backup_sets.item_ids, so a nightly backup of an unchanged tenant adds one
  set row and no item or payload row. Keyed by graph id, never by name.
  The demo-era rows are carried over: each old item's payload becomes a payload
  ({"object": <old payload>}, hashed by PostgreSQL's rendering), each set its item list.
- backup_sets: the run record (families, skipped, error, attempts, requests), uploads,
  at most one pending-or-running backup per tenant (a partial unique index).
- backup_schedules: keep_last (the newest N successful backups a schedule never prunes).
- restore_runs: a plan before any write (planning, planned), a source that may be another
  tenant of the same workspace (source_tenant_id, bound by the database to the run's
  workspace) or one policy version, the assignment handling; restore_items: one row per
  selected item with its planned action, its diff and its result.
- orphaned_job_rows(minutes): backups and restores whose job is gone, for the scheduler
  (SECURITY DEFINER, ids only, as 0013).

Reversible. The downgrade carries backup sets back to per-set item rows and keeps only
restore runs the old shape can hold (from a backup set of the same tenant).

Revision ID: 0014_backups_that_run
Revises: 0013_orphaned_sync_runs
Create Date: 2026-11-30
"""
import os

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from migrations.rollout import add_constraint_not_valid, constraint_exists, run_outside_transaction, validate_constraint

revision = "0014_backups_that_run"
down_revision = "0013_orphaned_sync_runs"
branch_labels = None
depends_on = None

APP_ROLE = os.environ.get("APP_DATABASE_ROLE", "tenantatlas_app")
CURRENT_WORKSPACE = "NULLIF(current_setting('app.current_workspace_id', true), '')::bigint"
RESTORE_STATUSES = ("planning", "planned", "queued", "running", "succeeded", "partial", "failed", "cancelled")
OLD_RESTORE_STATUSES = ("queued", "running", "succeeded", "partial", "failed")
RESTORE_ITEM_ACTIONS = ("create", "update", "skip", "conflict")
RESTORE_ITEM_STATUSES = ("planned", "writing", "created", "updated", "skipped", "failed", "not_run")
ASSIGNMENT_MODES = ("keep", "replace", "skip")
TRIGGERS = ("user", "schedule", "upload", "command")


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
        sa.UniqueConstraint("id", "tenant_id", name=f"uq_{table}_id_tenant_id"),
        *constraints,
    )
    op.create_index(f"ix_{table}_tenant_id", table, ["tenant_id"])
    op.create_index(f"ix_{table}_workspace_id_tenant_id", table, ["workspace_id", "tenant_id"])


def _secure(table):
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY current_workspace ON {table} USING (workspace_id = {CURRENT_WORKSPACE}) "
               f"WITH CHECK (workspace_id = {CURRENT_WORKSPACE})")


def _created_at():
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def _table_exists(name: str) -> bool:
    if op.get_context().as_sql:
        return False  # offline SQL shows every step
    return bool(op.get_bind().exec_driver_sql("SELECT to_regclass(%(name)s) IS NOT NULL", {"name": name}).scalar())


def _build_index(name: str, create_sql: str) -> None:
    """CREATE [UNIQUE] INDEX CONCURRENTLY, first dropping an INVALID leftover of an earlier failed build."""
    statements = []
    if not op.get_context().as_sql and op.get_bind().exec_driver_sql(
            "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = %(name)s AND NOT i.indisvalid", {"name": name}).scalar():
        statements.append(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    statements.append(create_sql)
    run_outside_transaction(*statements, lift_statement_timeout=True)


def _adopt_unique_index(table: str, name: str, columns: str) -> None:
    """UNIQUE (columns): the index built CONCURRENTLY, then adopted as the constraint in a statement of its own."""
    if constraint_exists(table, name):
        return
    _build_index(name, f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} ({columns})")
    run_outside_transaction(f"ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE USING INDEX {name}")


def upgrade():
    """Three phases, so that no pre-existing table is held under a strong lock while rows are copied, and
    a run that failed part way can be run again:

    1. outside any transaction, each statement on its own (brief locks), each skipped when done:
       unique keys (built CONCURRENTLY), new nullable or defaulted columns;
    2. one transaction: the new tables, the copy of the demo-era items, the old backup_items dropped
       (skipped as a whole when backup_payloads exists: it committed before). Creating the new tables'
       keys takes SHARE ROW EXCLUSIVE on tenants until this commits: reads go on, writes to tenants
       wait for the copy, which moves only the demo-era backup items (those a real install has);
    3. outside any transaction again: constraints added NOT VALID then validated (SHARE UPDATE
       EXCLUSIVE: reads and writes go on), indexes built CONCURRENTLY, SET NOT NULL using a validated CHECK.
    """
    # --- 1 -----------------------------------------------------------------------------------------------
    # A restore names its source version, and restore items their run, together with the tenant.
    _adopt_unique_index("policy_versions", "uq_policy_versions_id_tenant_id", "id, tenant_id")
    _adopt_unique_index("restore_runs", "uq_restore_runs_id_tenant_id", "id, tenant_id")
    run_outside_transaction(*(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column}" for table, column in (
        ("backup_sets", "item_ids bigint[] NOT NULL DEFAULT '{}'"),
        ("backup_sets", "families jsonb NOT NULL DEFAULT '{}'"),
        ("backup_sets", "requested_families jsonb NOT NULL DEFAULT '[]'"),
        ("backup_sets", "skipped_count integer NOT NULL DEFAULT 0"),
        ("backup_sets", "error varchar(1000)"),
        ("backup_sets", "attempts integer NOT NULL DEFAULT 0"),
        ("backup_sets", "requests integer NOT NULL DEFAULT 0"),
        ("backup_sets", "throttled integer NOT NULL DEFAULT 0"),
        ("backup_sets", "size_bytes bigint NOT NULL DEFAULT 0"),
        ("backup_schedules", "keep_last integer NOT NULL DEFAULT 3"),
        ("backup_schedules", "last_run_at timestamp with time zone"),
        ("policy_versions", "payload_id bigint"),
        ("restore_runs", "source_tenant_id bigint"),
        ("restore_runs", "policy_version_id bigint"),
        ("restore_runs", "assignment_mode varchar(16) NOT NULL DEFAULT 'keep'"),
        ("restore_runs", "executed_by_user_id bigint"),
        ("restore_runs", "planned_at timestamp with time zone"),
        ("restore_runs", "attempts integer NOT NULL DEFAULT 0"),
        ("restore_runs", "error varchar(1000)"),
        ("restore_runs", "summary jsonb NOT NULL DEFAULT '{}'"),
    )))

    # --- 2 -----------------------------------------------------------------------------------------------
    if not _table_exists("backup_payloads"):
        _rebuild_backup_items()

    # --- 3 -----------------------------------------------------------------------------------------------
    run_outside_transaction("ALTER TABLE restore_runs ALTER COLUMN backup_set_id DROP NOT NULL")
    # One statement, row locks only: restore runs are few (one per restore anyone ever planned).
    run_outside_transaction("UPDATE restore_runs SET source_tenant_id = tenant_id WHERE source_tenant_id IS NULL",
                            lift_statement_timeout=True)
    swaps = (
        ("backup_sets", "ck_backup_sets_triggered_by_known", f"CHECK ({_in('triggered_by', TRIGGERS)})"),
        ("restore_runs", "ck_restore_runs_status_known", f"CHECK ({_in('status', RESTORE_STATUSES)})"),
    )
    for table, name, definition in swaps:  # the old CHECK is narrower: replaced by one of the same name
        run_outside_transaction(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}")
        add_constraint_not_valid(table, name, definition)
    run_outside_transaction("ALTER TABLE restore_runs DROP CONSTRAINT IF EXISTS "
                            "fk_restore_runs_backup_set_id_tenant_id_backup_sets")
    added = (
        ("backup_schedules", "ck_backup_schedules_keep_last_range", "CHECK (keep_last BETWEEN 0 AND 1000)"),
        ("policy_versions", "fk_policy_versions_payload_id_tenant_id_backup_payloads",
         "FOREIGN KEY (payload_id, tenant_id) REFERENCES backup_payloads (id, tenant_id)"),
        # Temporary: SET NOT NULL below uses it instead of scanning under its ACCESS EXCLUSIVE lock.
        ("restore_runs", "ck_restore_runs_source_tenant_id_not_null", "CHECK (source_tenant_id IS NOT NULL)"),
        # A restore keeps its items' payloads, not the set: retention may delete the set it came from.
        ("restore_runs", "fk_restore_runs_backup_set_id_source_tenant_id_backup_sets",
         "FOREIGN KEY (backup_set_id, source_tenant_id) REFERENCES backup_sets (id, tenant_id) "
         "ON DELETE SET NULL (backup_set_id)"),
        # The source is a tenant of the run's own workspace: the database refuses any other.
        ("restore_runs", "fk_restore_runs_source_tenant_id_workspace_id_tenants",
         "FOREIGN KEY (source_tenant_id, workspace_id) REFERENCES tenants (id, workspace_id) ON UPDATE CASCADE"),
        ("restore_runs", "fk_restore_runs_policy_version_id_source_tenant_id",
         "FOREIGN KEY (policy_version_id, source_tenant_id) REFERENCES policy_versions (id, tenant_id) "
         "ON DELETE SET NULL (policy_version_id)"),
        ("restore_runs", "fk_restore_runs_executed_by_user_id_users",
         "FOREIGN KEY (executed_by_user_id) REFERENCES users (id) ON DELETE SET NULL"),
        ("restore_runs", "ck_restore_runs_assignment_mode_known", f"CHECK ({_in('assignment_mode', ASSIGNMENT_MODES)})"),
    )
    for table, name, definition in added:
        add_constraint_not_valid(table, name, definition)
    for table, name, _definition in (*swaps, *added):
        validate_constraint(table, name)
    _build_index("ix_policy_versions_payload_id", "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_policy_versions_payload_id "
                 "ON policy_versions (payload_id) WHERE payload_id IS NOT NULL")
    _build_index("ix_backup_sets_item_ids", "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_backup_sets_item_ids "
                 "ON backup_sets USING gin (item_ids)")
    _build_index("ux_backup_sets_one_active_per_tenant", "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "
                 "ux_backup_sets_one_active_per_tenant ON backup_sets (tenant_id) WHERE status IN ('pending', 'running')")
    # The validated CHECK lets SET NOT NULL skip its scan; then it has done its job.
    run_outside_transaction("ALTER TABLE restore_runs ALTER COLUMN source_tenant_id SET NOT NULL",
                            "ALTER TABLE restore_runs DROP CONSTRAINT IF EXISTS ck_restore_runs_source_tenant_id_not_null")


def _rebuild_backup_items():
    """Phase 2, one transaction: payloads and content-addressed items from the demo-era per-set items."""
    _tenant_owned(
        "backup_payloads",
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("family", sa.String(64), nullable=False),
        sa.Column("body", JSONB, nullable=False),
        sa.Column("size_bytes", sa.Integer, nullable=False),
        _created_at(),
        constraints=(sa.UniqueConstraint("tenant_id", "content_hash", name="uq_backup_payloads_tenant_id_content_hash"),
                     sa.CheckConstraint("size_bytes >= 0", name="size_nonnegative")),
    )
    _secure("backup_payloads")
    # The demo-era items: one payload per (tenant, content), one item per (tenant, object, payload),
    # each set's list of them. Kept aside while backup_items is rebuilt.
    op.execute("""
        INSERT INTO backup_payloads (tenant_id, workspace_id, content_hash, family, body, size_bytes, created_at)
        SELECT DISTINCT ON (l.tenant_id, h.digest) l.tenant_id, l.workspace_id, h.digest, l.item_type, h.body,
               octet_length(h.body::text), l.created_at
          FROM backup_items l
          CROSS JOIN LATERAL (SELECT jsonb_build_object('object', l.payload) AS body) b
          CROSS JOIN LATERAL (SELECT b.body, encode(sha256(convert_to(b.body::text, 'UTF8')), 'hex') AS digest) h
         ORDER BY l.tenant_id, h.digest, l.id""")
    op.execute("""
        CREATE TEMPORARY TABLE legacy_backup_items AS
        SELECT l.id AS legacy_id, l.backup_set_id, l.tenant_id, l.workspace_id, l.item_type AS family,
               left(coalesce(pol.graph_id, l.payload ->> 'id', 'legacy-item-' || l.id), 128) AS graph_id,
               l.display_name, p.id AS payload_id, p.content_hash, l.created_at
          FROM backup_items l
          LEFT JOIN policies pol ON pol.id = l.policy_id AND pol.tenant_id = l.tenant_id
          JOIN backup_payloads p ON p.tenant_id = l.tenant_id
           AND p.content_hash = encode(sha256(convert_to(jsonb_build_object('object', l.payload)::text, 'UTF8')),
                                       'hex')""")
    op.drop_table("backup_items")
    _tenant_owned(
        "backup_items",
        sa.Column("family", sa.String(64), nullable=False),
        sa.Column("graph_id", sa.String(128), nullable=False),
        sa.Column("display_name", sa.String(400), nullable=False),
        sa.Column("payload_id", sa.BigInteger, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("is_reference", sa.Boolean, nullable=False, server_default="false"),
        _created_at(),
        constraints=(
            sa.ForeignKeyConstraint(["payload_id", "tenant_id"], ["backup_payloads.id", "backup_payloads.tenant_id"],
                                    name="fk_backup_items_payload_id_tenant_id_backup_payloads"),
            sa.UniqueConstraint("tenant_id", "family", "graph_id", "payload_id",
                                name="uq_backup_items_tenant_id_family_graph_id_payload_id"),
        ),
    )
    op.create_index("ix_backup_items_payload_id", "backup_items", ["payload_id"])
    _secure("backup_items")
    op.execute("""
        INSERT INTO backup_items (tenant_id, workspace_id, family, graph_id, display_name, payload_id, content_hash,
                                  created_at)
        SELECT DISTINCT ON (tenant_id, family, graph_id, payload_id)
               tenant_id, workspace_id, family, graph_id, display_name, payload_id, content_hash, created_at
          FROM legacy_backup_items
         ORDER BY tenant_id, family, graph_id, payload_id, legacy_id""")
    op.execute("""
        UPDATE backup_sets s SET item_ids = m.ids
          FROM (SELECT l.backup_set_id, array_agg(DISTINCT i.id ORDER BY i.id) AS ids
                  FROM legacy_backup_items l
                  JOIN backup_items i ON i.tenant_id = l.tenant_id AND i.family = l.family
                   AND i.graph_id = l.graph_id AND i.payload_id = l.payload_id
                 GROUP BY l.backup_set_id) m
         WHERE s.id = m.backup_set_id""")
    op.execute("DROP TABLE legacy_backup_items")

    _tenant_owned(
        "restore_items",
        sa.Column("restore_run_id", sa.BigInteger, nullable=False),
        sa.Column("source_tenant_id", sa.BigInteger, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("family", sa.String(64), nullable=False),
        sa.Column("source_graph_id", sa.String(128), nullable=False),
        sa.Column("display_name", sa.String(400), nullable=False),
        sa.Column("payload_id", sa.BigInteger, nullable=False),
        sa.Column("action", sa.String(16)),
        sa.Column("target_graph_id", sa.String(128)),
        sa.Column("plan", JSONB, nullable=False, server_default="{}"),
        sa.Column("status", sa.String(16), nullable=False, server_default="planned"),
        sa.Column("error", sa.String(1000)),
        sa.Column("verified", sa.Boolean),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        _created_at(),
        constraints=(
            sa.ForeignKeyConstraint(["restore_run_id", "tenant_id"], ["restore_runs.id", "restore_runs.tenant_id"],
                                    ondelete="CASCADE", name="fk_restore_items_restore_run_id_tenant_id_restore_runs"),
            sa.ForeignKeyConstraint(["payload_id", "source_tenant_id"], ["backup_payloads.id", "backup_payloads.tenant_id"],
                                    name="fk_restore_items_payload_id_source_tenant_id_backup_payloads"),
            sa.ForeignKeyConstraint(["source_tenant_id", "workspace_id"], ["tenants.id", "tenants.workspace_id"],
                                    onupdate="CASCADE", name="fk_restore_items_source_tenant_id_workspace_id_tenants"),
            sa.UniqueConstraint("restore_run_id", "position", name="uq_restore_items_restore_run_id_position"),
            sa.CheckConstraint(_in("action", RESTORE_ITEM_ACTIONS), name="action_known"),
            sa.CheckConstraint(_in("status", RESTORE_ITEM_STATUSES), name="status_known"),
        ),
    )
    op.create_index("ix_restore_items_payload_id", "restore_items", ["payload_id"])
    _secure("restore_items")

    op.execute("""
        CREATE FUNCTION orphaned_job_rows(older_than_minutes integer)
        RETURNS TABLE (kind text, row_id bigint, workspace_id bigint)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
            SELECT 'backup', s.id, s.workspace_id
              FROM public.backup_sets s
             WHERE s.status IN ('pending', 'running')
               AND coalesce(s.started_at, s.created_at) < now() - make_interval(mins => greatest(older_than_minutes, 1))
               AND NOT EXISTS (
                   SELECT 1 FROM public.procrastinate_jobs j
                    WHERE j.task_name = 'backup_tenant' AND j.args ->> 'backup_set_id' = s.id::text
                      AND j.status IN ('todo', 'doing'))
            UNION ALL
            SELECT 'restore', r.id, r.workspace_id
              FROM public.restore_runs r
             WHERE r.status IN ('planning', 'queued', 'running')
               AND coalesce(r.planned_at, r.created_at) < now() - make_interval(mins => greatest(older_than_minutes, 1))
               AND NOT EXISTS (
                   SELECT 1 FROM public.procrastinate_jobs j
                    WHERE j.task_name IN ('plan_restore', 'execute_restore')
                      AND j.args ->> 'restore_run_id' = r.id::text
                      AND j.status IN ('todo', 'doing'))
             LIMIT 1000
        $$""")
    op.execute("REVOKE ALL ON FUNCTION orphaned_job_rows(integer) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION orphaned_job_rows(integer) TO {APP_ROLE}")

    op.execute("""
        CREATE FUNCTION backup_schedules_due(max_schedules integer)
        RETURNS TABLE (schedule_id bigint, workspace_id bigint)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
            SELECT s.id, s.workspace_id
              FROM public.backup_schedules s
              JOIN public.tenants t ON t.id = s.tenant_id
             WHERE s.is_enabled AND s.next_run_at <= now()
               AND t.status = 'active'
               AND t.connection_status IN ('connected', 'missing_permissions', 'failing')
             ORDER BY s.next_run_at
             LIMIT least(greatest(max_schedules, 0), 10000)
        $$""")
    op.execute("REVOKE ALL ON FUNCTION backup_schedules_due(integer) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION backup_schedules_due(integer) TO {APP_ROLE}")


def downgrade():
    op.execute("DROP FUNCTION IF EXISTS backup_schedules_due(integer)")
    op.execute("DROP FUNCTION IF EXISTS orphaned_job_rows(integer)")
    op.drop_table("restore_items")
    # The old shape holds only restores from a backup set of the same tenant, in its statuses.
    op.execute(f"DELETE FROM restore_runs WHERE backup_set_id IS NULL OR source_tenant_id <> tenant_id "
               f"OR NOT ({_in('status', OLD_RESTORE_STATUSES)})")
    for name in ("fk_restore_runs_backup_set_id_source_tenant_id_backup_sets",
                 "fk_restore_runs_source_tenant_id_workspace_id_tenants",
                 "fk_restore_runs_policy_version_id_source_tenant_id", "fk_restore_runs_executed_by_user_id_users",
                 "ck_restore_runs_status_known", "ck_restore_runs_assignment_mode_known"):
        op.execute(f"ALTER TABLE restore_runs DROP CONSTRAINT {name}")
    op.execute(f"ALTER TABLE restore_runs ADD CONSTRAINT ck_restore_runs_status_known "
               f"CHECK ({_in('status', OLD_RESTORE_STATUSES)})")
    op.execute("ALTER TABLE restore_runs ALTER COLUMN backup_set_id SET NOT NULL")
    op.execute("ALTER TABLE restore_runs ADD CONSTRAINT fk_restore_runs_backup_set_id_tenant_id_backup_sets "
               "FOREIGN KEY (backup_set_id, tenant_id) REFERENCES backup_sets (id, tenant_id)")
    for column in ("summary", "error", "attempts", "planned_at", "executed_by_user_id", "assignment_mode",
                   "policy_version_id", "source_tenant_id"):
        op.drop_column("restore_runs", column)
    op.execute("ALTER TABLE policy_versions DROP CONSTRAINT uq_policy_versions_id_tenant_id")
    op.execute("ALTER TABLE restore_runs DROP CONSTRAINT uq_restore_runs_id_tenant_id")

    op.execute("DROP INDEX IF EXISTS ix_policy_versions_payload_id")
    op.drop_constraint("fk_policy_versions_payload_id_tenant_id_backup_payloads", "policy_versions")
    op.drop_column("policy_versions", "payload_id")
    op.drop_constraint("ck_backup_schedules_keep_last_range", "backup_schedules")
    op.drop_column("backup_schedules", "last_run_at")
    op.drop_column("backup_schedules", "keep_last")

    # Back to one item row per set, its payload inline; sets from an upload or a command become "user".
    op.execute("DROP INDEX IF EXISTS ux_backup_sets_one_active_per_tenant")
    op.execute("DROP INDEX IF EXISTS ix_backup_sets_item_ids")
    op.execute("UPDATE backup_sets SET triggered_by = 'user' WHERE triggered_by IN ('upload', 'command')")
    op.execute("ALTER TABLE backup_sets DROP CONSTRAINT ck_backup_sets_triggered_by_known")
    op.execute("ALTER TABLE backup_sets ADD CONSTRAINT ck_backup_sets_triggered_by_known "
               "CHECK (triggered_by IN ('user', 'schedule'))")
    op.execute("""
        CREATE TEMPORARY TABLE set_items AS
        SELECT s.tenant_id, s.workspace_id, s.id AS backup_set_id, pol.id AS policy_id, i.family, i.display_name,
               coalesce(p.body -> 'object', p.body) AS payload, p.content_hash, i.created_at
          FROM backup_sets s
          CROSS JOIN LATERAL unnest(s.item_ids) AS m(item_id)
          JOIN backup_items i ON i.id = m.item_id AND i.tenant_id = s.tenant_id
          JOIN backup_payloads p ON p.id = i.payload_id
          LEFT JOIN policies pol ON pol.tenant_id = s.tenant_id AND pol.graph_id = i.graph_id""")
    op.drop_table("backup_items")
    op.create_table(
        "backup_items",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("tenant_id", sa.BigInteger, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("backup_set_id", sa.BigInteger, nullable=False),
        sa.Column("policy_id", sa.BigInteger),
        sa.Column("item_type", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(400), nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        _created_at(),
        sa.Column("workspace_id", sa.BigInteger, sa.ForeignKey("workspaces.id"), nullable=False),
        sa.ForeignKeyConstraint(["backup_set_id", "tenant_id"], ["backup_sets.id", "backup_sets.tenant_id"],
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["policy_id", "tenant_id"], ["policies.id", "policies.tenant_id"]),
        sa.ForeignKeyConstraint(["tenant_id", "workspace_id"], ["tenants.id", "tenants.workspace_id"],
                                onupdate="CASCADE"),
    )
    for columns in (["tenant_id"], ["backup_set_id"], ["policy_id"], ["workspace_id", "tenant_id"]):
        op.create_index(f"ix_backup_items_{'_'.join(columns)}", "backup_items", columns)
    op.execute("""
        INSERT INTO backup_items (tenant_id, workspace_id, backup_set_id, policy_id, item_type, display_name, payload,
                                  content_hash, created_at)
        SELECT tenant_id, workspace_id, backup_set_id, policy_id, family, display_name, payload, content_hash,
               created_at
          FROM set_items""")
    op.execute("DROP TABLE set_items")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON backup_items TO {APP_ROLE}")
    op.execute("ALTER TABLE backup_items ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE backup_items FORCE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY current_workspace ON backup_items USING (workspace_id = {CURRENT_WORKSPACE}) "
               f"WITH CHECK (workspace_id = {CURRENT_WORKSPACE})")
    for column in ("size_bytes", "throttled", "requests", "attempts", "error", "skipped_count", "requested_families",
                   "families", "item_ids"):
        op.drop_column("backup_sets", column)
    op.drop_table("backup_payloads")
