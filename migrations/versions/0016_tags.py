"""Tags per workspace and their tenants.

- tags: a name (unique in its workspace) and a colour; UNIQUE (id, workspace_id) so that
  links to a tag name its workspace too.
- tenant_tags: (tenant, tag) pairs; the composite keys (tenant_id, workspace_id) -> tenants
  and (tag_id, workspace_id) -> tags make a link across workspaces impossible.
- Both new tables: row-level security as 0006 (the app role sees its workspace's rows only).

New tables only: no lock on existing ones beyond the foreign keys' brief SHARE ROW
EXCLUSIVE on tenants and workspaces. Reversible: the downgrade drops them.

Revision ID: 0016_tags
Revises: 0014_backups_that_run
Create Date: 2026-11-30
"""
import os

import sqlalchemy as sa
from alembic import op

revision = "0016_tags"
down_revision = "0014_backups_that_run"
branch_labels = None
depends_on = None

APP_ROLE = os.environ.get("APP_DATABASE_ROLE", "tenantatlas_app")
CURRENT_WORKSPACE = "NULLIF(current_setting('app.current_workspace_id', true), '')::bigint"
NEW_TABLES = ("tags", "tenant_tags")


def protect(tables):
    """Grants and row-level security for new workspace tables, as 0006 and 0009 do."""
    for table in tables:
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY current_workspace ON {table} USING (workspace_id = {CURRENT_WORKSPACE}) "
                   f"WITH CHECK (workspace_id = {CURRENT_WORKSPACE})")


def upgrade():
    op.create_table(
        "tags",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("workspace_id", sa.BigInteger, sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("colour", sa.String(7), nullable=False, server_default="#0d6efd"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("workspace_id", "name", name="uq_tags_workspace_id_name"),
        sa.UniqueConstraint("id", "workspace_id", name="uq_tags_id_workspace_id"),
        sa.CheckConstraint("colour ~ '^#[0-9a-f]{6}$'", name="ck_tags_colour_hex"),
        sa.CheckConstraint("length(name) BETWEEN 1 AND 64", name="ck_tags_name_length"),
    )
    op.create_table(
        "tenant_tags",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("tag_id", sa.BigInteger, nullable=False),
        sa.Column("workspace_id", sa.BigInteger, sa.ForeignKey("workspaces.id"), nullable=False),
        sa.UniqueConstraint("tenant_id", "tag_id", name="uq_tenant_tags_tenant_id_tag_id"),
        sa.ForeignKeyConstraint(["tenant_id", "workspace_id"], ["tenants.id", "tenants.workspace_id"],
                                ondelete="CASCADE", onupdate="CASCADE", name="fk_tenant_tags_tenant_in_workspace"),
        sa.ForeignKeyConstraint(["tag_id", "workspace_id"], ["tags.id", "tags.workspace_id"], ondelete="CASCADE",
                                name="fk_tenant_tags_tag_in_workspace"),
    )
    op.create_index("ix_tenant_tags_workspace_id_tag_id", "tenant_tags", ["workspace_id", "tag_id"])
    protect(NEW_TABLES)


def downgrade():
    for table in reversed(NEW_TABLES):
        op.drop_table(table)
