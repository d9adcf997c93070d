"""Tenant health summary: one row per tenant with the counters the portfolio sorts by.

The portfolio lists a workspace's tenants with their policy count, open findings
by severity, missing permissions and latest backup, sortable by each. Computed
on read, a sort by one of them counts every policy of the workspace (500,000 at
2,000 tenants); read from `tenant_health`, it sorts one row per tenant.

- `tenant_health` (tenant_id primary key, workspace_id) is bound to its tenant by
  the composite key (tenant_id, workspace_id) -> tenants ON UPDATE CASCADE ON
  DELETE CASCADE, like every tenant-owned row, and has row-level security like them.
- Only the database writes it: triggers on tenants (a zero row for a new tenant),
  policies, findings, tenant_permissions and backup_sets. They count per statement
  from the transition tables, so a bulk write costs one update per tenant, not one
  per row, and a statement that changes no counted column (the workspace backfill)
  locks and writes nothing. Policy updates are the exception: frequent and wide,
  they get a row trigger that fires only when tenant_id changes. TRUNCATE zeroes
  the counters it empties. The trigger functions are SECURITY DEFINER (owned by
  the migration owner; search_path pg_catalog, every table schema-qualified), so
  the app role gets SELECT only: it cannot forge a counter.
- Lock protocol: a trigger locks the health rows of the tenants whose counts it
  changes FOR UPDATE, in tenant order, at the end of the statement, and holds them
  to commit. `refresh_tenant_health(tenant_id)` locks the same row FOR UPDATE, so
  it waits for every writer of the tenant's counts in flight and holds new ones
  back, then recounts in a new statement (READ COMMITTED: a fresh snapshot): no
  concurrent write is lost or counted twice. Writers of uncounted rows, tenant
  moves and deletions are not involved (a deleted tenant is skipped). Row locks
  live in the rows, not in the shared lock table: a statement may touch any
  number of tenants. A row that does not exist yet cannot be locked, so the
  population first creates every row (zeros), then waits for the transactions
  that began before (their triggers found no row), then recounts.
- The population at the end refreshes every tenant, one per transaction, in
  autocommit mode: no long transaction and no lock beyond one tenant's writers
  for the time of one recount. `flask refresh-tenant-health` runs the same
  function (a repair, and a check: it reports rows it had to correct).
- The price: writers of one tenant's counts queue on its health row until they
  commit, and two transactions that each change counts of the same tenant (or two
  tenants in opposite orders) over several statements can deadlock on it, where
  PostgreSQL aborts one. The app changes counts in one statement per transaction.

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
from sqlalchemy.exc import DBAPIError

from migrations.rollout import run_outside_transaction

revision = "0007_tenant_health_summary"
down_revision = "0006_row_level_security"
branch_labels = None
depends_on = None

APP_ROLE = os.environ.get("APP_DATABASE_ROLE", "tenantatlas_app")
CURRENT_WORKSPACE = "NULLIF(current_setting('app.current_workspace_id', true), '')::bigint"
# Definer functions resolve names and operators in pg_catalog only: a schema some role
# can create objects in (public, before PostgreSQL 15) could otherwise lend them an
# operator that runs as the owner. Every table is named with its schema.
DEFINER = "LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp"


def lock_health_rows(ids: str) -> str:
    """The lock protocol: the changed tenants' health rows FOR UPDATE, in tenant order (so
    that a statement's updates of several tenants always lock in the same order); a
    refresh takes the same row lock."""
    return f"PERFORM 1 FROM public.tenant_health WHERE tenant_id = ANY({ids}) ORDER BY tenant_id FOR UPDATE;"


CHANGED_ROWS = {  # TG_OP -> the statement's rows, each with the sign of its contribution
    "INSERT": "SELECT n.*, 1 AS sign FROM new_rows n",
    "DELETE": "SELECT o.*, -1 AS sign FROM old_rows o",
    "UPDATE": "SELECT n.*, 1 AS sign FROM new_rows n UNION ALL SELECT o.*, -1 AS sign FROM old_rows o",
}


def counting_function(counters: dict[str, str]) -> str:
    """A statement-level trigger function: per tenant, the sum of the statement's signed
    contributions to each counter; only tenants with a non-zero change are locked and updated
    (an UPDATE that changes no counted column, like the workspace backfill, touches nothing)."""
    columns = list(counters)
    declare = "\n".join(f"            d_{c} bigint[];" for c in columns)
    sums = ", ".join(f"coalesce(sum(c.sign) FILTER (WHERE {condition}), 0) AS {column}"
                     for column, condition in counters.items())
    nonzero = " OR ".join(f"{c} <> 0" for c in columns)
    into = ", ".join(f"array_agg({c} ORDER BY tenant_id)" for c in columns)
    targets = ", ".join(f"d_{c}" for c in columns)
    sets = ", ".join(f"{c} = h.{c} + d.{c}" for c in columns)
    branches = "\n".join(
        f"""            {'IF' if i == 0 else 'ELSIF'} TG_OP = '{op}' THEN
                SELECT array_agg(tenant_id ORDER BY tenant_id), {into} INTO ids, {targets}
                  FROM (SELECT c.tenant_id, {sums} FROM ({rows}) c GROUP BY c.tenant_id) d
                 WHERE {nonzero};"""
        for i, (op, rows) in enumerate(CHANGED_ROWS.items()))
    return f"""
        RETURNS trigger {DEFINER} AS $$
        DECLARE
            ids bigint[];
{declare}
        BEGIN
{branches}
            END IF;
            IF ids IS NULL THEN
                RETURN NULL;
            END IF;
            {lock_health_rows('ids')}
            UPDATE public.tenant_health h SET {sets}, updated_at = now()
              FROM unnest(ids, {targets}) AS d(tenant_id, {', '.join(columns)})
             WHERE h.tenant_id = d.tenant_id;
            RETURN NULL;
        END $$"""


FINDING_COUNTERS = {f"open_{severity}": f"c.status = 'open' AND c.severity = '{severity}'"
                    for severity in ("critical", "high", "medium", "low")}

FUNCTIONS = {
    # A new tenant starts with zero counters.
    "tenant_health_add_tenants()": f"""
        RETURNS trigger {DEFINER} AS $$
        BEGIN
            INSERT INTO public.tenant_health (tenant_id, workspace_id)
            SELECT id, workspace_id FROM new_rows
            ON CONFLICT (tenant_id) DO NOTHING;
            RETURN NULL;
        END $$""",
    "tenant_health_count_policies()": counting_function({"policy_count": "true"}),
    "tenant_health_count_findings()": counting_function(FINDING_COUNTERS),
    "tenant_health_count_permissions()": counting_function({"missing_permissions": "c.status = 'missing'"}),
    # A policy moved to another tenant (a row trigger: policy updates are frequent and wide,
    # and only this one changes a count, so no transition table is kept for them).
    "tenant_health_move_policy()": f"""
        RETURNS trigger {DEFINER} AS $$
        DECLARE
            ids bigint[] := ARRAY[OLD.tenant_id, NEW.tenant_id];
        BEGIN
            {lock_health_rows('ids')}
            UPDATE public.tenant_health SET policy_count = policy_count - 1, updated_at = now()
             WHERE tenant_id = OLD.tenant_id;
            UPDATE public.tenant_health SET policy_count = policy_count + 1, updated_at = now()
             WHERE tenant_id = NEW.tenant_id;
            RETURN NULL;
        END $$""",
    # The latest backup is looked up again, not counted: after the health rows are locked, in
    # a new statement, so it sees what a concurrent writer of the same tenant committed.
    "tenant_health_track_backups()": f"""
        RETURNS trigger {DEFINER} AS $$
        DECLARE
            ids bigint[];
        BEGIN
            IF TG_OP = 'INSERT' THEN
                SELECT array_agg(DISTINCT tenant_id) INTO ids FROM new_rows;
            ELSIF TG_OP = 'DELETE' THEN
                SELECT array_agg(DISTINCT tenant_id) INTO ids FROM old_rows;
            ELSE  -- rows whose (id, tenant, start, status) changed, on either side
                SELECT array_agg(DISTINCT c.tenant_id) INTO ids FROM (
                    (SELECT id, tenant_id, started_at, status FROM new_rows
                     EXCEPT SELECT id, tenant_id, started_at, status FROM old_rows)
                    UNION
                    (SELECT id, tenant_id, started_at, status FROM old_rows
                     EXCEPT SELECT id, tenant_id, started_at, status FROM new_rows)) c;
            END IF;
            IF ids IS NULL THEN
                RETURN NULL;
            END IF;
            {lock_health_rows('ids')}
            UPDATE public.tenant_health h SET last_backup_at = b.started_at, last_backup_status = b.status,
                   updated_at = now()
              FROM unnest(ids) AS d(tenant_id)
              LEFT JOIN LATERAL (
                    SELECT s.started_at, s.status FROM public.backup_sets s
                     WHERE s.tenant_id = d.tenant_id
                     ORDER BY s.started_at DESC NULLS LAST, s.id DESC LIMIT 1) b ON true
             WHERE h.tenant_id = d.tenant_id;
            RETURN NULL;
        END $$""",
    # TRUNCATE fires no DELETE trigger; it holds its table exclusively, so no writer races this.
    "tenant_health_truncated()": f"""
        RETURNS trigger {DEFINER} AS $$
        BEGIN
            IF TG_TABLE_NAME = 'policies' THEN
                UPDATE public.tenant_health SET policy_count = 0, updated_at = now() WHERE policy_count <> 0;
            ELSIF TG_TABLE_NAME = 'findings' THEN
                UPDATE public.tenant_health SET open_critical = 0, open_high = 0, open_medium = 0, open_low = 0,
                       updated_at = now()
                 WHERE (open_critical, open_high, open_medium, open_low) <> (0, 0, 0, 0);
            ELSIF TG_TABLE_NAME = 'tenant_permissions' THEN
                UPDATE public.tenant_health SET missing_permissions = 0, updated_at = now()
                 WHERE missing_permissions <> 0;
            ELSIF TG_TABLE_NAME = 'backup_sets' THEN
                UPDATE public.tenant_health SET last_backup_at = NULL, last_backup_status = NULL, updated_at = now()
                 WHERE last_backup_at IS NOT NULL OR last_backup_status IS NOT NULL;
            END IF;
            RETURN NULL;
        END $$""",
    # Recompute one tenant's row; true when it was wrong or missing. Its health row FOR
    # UPDATE waits for every writer of the tenant's counts in flight (their triggers hold
    # it until they commit) and holds new ones back until this commits.
    "refresh_tenant_health(for_tenant bigint)": f"""
        RETURNS boolean {DEFINER} AS $$
        DECLARE
            changed boolean;
        BEGIN
            IF current_setting('transaction_isolation') <> 'read committed' THEN
                -- Its recount must see what the writers it waited for committed.
                RAISE EXCEPTION 'refresh_tenant_health needs READ COMMITTED, not %',
                    current_setting('transaction_isolation');
            END IF;
            PERFORM 1 FROM public.tenant_health WHERE tenant_id = for_tenant FOR UPDATE;
            IF NOT FOUND THEN
                -- No row: the tenant is gone (its row went with it), or rows were restored
                -- without triggers. prepare_tenant_health() creates missing rows first, so
                -- that writers in flight are waited for; here the row is made and locked.
                INSERT INTO public.tenant_health (tenant_id, workspace_id)
                SELECT id, workspace_id FROM public.tenants WHERE id = for_tenant
                ON CONFLICT (tenant_id) DO NOTHING;
                PERFORM 1 FROM public.tenant_health WHERE tenant_id = for_tenant FOR UPDATE;
                IF NOT FOUND THEN
                    RETURN false;
                END IF;
                changed := true;
            END IF;
            -- A new statement, a new snapshot: it sees every writer it waited for.
            WITH fresh AS (
                SELECT t.id AS tenant_id, t.workspace_id,
                       (SELECT count(*) FROM public.policies p WHERE p.tenant_id = t.id) AS policy_count,
                       f.critical, f.high, f.medium, f.low,
                       (SELECT count(*) FROM public.tenant_permissions m
                         WHERE m.tenant_id = t.id AND m.status = 'missing') AS missing_permissions,
                       b.started_at, b.status
                  FROM public.tenants t
                  CROSS JOIN LATERAL (
                        SELECT count(*) FILTER (WHERE x.severity = 'critical') AS critical,
                               count(*) FILTER (WHERE x.severity = 'high') AS high,
                               count(*) FILTER (WHERE x.severity = 'medium') AS medium,
                               count(*) FILTER (WHERE x.severity = 'low') AS low
                          FROM public.findings x WHERE x.tenant_id = t.id AND x.status = 'open') f
                  LEFT JOIN LATERAL (
                        SELECT s.started_at, s.status FROM public.backup_sets s WHERE s.tenant_id = t.id
                         ORDER BY s.started_at DESC NULLS LAST, s.id DESC LIMIT 1) b ON true
                 WHERE t.id = for_tenant
            ), upserted AS (
                INSERT INTO public.tenant_health AS h (
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
            SELECT coalesce(changed, false) OR count(*) > 0 INTO changed FROM upserted;
            RETURN changed;
        END $$""",
}


def statement_triggers(prefix: str, table: str, function: str) -> tuple:
    return (
        (f"{prefix}_inserted", table, "AFTER INSERT", "NEW TABLE AS new_rows", None, function),
        (f"{prefix}_deleted", table, "AFTER DELETE", "OLD TABLE AS old_rows", None, function),
        (f"{prefix}_changed", table, "AFTER UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows", None, function),
        (f"{prefix}_truncated", table, "AFTER TRUNCATE", None, None, "tenant_health_truncated"),
    )


# (name, table, timing and events, transition tables, WHEN condition or None, function)
TRIGGERS = (
    ("tenant_health_new_tenant", "tenants", "AFTER INSERT", "NEW TABLE AS new_rows", None,
     "tenant_health_add_tenants"),
    ("tenant_health_policies_inserted", "policies", "AFTER INSERT", "NEW TABLE AS new_rows", None,
     "tenant_health_count_policies"),
    ("tenant_health_policies_deleted", "policies", "AFTER DELETE", "OLD TABLE AS old_rows", None,
     "tenant_health_count_policies"),
    ("tenant_health_policies_moved", "policies", "AFTER UPDATE OF tenant_id", None,
     "OLD.tenant_id IS DISTINCT FROM NEW.tenant_id", "tenant_health_move_policy"),
    ("tenant_health_policies_truncated", "policies", "AFTER TRUNCATE", None, None, "tenant_health_truncated"),
    *statement_triggers("tenant_health_findings", "findings", "tenant_health_count_findings"),
    *statement_triggers("tenant_health_permissions", "tenant_permissions", "tenant_health_count_permissions"),
    *statement_triggers("tenant_health_backups", "backup_sets", "tenant_health_track_backups"),
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

    A refresh waits for the tenant's writers in flight; past the lock_timeout (or
    chosen as a deadlock victim) it is tried again, a few times, before the migration
    gives up (it can be run again: every step above is idempotent).
    """
    if op.get_context().as_sql:
        # One statement would be one transaction holding every tenant: leave it to the command.
        op.execute("-- Populate tenant_health now: run `flask refresh-tenant-health` (one tenant per transaction).")
        return
    bind = op.get_bind()
    with op.get_context().autocommit_block():
        bind.exec_driver_sql("SET default_transaction_isolation = 'read committed'")
        # Zero rows first, then wait for the transactions that might have written counted rows
        # before them (their triggers found no row to count in): from then on every writer's
        # trigger updates and locks an existing row, which each recount below waits for.
        bind.exec_driver_sql("INSERT INTO tenant_health (tenant_id, workspace_id) "
                             "SELECT id, workspace_id FROM tenants ON CONFLICT (tenant_id) DO NOTHING")
        horizon = bind.exec_driver_sql("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint").scalar()
        deadline = time.monotonic() + OLDER_TRANSACTIONS_WAIT
        while bind.exec_driver_sql("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint < %(h)s",
                                   {"h": horizon}).scalar():
            if time.monotonic() > deadline:
                print(f"tenant_health: transactions older than {OLDER_TRANSACTIONS_WAIT} s are still open; "
                      "run `flask refresh-tenant-health` once they have ended.")
                break
            time.sleep(0.2)
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
        bind.exec_driver_sql("RESET default_transaction_isolation")


RETRYABLE = {"55P03", "40P01"}  # lock_not_available, deadlock_detected
OLDER_TRANSACTIONS_WAIT = 60


def refresh_with_retries(bind, tenant_id: int, attempts: int = 5) -> None:
    for attempt in range(1, attempts + 1):
        try:
            bind.exec_driver_sql("SELECT refresh_tenant_health(%(t)s)", {"t": tenant_id})
            return
        except DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) not in RETRYABLE or attempt == attempts:
                raise
            time.sleep(0.5 * attempt)


def downgrade():
    run_outside_transaction(*(f"DROP TRIGGER IF EXISTS {name} ON {table}" for name, table, *_ in TRIGGERS))
    for signature in reversed(list(FUNCTIONS)):
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
    op.execute("DROP TABLE IF EXISTS tenant_health")
