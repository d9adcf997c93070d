"""The job queue: procrastinate's schema, in the application's database.

Syncs (and later backups and restores) run as procrastinate jobs; a job is inserted in
the same transaction as the sync run it carries out, and any number of workers share
the queue through PostgreSQL alone. The schema is procrastinate's own (the installed
version, pinned to 3.10.x in pyproject.toml); a later procrastinate release comes with
a new revision that applies its migration scripts.

The web app's role may enqueue and the worker (the same role) may take jobs: both
need the tables, their sequences and the functions. Job arguments are ids only; the
job then works inside its workspace under row-level security.

Reversible: the downgrade drops every procrastinate object.

Revision ID: 0010_job_queue
Revises: 0009_graph_connection_and_sync
Create Date: 2026-11-30
"""
import os
from pathlib import Path

from alembic import op

revision = "0010_job_queue"
down_revision = "0009_graph_connection_and_sync"
branch_labels = None
depends_on = None

APP_ROLE = os.environ.get("APP_DATABASE_ROLE", "tenantatlas_app")


def _procrastinate_schema() -> str:
    import procrastinate

    return (Path(procrastinate.__file__).parent / "sql" / "schema.sql").read_text()


def upgrade():
    op.execute(_procrastinate_schema())
    op.execute(f"""
        DO $$
        DECLARE object record;
        BEGIN
            FOR object IN SELECT relname, relkind FROM pg_class
                           WHERE relnamespace = 'public'::regnamespace AND relname LIKE 'procrastinate%'
                             AND relkind IN ('r', 'S', 'v') LOOP
                IF object.relkind = 'S' THEN
                    EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE public.%I TO {APP_ROLE}', object.relname);
                ELSE
                    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON public.%I TO {APP_ROLE}', object.relname);
                END IF;
            END LOOP;
        END
        $$""")


def downgrade():
    op.execute("""
        DO $$
        DECLARE object record;
        BEGIN
            FOR object IN SELECT relname FROM pg_class
                           WHERE relnamespace = 'public'::regnamespace AND relname LIKE 'procrastinate%'
                             AND relkind = 'r' LOOP
                EXECUTE format('DROP TABLE IF EXISTS public.%I CASCADE', object.relname);
            END LOOP;
            FOR object IN SELECT p.oid::regprocedure AS signature FROM pg_proc p
                           WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'procrastinate%' LOOP
                EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', object.signature);
            END LOOP;
            FOR object IN SELECT typname FROM pg_type
                           WHERE typnamespace = 'public'::regnamespace AND typname LIKE 'procrastinate%'
                             AND typtype IN ('e', 'c') LOOP
                EXECUTE format('DROP TYPE IF EXISTS public.%I CASCADE', object.typname);
            END LOOP;
        END
        $$""")
