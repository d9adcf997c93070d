"""Computed findings: keyed by their subject, with history, acceptance and a baseline.

- findings.subject_key: what a computed finding is about ("hygiene:backup_missing",
  "baseline:<id>:setting:<policy>:<key>"); unique per tenant where set, so a re-run
  updates the finding instead of adding another. NULL for rows written by hand.
- findings.baseline_id (-> baselines, ON DELETE CASCADE: a deleted baseline takes its
  drift findings with it), accepted_until, last_evaluated_at, history (JSONB list).
- status 'accepted' joins the known statuses: the CHECK is replaced NOT VALID, then
  validated outside the transaction (SHARE UPDATE EXCLUSIVE: writes go on).
- active_tenants_after(after, n): the periodic evaluation's id pages (SECURITY DEFINER, ids only).
- Indexes built CONCURRENTLY outside the transaction (the table is large).

Every new column is nullable or has a constant default: no rewrite. Reversible (the
downgrade turns accepted findings back into acknowledged ones first).

Revision ID: 0016c_computed_findings
Revises: 0016b_baselines
Create Date: 2026-11-30
"""
import os

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from migrations.rollout import build_index_concurrently, run_outside_transaction

APP_ROLE = os.environ.get("APP_DATABASE_ROLE", "tenantatlas_app")

revision = "0016c_computed_findings"
down_revision = "0016b_baselines"
branch_labels = None
depends_on = None


def upgrade():
    # The periodic evaluation's one cross-workspace read: ids only, a page at a time (as 0009's).
    op.execute("""
        CREATE FUNCTION active_tenants_after(after_id bigint, max_tenants integer)
        RETURNS TABLE (tenant_id bigint, workspace_id bigint)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
            SELECT t.id, t.workspace_id FROM public.tenants t
             WHERE t.id > after_id AND t.status = 'active'
             ORDER BY t.id
             LIMIT least(greatest(max_tenants, 0), 10000)
        $$""")
    op.execute("REVOKE ALL ON FUNCTION active_tenants_after(bigint, integer) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION active_tenants_after(bigint, integer) TO {APP_ROLE}")
    op.add_column("findings", sa.Column("subject_key", sa.String(600)))
    op.add_column("findings", sa.Column("baseline_id", sa.BigInteger))
    op.add_column("findings", sa.Column("accepted_until", sa.DateTime(timezone=True)))
    op.add_column("findings", sa.Column("last_evaluated_at", sa.DateTime(timezone=True)))
    op.add_column("findings", sa.Column("history", JSONB, nullable=False, server_default="[]"))
    op.execute("ALTER TABLE findings ADD CONSTRAINT fk_findings_baseline_id_baselines FOREIGN KEY (baseline_id) "
               "REFERENCES baselines (id) ON DELETE CASCADE NOT VALID")
    op.execute("ALTER TABLE findings DROP CONSTRAINT ck_findings_status_known")
    op.execute("ALTER TABLE findings ADD CONSTRAINT ck_findings_status_known "
               "CHECK (status IN ('open', 'acknowledged', 'accepted', 'resolved')) NOT VALID")
    run_outside_transaction("ALTER TABLE findings VALIDATE CONSTRAINT ck_findings_status_known",
                            "ALTER TABLE findings VALIDATE CONSTRAINT fk_findings_baseline_id_baselines",
                            lift_statement_timeout=True)
    run_outside_transaction(
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ux_findings_tenant_id_subject_key "
        "ON findings (tenant_id, subject_key) WHERE subject_key IS NOT NULL", lift_statement_timeout=True)
    build_index_concurrently("ix_findings_baseline_id_tenant_id", "findings", "baseline_id, tenant_id")
    build_index_concurrently("ix_findings_workspace_id_status_severity", "findings", "workspace_id, status, severity")


def downgrade():
    op.execute("DROP FUNCTION IF EXISTS active_tenants_after(bigint, integer)")
    op.execute("DROP INDEX IF EXISTS ix_findings_workspace_id_status_severity")
    op.execute("DROP INDEX IF EXISTS ix_findings_baseline_id_tenant_id")
    op.execute("DROP INDEX IF EXISTS ux_findings_tenant_id_subject_key")
    op.execute("UPDATE findings SET status = 'acknowledged' WHERE status = 'accepted'")
    op.execute("ALTER TABLE findings DROP CONSTRAINT ck_findings_status_known")
    op.execute("ALTER TABLE findings ADD CONSTRAINT ck_findings_status_known "
               "CHECK (status IN ('open', 'acknowledged', 'resolved'))")
    op.execute("ALTER TABLE findings DROP CONSTRAINT fk_findings_baseline_id_baselines")
    for column in ("history", "last_evaluated_at", "accepted_until", "baseline_id", "subject_key"):
        op.drop_column("findings", column)
