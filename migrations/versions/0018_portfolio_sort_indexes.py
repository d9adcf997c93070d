"""Portfolio sort indexes: every sort of the portfolio is an index-ordered scan within a workspace.

The portfolio pages by seeking (app/web/listing.py keyset_page): a page reads the rows after
(or before) the last row shown, in the order of the sort key and then the tenant id. With
an index on (workspace_id, sort key, id) that is a range scan that stops after one page,
whatever the size of the workspace; without one PostgreSQL sorts every tenant of the
workspace for each page.

- tenants: (workspace_id, name, id), (workspace_id, primary_domain, id),
  (workspace_id, external_id, id), (workspace_id, status, id) (the status sort, and the
  status filter in tenant-id order: the rows of a NULL sort key come in that order), and
  (workspace_id, id) (the same for "all statuses").
- tenant_health: (workspace_id, key..., tenant_id) for policies, last backup, open
  findings (critical, high, medium, low) and missing permissions. A page sorted by one of
  them reads tenant_health in index order and joins each row's tenant by its key.

The tag filter needs no new index: each candidate tenant is probed in tenant_tags'
unique (tenant_id, tag_id).

Every index is built CONCURRENTLY outside a transaction (reads and writes go on); an
INVALID leftover of a failed build is dropped and built again, so a failed run can be
run again. Reversible: the downgrade drops them (CONCURRENTLY).

Revision ID: 0018_portfolio_sort_indexes
Revises: 0018_drift_matrix_findings_index
Create Date: 2026-11-30
"""
from migrations.rollout import build_index_concurrently, run_outside_transaction

revision = "0018_portfolio_sort_indexes"
down_revision = "0018_drift_matrix_findings_index"
branch_labels = None
depends_on = None

INDEXES = (  # (name, table, columns)
    ("ix_tenants_portfolio_name", "tenants", "workspace_id, name, id"),
    ("ix_tenants_portfolio_domain", "tenants", "workspace_id, primary_domain, id"),
    ("ix_tenants_portfolio_external_id", "tenants", "workspace_id, external_id, id"),
    ("ix_tenants_portfolio_status", "tenants", "workspace_id, status, id"),
    ("ix_tenants_portfolio_id", "tenants", "workspace_id, id"),
    ("ix_tenant_health_portfolio_policies", "tenant_health", "workspace_id, policy_count, tenant_id"),
    ("ix_tenant_health_portfolio_last_backup", "tenant_health", "workspace_id, last_backup_at, tenant_id"),
    ("ix_tenant_health_portfolio_findings", "tenant_health",
     "workspace_id, open_critical, open_high, open_medium, open_low, tenant_id"),
    ("ix_tenant_health_portfolio_missing_permissions", "tenant_health",
     "workspace_id, missing_permissions, tenant_id"),
)


def upgrade():
    for name, table, columns in INDEXES:
        build_index_concurrently(name, table, columns)


def downgrade():
    run_outside_transaction(*(f"DROP INDEX CONCURRENTLY IF EXISTS {name}" for name, _t, _c in reversed(INDEXES)),
                            lift_statement_timeout=True)
