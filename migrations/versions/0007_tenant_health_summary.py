"""Tenant health summary: one row per tenant with the counters the portfolio sorts by.

The portfolio lists a workspace's tenants with their policy count, open findings
by severity, missing permissions and latest backup, sortable by each. Computed
on read, a sort by one of them counts every policy of the workspace (500,000 at
2,000 tenants); read from `tenant_health`, it sorts one row per tenant.

- `tenant_health` (tenant_id primary key, workspace_id) is bound to its tenant by
  the composite key (tenant_id, workspace_id) -> tenants ON UPDATE CASCADE ON
  DELETE CASCADE, like every tenant-owned row, and has row-level security like them.
- Only the database writes it: triggers on tenants (a zero row for a new tenant),
  policies, findings, tenant_permissions and backup_sets. Inserts and deletes are
  counted per statement from the transition tables, so a bulk insert costs one
  update per tenant, not one per row; updates are counted per row, and only when
  a counted column changes (WHEN clause: no cost for other updates, such as the
  workspace backfill); TRUNCATE zeroes the counters it empties. The trigger
  functions are SECURITY DEFINER (owned by the migration owner), so the app role
  gets SELECT only: it cannot forge a counter.
- Every trigger takes a shared transaction-level advisory lock per tenant it
  touches; `refresh_tenant_health(tenant_id)` takes the same lock exclusively and
  recomputes the row from the source tables. So a refresh never races a write in
  flight: it waits for writers of that tenant to commit, and writers that start
  after it wait for it. The refresh locks one tenant per transaction, so it cannot
  deadlock with writers.
- The population at the end refreshes every tenant, one per transaction, in
  autocommit mode: no long transaction and no lock beyond one tenant's writers
  for the time of one recount. `flask refresh-tenant-health` runs the same
  function (a repair, and a check: it reports rows it had to correct).

Creating a trigger takes a SHARE ROW EXCLUSIVE lock on its table for an instant;
each is its own autocommitted statement under the migration's lock_timeout.

Reversible: the downgrade drops the triggers, the functions and the table.

Revision ID: 0007_tenant_health_summary
Revises: 0006_row_level_security
Create Date: 2026-11-24
"""
import os
import time

from alembic import op
from sqlalchemy.exc import OperationalError

from migrations.rollout import run_outside_transaction

revision = "0007_tenant_health_summary"
down_revision = "0006_row_level_security"
branch_labels = None
depends_on = None

APP_ROLE = os.environ.get("APP_DATABASE_ROLE", "tenantatlas_app")
CURRENT_WORKSPACE = "NULLIF(current_setting('app.current_workspace_id', true), '')::bigint"
# First key of the two-key advisory locks on a tenant's health row ("th").
LOCK_SPACE = 29800
DEFINER = "LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp"


def lock_tenants_shared(rows: str) -> str:
    """Shared locks, in tenant order, on every tenant of a transition table."""
    return (f"PERFORM pg_advisory_xact_lock_shared({LOCK_SPACE}, (t.tenant_id % 2147483647)::int) "
            f"FROM (SELECT DISTINCT tenant_id FROM {rows} ORDER BY tenant_id) t;")


LOCK_OLD_AND_NEW = ("PERFORM tenant_health_lock_shared(t) "
                    "FROM (SELECT DISTINCT unnest(ARRAY[OLD.tenant_id, NEW.tenant_id]) AS t) ids ORDER BY t;")
OLD_ROW = "(SELECT OLD.*) AS old_row"
NEW_ROW = "(SELECT NEW.*) AS new_row"


def add_counts(counters: dict[str, str], rows: str, sign: str) -> str:
    """UPDATE tenant_health adding (sign) each counter's count(*) FILTER (WHERE condition) over rows."""
    sets = ", ".join(f"{column} = h.{column} {sign} d.{column}" for column in counters)
    counts = ", ".join(f"count(*) FILTER (WHERE {condition}) AS {column}" for column, condition in counters.items())
    return (f"UPDATE tenant_health h SET {sets}, updated_at = now() "
            f"FROM (SELECT tenant_id, {counts} FROM {rows} GROUP BY tenant_id) d "
            f"WHERE h.tenant_id = d.tenant_id;")


def counting_function(counters: dict[str, str]) -> str:
    """A trigger function keeping counters: per statement for inserts and deletes, per row for updates."""
    return f"""
        RETURNS trigger {DEFINER} AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                {lock_tenants_shared('new_rows')}
                {add_counts(counters, 'new_rows', '+')}
            ELSIF TG_OP = 'DELETE' THEN
                {lock_tenants_shared('old_rows')}
                {add_counts(counters, 'old_rows', '-')}
            ELSE  -- a counted column changed (the trigger's WHEN clause)
                {LOCK_OLD_AND_NEW}
                {add_counts(counters, OLD_ROW, '-')}
                {add_counts(counters, NEW_ROW, '+')}
            END IF;
            RETURN NULL;
        END $$"""


FINDING_COUNTERS = {f"open_{severity}": f"status = 'open' AND severity = '{severity}'"
                    for severity in ("critical", "high", "medium", "low")}

FUNCTIONS = {
    "tenant_health_lock_shared(for_tenant bigint)": f"""
        RETURNS void {DEFINER} AS $$
        BEGIN
            PERFORM pg_advisory_xact_lock_shared({LOCK_SPACE}, (for_tenant % 2147483647)::int);
        END $$""",
    # A new tenant starts with zero counters.
    "tenant_health_add_tenants()": f"""
        RETURNS trigger {DEFINER} AS $$
        BEGIN
            INSERT INTO tenant_health (tenant_id, workspace_id)
            SELECT id, workspace_id FROM new_rows
            ON CONFLICT (tenant_id) DO NOTHING;
            RETURN NULL;
        END $$""",
    "tenant_health_count_policies()": counting_function({"policy_count": "true"}),
    "tenant_health_count_findings()": counting_function(FINDING_COUNTERS),
    "tenant_health_count_permissions()": counting_function({"missing_permissions": "status = 'missing'"}),
    # The latest backup is looked up again (a few index entries per tenant), not counted.
    "tenant_health_latest_backup(tenant_ids bigint[])": f"""
        RETURNS void {DEFINER} AS $$
        BEGIN
            PERFORM tenant_health_lock_shared(t) FROM (SELECT DISTINCT unnest(tenant_ids) AS t) ids ORDER BY t;
            UPDATE tenant_health h SET last_backup_at = b.started_at, last_backup_status = b.status, updated_at = now()
              FROM (SELECT DISTINCT unnest(tenant_ids) AS tenant_id) ids
              LEFT JOIN LATERAL (
                    SELECT s.started_at, s.status FROM backup_sets s
                     WHERE s.tenant_id = ids.tenant_id
                     ORDER BY s.started_at DESC NULLS LAST, s.id DESC LIMIT 1) b ON true
             WHERE h.tenant_id = ids.tenant_id;
        END $$""",
    "tenant_health_track_backups()": f"""
        RETURNS trigger {DEFINER} AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                PERFORM tenant_health_latest_backup(ARRAY(SELECT DISTINCT tenant_id FROM new_rows));
            ELSIF TG_OP = 'DELETE' THEN
                PERFORM tenant_health_latest_backup(ARRAY(SELECT DISTINCT tenant_id FROM old_rows));
            ELSE
                PERFORM tenant_health_latest_backup(ARRAY[OLD.tenant_id, NEW.tenant_id]);
            END IF;
            RETURN NULL;
        END $$""",
    # TRUNCATE fires no DELETE trigger; it holds its table exclusively, so no writer races this.
    "tenant_health_truncated()": f"""
        RETURNS trigger {DEFINER} AS $$
        BEGIN
            IF TG_TABLE_NAME = 'policies' THEN
                UPDATE tenant_health SET policy_count = 0, updated_at = now() WHERE policy_count <> 0;
            ELSIF TG_TABLE_NAME = 'findings' THEN
                UPDATE tenant_health SET open_critical = 0, open_high = 0, open_medium = 0, open_low = 0,
                       updated_at = now()
                 WHERE (open_critical, open_high, open_medium, open_low) <> (0, 0, 0, 0);
            ELSIF TG_TABLE_NAME = 'tenant_permissions' THEN
                UPDATE tenant_health SET missing_permissions = 0, updated_at = now() WHERE missing_permissions <> 0;
            ELSIF TG_TABLE_NAME = 'backup_sets' THEN
                UPDATE tenant_health SET last_backup_at = NULL, last_backup_status = NULL, updated_at = now()
                 WHERE last_backup_at IS NOT NULL OR last_backup_status IS NOT NULL;
            END IF;
            RETURN NULL;
        END $$""",
    # Recompute one tenant's row under the exclusive lock; true when it changed.
    "refresh_tenant_health(for_tenant bigint)": f"""
        RETURNS boolean {DEFINER} AS $$
        DECLARE
            changed boolean;
        BEGIN
            PERFORM pg_advisory_xact_lock({LOCK_SPACE}, (for_tenant % 2147483647)::int);
            -- A new statement, a new snapshot: it sees every writer that held the lock.
            WITH fresh AS (
                SELECT t.id AS tenant_id, t.workspace_id,
                       (SELECT count(*) FROM policies p WHERE p.tenant_id = t.id) AS policy_count,
                       f.critical, f.high, f.medium, f.low,
                       (SELECT count(*) FROM tenant_permissions m
                         WHERE m.tenant_id = t.id AND m.status = 'missing') AS missing_permissions,
                       b.started_at, b.status
                  FROM tenants t
                  CROSS JOIN LATERAL (
                        SELECT count(*) FILTER (WHERE severity = 'critical') AS critical,
                               count(*) FILTER (WHERE severity = 'high') AS high,
                               count(*) FILTER (WHERE severity = 'medium') AS medium,
                               count(*) FILTER (WHERE severity = 'low') AS low
                          FROM findings WHERE tenant_id = t.id AND status = 'open') f
                  LEFT JOIN LATERAL (
                        SELECT s.started_at, s.status FROM backup_sets s WHERE s.tenant_id = t.id
                         ORDER BY s.started_at DESC NULLS LAST, s.id DESC LIMIT 1) b ON true
                 WHERE t.id = for_tenant
            ), upserted AS (
                INSERT INTO tenant_health AS h (
                    tenant_id, workspace_id, policy_count, open_critical, open_high, open_medium, open_low,
                    missing_permissions, last_backup_at, last_backup_status)
                SELECT * FROM fresh
                ON CONFLICT (tenant_id) DO UPDATE SET
                    policy_count = excluded.policy_count, open_critical = excluded.open_critical,
                    open_high = excluded.open_high, open_medium = excluded.open_medium,
                    open_low = excluded.open_low, missing_permissions = excluded.missing_permissions,
                    last_backup_at = excluded.last_backup_at, last_backup_status = excluded.last_backup_status,
                    updated_at = now()
                WHERE (h.policy_count, h.open_critical, h.open_high, h.open_medium, h.open_low,
                       h.missing_permissions, h.last_backup_at, h.last_backup_status)
                      IS DISTINCT FROM
                      (excluded.policy_count, excluded.open_critical, excluded.open_high, excluded.open_medium,
                       excluded.open_low, excluded.missing_permissions, excluded.last_backup_at,
                       excluded.last_backup_status)
                RETURNING 1
            )
            SELECT count(*) > 0 INTO changed FROM upserted;
            RETURN changed;
        END $$""",
}

# (name, table, timing and events, transition table, WHEN condition or None, function)
TRIGGERS = (
    ("tenant_health_new_tenant", "tenants", "AFTER INSERT", "NEW TABLE AS new_rows", None,
     "tenant_health_add_tenants"),
    ("tenant_health_policies_inserted", "policies", "AFTER INSERT", "NEW TABLE AS new_rows", None,
     "tenant_health_count_policies"),
    ("tenant_health_policies_deleted", "policies", "AFTER DELETE", "OLD TABLE AS old_rows", None,
     "tenant_health_count_policies"),
    ("tenant_health_policies_moved", "policies", "AFTER UPDATE OF tenant_id", None,
     "OLD.tenant_id IS DISTINCT FROM NEW.tenant_id", "tenant_health_count_policies"),
    ("tenant_health_findings_inserted", "findings", "AFTER INSERT", "NEW TABLE AS new_rows", None,
     "tenant_health_count_findings"),
    ("tenant_health_findings_deleted", "findings", "AFTER DELETE", "OLD TABLE AS old_rows", None,
     "tenant_health_count_findings"),
    ("tenant_health_findings_changed", "findings", "AFTER UPDATE OF tenant_id, status, severity", None,
     "(OLD.tenant_id, OLD.status, OLD.severity) IS DISTINCT FROM (NEW.tenant_id, NEW.status, NEW.severity)",
     "tenant_health_count_findings"),
    ("tenant_health_permissions_inserted", "tenant_permissions", "AFTER INSERT", "NEW TABLE AS new_rows", None,
     "tenant_health_count_permissions"),
    ("tenant_health_permissions_deleted", "tenant_permissions", "AFTER DELETE", "OLD TABLE AS old_rows", None,
     "tenant_health_count_permissions"),
    ("tenant_health_permissions_changed", "tenant_permissions", "AFTER UPDATE OF tenant_id, status", None,
     "(OLD.tenant_id, OLD.status) IS DISTINCT FROM (NEW.tenant_id, NEW.status)",
     "tenant_health_count_permissions"),
    ("tenant_health_backups_inserted", "backup_sets", "AFTER INSERT", "NEW TABLE AS new_rows", None,
     "tenant_health_track_backups"),
    ("tenant_health_backups_deleted", "backup_sets", "AFTER DELETE", "OLD TABLE AS old_rows", None,
     "tenant_health_track_backups"),
    ("tenant_health_backups_changed", "backup_sets", "AFTER UPDATE OF tenant_id, started_at, status", None,
     "(OLD.tenant_id, OLD.started_at, OLD.status) IS DISTINCT FROM (NEW.tenant_id, NEW.started_at, NEW.status)",
     "tenant_health_track_backups"),
    *((f"tenant_health_{table}_truncated", table, "AFTER TRUNCATE", None, None, "tenant_health_truncated")
      for table in ("policies", "findings", "tenant_permissions", "backup_sets")),
)


def create_trigger(name, table, events, transition, condition, function) -> str:
    referencing = f" REFERENCING {transition}" if transition else ""
    level = "STATEMENT" if transition or "TRUNCATE" in events else "ROW"
    when = f" WHEN ({condition})" if condition else ""
    return (f"CREATE OR REPLACE TRIGGER {name} {events} ON {table}{referencing} "
            f"FOR EACH {level}{when} EXECUTE FUNCTION {function}()")


def upgrade():
    op.execute("""
        CREATE TABLE IF NOT EXISTS tenant_health (
            tenant_id bigint NOT NULL,
            workspace_id bigint NOT NULL,
            policy_count bigint NOT NULL DEFAULT 0,
            open_critical bigint NOT NULL DEFAULT 0,
            open_high bigint NOT NULL DEFAULT 0,
            open_medium bigint NOT NULL DEFAULT 0,
            open_low bigint NOT NULL DEFAULT 0,
            missing_permissions bigint NOT NULL DEFAULT 0,
            last_backup_at timestamptz,
            last_backup_status varchar(16),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_tenant_health PRIMARY KEY (tenant_id),
            CONSTRAINT fk_tenant_health_tenant_id_workspace_id_tenants FOREIGN KEY (tenant_id, workspace_id)
                REFERENCES tenants (id, workspace_id) ON UPDATE CASCADE ON DELETE CASCADE
        )""")
    op.execute("CREATE INDEX IF NOT EXISTS ix_tenant_health_workspace_id ON tenant_health (workspace_id)")
    op.execute("ALTER TABLE tenant_health ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE tenant_health FORCE ROW LEVEL SECURITY")
    op.execute("DROP POLICY IF EXISTS current_workspace ON tenant_health")
    op.execute(f"CREATE POLICY current_workspace ON tenant_health USING (workspace_id = {CURRENT_WORKSPACE}) "
               f"WITH CHECK (workspace_id = {CURRENT_WORKSPACE})")
    # Read-only for the app: the triggers (SECURITY DEFINER) are its only writers.
    op.execute(f"REVOKE ALL ON tenant_health FROM {APP_ROLE}")
    op.execute(f"GRANT SELECT ON tenant_health TO {APP_ROLE}")
    for signature, body in FUNCTIONS.items():
        op.execute(f"CREATE OR REPLACE FUNCTION {signature} {body}")
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
    # The new table and functions commit first; each trigger then locks its table for an instant.
    run_outside_transaction(*(create_trigger(*trigger) for trigger in TRIGGERS))
    populate()


def populate() -> None:
    """Refresh every tenant, one per autocommitted statement (its own transaction).

    A refresh waits for the tenant's writers in flight; past the lock_timeout it is
    tried again, a few times, before the migration gives up (it can be run again:
    every step above is idempotent).
    """
    if op.get_context().as_sql:
        op.execute("SELECT refresh_tenant_health(id) FROM tenants ORDER BY id")
        return
    bind = op.get_bind()
    with op.get_context().autocommit_block():
        after = 0
        while True:
            ids = bind.exec_driver_sql(
                "SELECT id FROM tenants WHERE id > %(after)s ORDER BY id LIMIT 1000", {"after": after}
            ).scalars().all()
            if not ids:
                break
            for tenant_id in ids:
                refresh_with_retries(bind, tenant_id)
            after = ids[-1]


def refresh_with_retries(bind, tenant_id: int, attempts: int = 5) -> None:
    for attempt in range(1, attempts + 1):
        try:
            bind.exec_driver_sql("SELECT refresh_tenant_health(%(t)s)", {"t": tenant_id})
            return
        except OperationalError as error:
            if getattr(error.orig, "sqlstate", None) != "55P03" or attempt == attempts:  # lock_not_available
                raise
            time.sleep(0.5 * attempt)


def downgrade():
    run_outside_transaction(*(f"DROP TRIGGER IF EXISTS {name} ON {table}" for name, table, *_ in TRIGGERS))
    for signature in reversed(list(FUNCTIONS)):
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
    op.execute("DROP TABLE IF EXISTS tenant_health")
