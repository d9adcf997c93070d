"""Bulk runs: one bulk action on many tenants, with each tenant's outcome.

- bulk_runs: the action (sync, add_tag, remove_tag, assign_baseline), its parameters,
  who asked, when; UNIQUE (id, workspace_id) for its items.
- bulk_run_items: one row per tenant (queued, succeeded, skipped, failed, a message),
  bound to the run and to the tenant within the same workspace.
- Row-level security as 0006.

New tables only. Reversible.

Revision ID: 0016d_bulk_runs
Revises: 0016c_computed_findings
Create Date: 2026-11-30
"""
import os

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0016d_bulk_runs"
down_revision = "0016c_computed_findings"
branch_labels = None
depends_on = None

APP_ROLE = os.environ.get("APP_DATABASE_ROLE", "tenantatlas_app")
CURRENT_WORKSPACE = "NULLIF(current_setting('app.current_workspace_id', true), '')::bigint"
NEW_TABLES = ("bulk_runs", "bulk_run_items")


def protect(tables):
    for table in tables:
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY current_workspace ON {table} USING (workspace_id = {CURRENT_WORKSPACE}) "
                   f"WITH CHECK (workspace_id = {CURRENT_WORKSPACE})")


def upgrade():
    op.create_table(
        "bulk_runs",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("workspace_id", sa.BigInteger, sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("label", sa.String(400), nullable=False),
        sa.Column("parameters", JSONB, nullable=False, server_default="{}"),
        sa.Column("requested_by_user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("id", "workspace_id", name="uq_bulk_runs_id_workspace_id"),
        sa.CheckConstraint("action IN ('sync', 'backup', 'add_tag', 'remove_tag', 'assign_baseline')",
                           name="ck_bulk_runs_action_known"),
    )
    op.create_index("ix_bulk_runs_workspace_id_created_at", "bulk_runs", ["workspace_id", "created_at"])
    op.create_table(
        "bulk_run_items",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("bulk_run_id", sa.BigInteger, nullable=False),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="queued"),
        sa.Column("message", sa.String(500)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("workspace_id", sa.BigInteger, sa.ForeignKey("workspaces.id"), nullable=False),
        sa.UniqueConstraint("bulk_run_id", "tenant_id", name="uq_bulk_run_items_bulk_run_id_tenant_id"),
        sa.ForeignKeyConstraint(["bulk_run_id", "workspace_id"], ["bulk_runs.id", "bulk_runs.workspace_id"],
                                ondelete="CASCADE", name="fk_bulk_run_items_run_in_workspace"),
        sa.ForeignKeyConstraint(["tenant_id", "workspace_id"], ["tenants.id", "tenants.workspace_id"],
                                ondelete="CASCADE", onupdate="CASCADE", name="fk_bulk_run_items_tenant_in_workspace"),
        sa.CheckConstraint("status IN ('queued', 'succeeded', 'skipped', 'failed')",
                           name="ck_bulk_run_items_status_known"),
    )
    op.create_index("ix_bulk_run_items_tenant_id", "bulk_run_items", ["tenant_id"])
    protect(NEW_TABLES)


def downgrade():
    for table in reversed(NEW_TABLES):
        op.drop_table(table)
