"""Workspace isolation, phase 3: constraints. Run only after `flask backfill-workspace-ids`.

First a pre-check: if any tenant-owned row has no workspace, or one that
disagrees with its tenant, or an audit entry about a tenant has no workspace,
the revision stops with a message naming each table, its counts, and the
command that fixes them. Nothing is changed then.

Then, per table, without long strong locks (each step commits on its own):
- FOREIGN KEY (workspace_id) -> workspaces, added NOT VALID, then validated;
- the composite key of phase 1 validated (VALIDATE holds SHARE UPDATE
  EXCLUSIVE: reads and writes continue);
- NOT NULL: CHECK (workspace_id IS NOT NULL) NOT VALID, validated, then
  SET NOT NULL, which PostgreSQL proves from the valid check without a scan
  (a brief ACCESS EXCLUSIVE lock), then the check is dropped.
Then the audit invariant CHECK (tenant_id IS NULL OR workspace_id IS NOT NULL),
added NOT VALID and validated.

Child tables (versions, backup items, inventory links, restore runs, findings)
already reference their parent together with tenant_id since the baseline, so
no child can point into another tenant (and, through the tenant, workspace).

Reversible: the downgrade drops the foreign keys to workspaces and the audit
check, and makes workspace_id nullable again. The composite keys of phase 1
stay; phase 1's downgrade removes them.

Revision ID: 0004_workspace_id_phase3
Revises: 0003_workspace_id_phase1
Create Date: 2026-11-24
"""
import click
from alembic import op

from migrations.rollout import (
    TENANT_OWNED_TABLES,
    add_constraint_not_valid,
    run_outside_transaction,
    validate_constraint,
)

revision = "0004_workspace_id_phase3"
down_revision = "0003_workspace_id_phase1"
branch_labels = None
depends_on = None

AUDIT_CHECK = "ck_audit_logs_tenant_entries_have_workspace"


def precheck() -> None:
    """Stop, changing nothing, while any row is unbound or mismatched."""
    if op.get_context().as_sql:
        return
    bind = op.get_bind()
    problems = []
    for table in TENANT_OWNED_TABLES:
        unbound, mismatched = bind.exec_driver_sql(
            f"SELECT count(*) FILTER (WHERE t.workspace_id IS NULL), "
            f"count(*) FILTER (WHERE t.workspace_id IS NOT NULL AND t.workspace_id IS DISTINCT FROM tn.workspace_id) "
            f"FROM {table} t LEFT JOIN tenants tn ON tn.id = t.tenant_id"
        ).one()
        if unbound or mismatched:
            problems.append(f"  {table}: {unbound} without workspace_id, {mismatched} mismatched")
    audit = bind.exec_driver_sql(
        "SELECT count(*) FROM audit_logs WHERE tenant_id IS NOT NULL AND workspace_id IS NULL").scalar()
    if audit:
        problems.append(f"  audit_logs: {audit} entries with a tenant but no workspace_id")
    if problems:
        raise click.ClickException(
            "Phase 3 cannot add its constraints yet; these rows are not bound to their tenant's workspace:\n"
            + "\n".join(problems)
            + "\nRun `flask backfill-workspace-ids` (see `--dry-run` first); rows whose tenant no longer exists"
              " are listed there and must be deleted or re-assigned by hand (docs/rollout.md)."
        )


def upgrade():
    precheck()
    for table in TENANT_OWNED_TABLES:
        workspace_key = f"fk_{table}_workspace_id_workspaces"
        not_null_check = f"ck_{table}_workspace_id_not_null"
        add_constraint_not_valid(table, workspace_key, "FOREIGN KEY (workspace_id) REFERENCES workspaces (id)")
        validate_constraint(table, workspace_key)
        validate_constraint(table, f"fk_{table}_tenant_id_workspace_id_tenants")
        add_constraint_not_valid(table, not_null_check, "CHECK (workspace_id IS NOT NULL)")
        validate_constraint(table, not_null_check)
        run_outside_transaction(
            f"ALTER TABLE {table} ALTER COLUMN workspace_id SET NOT NULL",
            f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {not_null_check}",
        )
    add_constraint_not_valid("audit_logs", AUDIT_CHECK, "CHECK (tenant_id IS NULL OR workspace_id IS NOT NULL)")
    validate_constraint("audit_logs", AUDIT_CHECK)


def downgrade():
    run_outside_transaction(f"ALTER TABLE audit_logs DROP CONSTRAINT IF EXISTS {AUDIT_CHECK}")
    for table in reversed(TENANT_OWNED_TABLES):
        run_outside_transaction(
            f"ALTER TABLE {table} ALTER COLUMN workspace_id DROP NOT NULL",
            f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS fk_{table}_workspace_id_workspaces",
        )
