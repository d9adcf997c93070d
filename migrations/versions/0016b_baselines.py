"""Baselines: named, versioned sets of expected policies, assigned to tenants or tags.

- baselines: name (unique per workspace), version (bumped by every edit), the severity of
  a deviating setting, whether extra policies are findings, where it was built from.
- baseline_policies: one expected policy each: family (policy type, platform), settings as
  normalized flat keys, the keys whose value may be anything, expected assignment kinds.
- baseline_versions: each version's content, who and when.
- baseline_assignments: baseline -> one tenant or one tag (exactly one of them).
- Every link names its workspace (composite keys onto UNIQUE (id, workspace_id)); row-level
  security as 0006.

New tables only. Reversible: the downgrade drops them.

Revision ID: 0016b_baselines
Revises: 0016_tags
Create Date: 2026-11-30
"""
import os

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0016b_baselines"
down_revision = "0016_tags"
branch_labels = None
depends_on = None

APP_ROLE = os.environ.get("APP_DATABASE_ROLE", "tenantatlas_app")
CURRENT_WORKSPACE = "NULLIF(current_setting('app.current_workspace_id', true), '')::bigint"
NEW_TABLES = ("baselines", "baseline_policies", "baseline_versions", "baseline_assignments")


def protect(tables):
    for table in tables:
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY current_workspace ON {table} USING (workspace_id = {CURRENT_WORKSPACE}) "
                   f"WITH CHECK (workspace_id = {CURRENT_WORKSPACE})")


def _id():
    return sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True)


def _workspace():
    return sa.Column("workspace_id", sa.BigInteger, sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False)


def _in_baseline(table):
    return sa.ForeignKeyConstraint(["baseline_id", "workspace_id"], ["baselines.id", "baselines.workspace_id"],
                                   ondelete="CASCADE", name=f"fk_{table}_baseline_in_workspace")


def upgrade():
    op.create_table(
        "baselines", _id(), _workspace(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("severity", sa.String(16), nullable=False, server_default="medium"),
        sa.Column("report_extra", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("source_label", sa.String(400)),
        sa.Column("created_by_user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("workspace_id", "name", name="uq_baselines_workspace_id_name"),
        sa.UniqueConstraint("id", "workspace_id", name="uq_baselines_id_workspace_id"),
        sa.CheckConstraint("severity IN ('low', 'medium', 'high', 'critical')", name="ck_baselines_severity_known"),
        sa.CheckConstraint("version > 0", name="ck_baselines_version_positive"),
    )
    op.create_table(
        "baseline_policies", _id(), _workspace(),
        sa.Column("baseline_id", sa.BigInteger, nullable=False),
        sa.Column("position", sa.Integer, nullable=False, server_default="0"),
        sa.Column("policy_type", sa.String(64), nullable=False),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("name", sa.String(400), nullable=False),
        sa.Column("settings", JSONB, nullable=False, server_default="{}"),
        sa.Column("any_value", JSONB, nullable=False, server_default="[]"),
        sa.Column("expected_assignments", JSONB, nullable=False, server_default="[]"),
        _in_baseline("baseline_policies"),
    )
    op.create_index("ix_baseline_policies_baseline_id", "baseline_policies", ["baseline_id"])
    op.create_table(
        "baseline_versions", _id(), _workspace(),
        sa.Column("baseline_id", sa.BigInteger, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("change", sa.String(400), nullable=False),
        sa.Column("content", JSONB, nullable=False),
        sa.Column("created_by_user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("baseline_id", "version", name="uq_baseline_versions_baseline_id_version"),
        _in_baseline("baseline_versions"),
    )
    op.create_table(
        "baseline_assignments", _id(), _workspace(),
        sa.Column("baseline_id", sa.BigInteger, nullable=False),
        sa.Column("tenant_id", sa.BigInteger),
        sa.Column("tag_id", sa.BigInteger),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("num_nonnulls(tenant_id, tag_id) = 1", name="ck_baseline_assignments_tenant_or_tag"),
        _in_baseline("baseline_assignments"),
        sa.ForeignKeyConstraint(["tag_id", "workspace_id"], ["tags.id", "tags.workspace_id"], ondelete="CASCADE",
                                name="fk_baseline_assignments_tag_in_workspace"),
        sa.ForeignKeyConstraint(["tenant_id", "workspace_id"], ["tenants.id", "tenants.workspace_id"],
                                ondelete="CASCADE", onupdate="CASCADE",
                                name="fk_baseline_assignments_tenant_in_workspace"),
    )
    op.create_index("ux_baseline_assignments_baseline_id_tenant_id", "baseline_assignments",
                    ["baseline_id", "tenant_id"], unique=True, postgresql_where=sa.text("tenant_id IS NOT NULL"))
    op.create_index("ux_baseline_assignments_baseline_id_tag_id", "baseline_assignments",
                    ["baseline_id", "tag_id"], unique=True, postgresql_where=sa.text("tag_id IS NOT NULL"))
    op.create_index("ix_baseline_assignments_workspace_id", "baseline_assignments", ["workspace_id"])
    protect(NEW_TABLES)


def downgrade():
    for table in reversed(NEW_TABLES):
        op.drop_table(table)
