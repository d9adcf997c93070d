"""Portfolio tenant totals: each workspace's number of tenants per status, kept by the database.

The portfolio says how many tenants a workspace has ("5,010 tenants") on every page.
Counted on read, that is a scan of every tenant of the workspace per request; read from
`workspace_tenant_totals` it is one row per status.

- workspace_tenant_totals (workspace_id, status) -> tenants; row-level security like
  every workspace table; the app role may only read it.
- Statement-level triggers on tenants (INSERT, DELETE, UPDATE, with transition tables)
  add each statement's net change per (workspace, status); an UPDATE that changes neither
  (a sync stamping last_sync_at) writes nothing. Rows are upserted in key order, so two
  statements that change several workspaces lock their rows in the same order. TRUNCATE
  empties the table. The function is SECURITY DEFINER (search_path pg_catalog, every
  table schema-qualified), as 0007's are.
- Population: in one transaction that first takes SHARE ROW EXCLUSIVE on tenants (reads go
  on, tenant writes wait; the migration's lock_timeout bounds the wait), creates the
  triggers and counts the tenants once: no write can fall between the count and the
  triggers. Counting the tenants table is quick (an index scan of one narrow table).
- Repair: refresh_workspace_tenant_totals() recounts under the same lock; `flask
  refresh-tenant-health` runs it after the health rows (rows written with triggers off).

The price: registering, archiving or deleting tenants of one workspace updates that
workspace's row, so such writes in one workspace queue on it until they commit; they are
rare (people do them by hand, or a bulk action in one statement).

Reversible: the downgrade drops the triggers, the function and the table.

Revision ID: 0018_portfolio_tenant_totals
Revises: 0018_portfolio_sort_indexes
Create Date: 2026-11-30
"""
import os

from alembic import op

revision = "0018_portfolio_tenant_totals"
down_revision = "0018_portfolio_sort_indexes"
branch_labels = None
depends_on = None

APP_ROLE = os.environ.get("APP_DATABASE_ROLE", "tenantatlas_app")
CURRENT_WORKSPACE = "NULLIF(current_setting('app.current_workspace_id', true), '')::bigint"
DEFINER = "LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp"

CHANGED_ROWS = {  # TG_OP -> the statement's rows, each with the sign of its contribution
    "INSERT": "SELECT n.workspace_id, n.status, 1 AS sign FROM new_rows n",
    "DELETE": "SELECT o.workspace_id, o.status, -1 AS sign FROM old_rows o",
    "UPDATE": "SELECT n.workspace_id, n.status, 1 AS sign FROM new_rows n "
              "UNION ALL SELECT o.workspace_id, o.status, -1 AS sign FROM old_rows o",
}
BRANCHES = "\n".join(
    f"""            {'IF' if i == 0 else 'ELSIF'} TG_OP = '{op_name}' THEN
                INSERT INTO public.workspace_tenant_totals AS t (workspace_id, status, tenants)
                SELECT c.workspace_id, c.status, sum(c.sign) FROM ({rows}) c
                 GROUP BY c.workspace_id, c.status HAVING sum(c.sign) <> 0
                 ORDER BY c.workspace_id, c.status
                ON CONFLICT (workspace_id, status) DO UPDATE SET tenants = t.tenants + excluded.tenants;"""
    for i, (op_name, rows) in enumerate(CHANGED_ROWS.items()))

FUNCTIONS = {
    "workspace_tenant_totals_count()": f"""
        RETURNS trigger {DEFINER} AS $$
        BEGIN
{BRANCHES}
            END IF;
            RETURN NULL;
        END $$""",
    # The repair (`flask refresh-tenant-health` runs it): after rows were written with triggers
    # off. SHARE ROW EXCLUSIVE on tenants holds tenant writes back for the moment of one count
    # of tenants, to commit; returns how many (workspace, status) rows it changed.
    "refresh_workspace_tenant_totals()": f"""
        RETURNS bigint {DEFINER} AS $$
        DECLARE
            changed bigint;
        BEGIN
            LOCK TABLE public.tenants IN SHARE ROW EXCLUSIVE MODE;
            WITH fresh AS (
                SELECT workspace_id, status, count(*) AS tenants FROM public.tenants GROUP BY workspace_id, status
            ), removed AS (
                DELETE FROM public.workspace_tenant_totals t
                 WHERE NOT EXISTS (SELECT 1 FROM fresh f WHERE f.workspace_id = t.workspace_id AND f.status = t.status)
                RETURNING t.tenants
            ), upserted AS (
                INSERT INTO public.workspace_tenant_totals AS t (workspace_id, status, tenants)
                SELECT workspace_id, status, tenants FROM fresh ORDER BY workspace_id, status
                ON CONFLICT (workspace_id, status) DO UPDATE SET tenants = excluded.tenants
                 WHERE t.tenants <> excluded.tenants
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM removed WHERE tenants <> 0) + (SELECT count(*) FROM upserted) INTO changed;
            RETURN changed;
        END $$""",
    # TRUNCATE fires no DELETE trigger; it holds tenants exclusively, so no writer races this.
    "workspace_tenant_totals_truncated()": f"""
        RETURNS trigger {DEFINER} AS $$
        BEGIN
            DELETE FROM public.workspace_tenant_totals;
            RETURN NULL;
        END $$""",
}

TRIGGERS = (  # (name, events, transition tables, function)
    ("workspace_tenant_totals_inserted", "AFTER INSERT", "NEW TABLE AS new_rows", "workspace_tenant_totals_count"),
    ("workspace_tenant_totals_deleted", "AFTER DELETE", "OLD TABLE AS old_rows", "workspace_tenant_totals_count"),
    ("workspace_tenant_totals_changed", "AFTER UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows",
     "workspace_tenant_totals_count"),
    ("workspace_tenant_totals_truncated", "AFTER TRUNCATE", None, "workspace_tenant_totals_truncated"),
)


def upgrade():
    op.execute("""
        CREATE TABLE workspace_tenant_totals (
            workspace_id bigint NOT NULL,
            status varchar(16) NOT NULL,
            tenants bigint NOT NULL DEFAULT 0,
            CONSTRAINT pk_workspace_tenant_totals PRIMARY KEY (workspace_id, status),
            CONSTRAINT fk_workspace_tenant_totals_workspace_id_workspaces FOREIGN KEY (workspace_id)
                REFERENCES workspaces (id) ON DELETE CASCADE
        )""")
    op.execute("ALTER TABLE workspace_tenant_totals ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE workspace_tenant_totals FORCE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY current_workspace ON workspace_tenant_totals "
               f"USING (workspace_id = {CURRENT_WORKSPACE}) WITH CHECK (workspace_id = {CURRENT_WORKSPACE})")
    # Read-only for the app: the triggers (SECURITY DEFINER) are its only writers.
    op.execute(f"REVOKE ALL ON workspace_tenant_totals FROM {APP_ROLE}")
    op.execute(f"GRANT SELECT ON workspace_tenant_totals TO {APP_ROLE}")
    for signature, body in FUNCTIONS.items():
        op.execute(f"CREATE FUNCTION {signature} {body}")
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
    # No tenant write between the count and the triggers: both under this lock, to commit.
    op.execute("LOCK TABLE tenants IN SHARE ROW EXCLUSIVE MODE")
    for name, events, transition, function in TRIGGERS:
        referencing = f" REFERENCING {transition}" if transition else ""
        op.execute(f"CREATE TRIGGER {name} {events} ON tenants{referencing} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()")
    op.execute("INSERT INTO workspace_tenant_totals (workspace_id, status, tenants) "
               "SELECT workspace_id, status, count(*) FROM tenants GROUP BY workspace_id, status")


def downgrade():
    for name, *_rest in reversed(TRIGGERS):
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON tenants")
    for signature in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
    op.execute("DROP TABLE IF EXISTS workspace_tenant_totals")
