"""A tenant id belongs to a workspace only once it is proved: unique per workspace until then.

Entra tenant ids are public (anyone can look one up from a domain), so a global unique
key on tenants.external_id let any user who creates a workspace learn whether a tenant
is managed elsewhere ("already managed") and squat it so that its real MSP could not
register it. Now:
- an unverified registration is unique inside its workspace only
  (ux_tenants_workspace_id_external_id);
- a tenant verified by admin consent (consented_at set, 0009) is unique across all
  workspaces (ux_tenants_verified_external_id, partial): a second workspace's consent for
  it fails on this index, and the app answers without naming the other workspace.

Both indexes are built CONCURRENTLY (writes go on), then the old constraint is dropped
(a brief lock). Reversible only while no tenant id is registered in two workspaces: the
downgrade's unique constraint fails otherwise, and says so.

Revision ID: 0011_tenant_ids_per_workspace
Revises: 0010_job_queue
Create Date: 2026-11-30
"""
from alembic import op

from migrations.rollout import run_outside_transaction

revision = "0011_tenant_ids_per_workspace"
down_revision = "0010_job_queue"
branch_labels = None
depends_on = None

INDEXES = (
    ("ux_tenants_workspace_id_external_id", "ON tenants (workspace_id, external_id)"),
    ("ux_tenants_verified_external_id", "ON tenants (external_id) WHERE consented_at IS NOT NULL"),
)


def _invalid(name: str) -> bool:
    if op.get_context().as_sql:
        return False
    return bool(op.get_bind().exec_driver_sql(
        "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = %(name)s AND NOT i.indisvalid", {"name": name}).scalar())


def upgrade():
    for name, definition in INDEXES:
        statements = [f"DROP INDEX CONCURRENTLY IF EXISTS {name}"] if _invalid(name) else []
        statements.append(f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {name} {definition}")
        run_outside_transaction(*statements, lift_statement_timeout=True)
    run_outside_transaction("ALTER TABLE tenants DROP CONSTRAINT IF EXISTS uq_tenants_external_id")


def downgrade():
    run_outside_transaction("ALTER TABLE tenants ADD CONSTRAINT uq_tenants_external_id UNIQUE (external_id)")
    for name, _definition in reversed(INDEXES):
        run_outside_transaction(f"DROP INDEX CONCURRENTLY IF EXISTS {name}", lift_statement_timeout=True)
