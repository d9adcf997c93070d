"""Workspace isolation, phase 1: nullable workspace_id, indexes, NOT VALID composite keys.

For each of the twelve tenant-owned tables:
- ADD COLUMN workspace_id bigint, nullable, no default: a catalog-only change
  (a brief ACCESS EXCLUSIVE lock, no table rewrite);
- the composite foreign key (tenant_id, workspace_id) -> tenants(id, workspace_id)
  ON UPDATE CASCADE, added NOT VALID: no scan now, NULLs pass, and from this
  moment the database refuses a row whose workspace disagrees with its tenant.
  It is validated in phase 3;
- the index (workspace_id, tenant_id), built CONCURRENTLY outside any
  transaction so writes go on; an INVALID leftover of a failed build is dropped
  and rebuilt.

Every step commits on its own (autocommit), under the short lock_timeout set in
env.py: on a busy table a step fails fast and the revision can be run again
(each step is idempotent).

Reversible: the downgrade drops the indexes (concurrently), keys and columns.

Revision ID: 0003_workspace_id_phase1
Revises: 0002_switcher_marks
Create Date: 2026-11-24
"""
from migrations.rollout import (
    TENANT_OWNED_TABLES,
    add_constraint_not_valid,
    build_index_concurrently,
    run_outside_transaction,
)

revision = "0003_workspace_id_phase1"
down_revision = "0002_switcher_marks"
branch_labels = None
depends_on = None


def composite_key(table: str) -> str:
    return f"fk_{table}_tenant_id_workspace_id_tenants"


def upgrade():
    for table in TENANT_OWNED_TABLES:
        run_outside_transaction(
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS workspace_id bigint",
        )
        add_constraint_not_valid(
            table, composite_key(table),
            "FOREIGN KEY (tenant_id, workspace_id) REFERENCES tenants (id, workspace_id) ON UPDATE CASCADE",
        )
        build_index_concurrently(f"ix_{table}_workspace_id_tenant_id", table, "workspace_id, tenant_id")


def downgrade():
    for table in reversed(TENANT_OWNED_TABLES):
        run_outside_transaction(f"DROP INDEX CONCURRENTLY IF EXISTS ix_{table}_workspace_id_tenant_id",
                                lift_statement_timeout=True)
        run_outside_transaction(
            f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {composite_key(table)}",
            f"ALTER TABLE {table} DROP COLUMN IF EXISTS workspace_id",
        )
