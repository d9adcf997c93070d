"""Orphaned sync runs: the scheduler's one look at runs whose job is gone.

A run is carried out by its procrastinate job. If that job ended without finishing the run
(it failed outside the engine's own handling, say during a database outage, or was
cancelled or deleted), the run would stay queued or running, and the partial unique index
(one active run per tenant, 0009) would refuse every later sync of the tenant.
orphaned_sync_runs(minutes) lists such runs: queued or running for longer than `minutes`
with no job of theirs still to do or doing. SECURITY DEFINER on pg_catalog's search path
(as 0008), ids only, for the scheduler that then ends each run inside its workspace.

Reversible.

Revision ID: 0013_orphaned_sync_runs
Revises: 0012_audit_names_user_timezones
Create Date: 2026-11-30
"""
import os

from alembic import op

revision = "0013_orphaned_sync_runs"
down_revision = "0012_audit_names_user_timezones"
branch_labels = None
depends_on = None

APP_ROLE = os.environ.get("APP_DATABASE_ROLE", "tenantatlas_app")


def upgrade():
    op.execute("""
        CREATE FUNCTION orphaned_sync_runs(older_than_minutes integer)
        RETURNS TABLE (sync_run_id bigint, workspace_id bigint)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
            SELECT r.id, r.workspace_id
              FROM public.sync_runs r
             WHERE r.status IN ('queued', 'running')
               AND coalesce(r.started_at, r.created_at)
                   < now() - make_interval(mins => greatest(older_than_minutes, 1))
               AND NOT EXISTS (
                   SELECT 1 FROM public.procrastinate_jobs j
                    WHERE j.task_name = 'sync_tenant'
                      AND j.args ->> 'sync_run_id' = r.id::text
                      AND j.status IN ('todo', 'doing'))
             ORDER BY r.id
             LIMIT 1000
        $$""")
    op.execute("REVOKE ALL ON FUNCTION orphaned_sync_runs(integer) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION orphaned_sync_runs(integer) TO {APP_ROLE}")


def downgrade():
    op.execute("DROP FUNCTION IF EXISTS orphaned_sync_runs(integer)")
