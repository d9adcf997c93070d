"""SECURITY DEFINER functions resolve names in pg_catalog only; nobody else creates in public.

A definer function runs as its owner. With `search_path = public, pg_temp`, a role
that may create objects in `public` (PUBLIC could, before PostgreSQL 15, and a
database upgraded with pg_upgrade keeps that grant) can define an operator there,
say `=(varchar, varchar)`, that wins operator resolution inside the function and
runs as the owner. This revision:
- recreates workspace_tenant_counts (0006) with `search_path = pg_catalog, pg_temp`
  and schema-qualified tables (0007's functions are written that way already), and
  answers only for the transaction's signed-in user (app.current_user_id): the app
  role could otherwise ask for any user's workspaces and their tenant counts;
- revokes CREATE on schema public from PUBLIC (a no-op on PostgreSQL 15 and later;
  where the migration owner does not own the schema it only warns).

Reversible for the function (the downgrade restores 0006's definition). The REVOKE
is deliberately not undone: granting CREATE back to PUBLIC would reopen the hole.

Revision ID: 0008_definer_search_path
Revises: 0007_tenant_health_summary
Create Date: 2026-11-24
"""
from alembic import op

revision = "0008_definer_search_path"
down_revision = "0007_tenant_health_summary"
branch_labels = None
depends_on = None

COUNTS = """
    CREATE OR REPLACE FUNCTION workspace_tenant_counts(for_user_id bigint)
    RETURNS TABLE (workspace_id bigint, active bigint, archived bigint)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = {search_path} AS $$
        SELECT t.workspace_id, count(*) FILTER (WHERE t.status = 'active'),
               count(*) FILTER (WHERE t.status = 'archived')
          FROM {schema}tenants t
          JOIN {schema}workspace_memberships m ON m.workspace_id = t.workspace_id AND m.user_id = for_user_id
         {only_the_signed_in_user}
         GROUP BY t.workspace_id
    $$"""
# The app asks for its signed-in user only; the transaction says who that is (app/row_security.py).
ONLY_THE_SIGNED_IN_USER = "WHERE for_user_id = NULLIF(current_setting('app.current_user_id', true), '')::bigint"


def upgrade():
    op.execute(COUNTS.format(search_path="pg_catalog, pg_temp", schema="public.",
                             only_the_signed_in_user=ONLY_THE_SIGNED_IN_USER))
    op.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")


def downgrade():
    op.execute(COUNTS.format(search_path="public, pg_temp", schema="", only_the_signed_in_user=""))
