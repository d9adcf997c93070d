"""Drift matrix: one index answers "this baseline's findings of these tenants in this workspace".

The matrix page reads the open findings of one baseline for the 25 tenants it shows, scoped
to the workspace. With ix_findings_baseline_id_tenant_id (baseline_id, tenant_id) PostgreSQL
ANDed that index with ix_findings_workspace_id_status_severity, reading every finding of the
workspace's index range for each page (about 1 ms of a 1.2 ms statement at 2,000 tenants).
(baseline_id, tenant_id, workspace_id) has every condition in one index (0.1 ms); it
replaces the old one, of which it is an extension (the cascade from baselines and the
findings filter by baseline use its first column as before).

Built CONCURRENTLY outside the transaction (findings is the largest table), then the old
index dropped CONCURRENTLY: writes go on throughout. Reversible (the downgrade builds the
old index again before dropping the new one).

Revision ID: 0018_drift_matrix_findings_index
Revises: 0017_microsoft_identities
Create Date: 2026-11-30
"""
from migrations.rollout import build_index_concurrently, run_outside_transaction

revision = "0018_drift_matrix_findings_index"
down_revision = "0017_microsoft_identities"
branch_labels = None
depends_on = None


def upgrade():
    build_index_concurrently("ix_findings_baseline_id_tenant_id_workspace_id", "findings",
                             "baseline_id, tenant_id, workspace_id")
    run_outside_transaction("DROP INDEX CONCURRENTLY IF EXISTS ix_findings_baseline_id_tenant_id",
                            lift_statement_timeout=True)


def downgrade():
    build_index_concurrently("ix_findings_baseline_id_tenant_id", "findings", "baseline_id, tenant_id")
    run_outside_transaction("DROP INDEX CONCURRENTLY IF EXISTS ix_findings_baseline_id_tenant_id_workspace_id",
                            lift_statement_timeout=True)
