"""Workspace invitations: nobody becomes a member without accepting.

- workspace_invitations: an owner's invitation of an email address to a workspace with a
  role; 7 days to accept, once; revocable. Only the SHA-256 of the link's random token is
  kept, so the table (a backup, a replica) never holds a working link. Workspace-owned:
  row-level security as 0006 (the app role sees only the current workspace's rows).
- invitation_by_token_hash(hash): the one lookup before the workspace is known (the
  invitee is no member yet); SECURITY DEFINER on pg_catalog's search path (as 0008), it
  answers the invitation's id and workspace id for an exact hash, nothing else.

A new table and a function: no lock on existing tables beyond the foreign keys' brief ones.

Reversible: the downgrade drops the function and the table.

Revision ID: 0017_workspace_invitations
Revises: 0017_platform_administrators
Create Date: 2026-11-30
"""
import os

import sqlalchemy as sa
from alembic import op

revision = "0017_workspace_invitations"
down_revision = "0017_platform_administrators"
branch_labels = None
depends_on = None

APP_ROLE = os.environ.get("APP_DATABASE_ROLE", "tenantatlas_app")
CURRENT_WORKSPACE = "NULLIF(current_setting('app.current_workspace_id', true), '')::bigint"
ROLES = ("owner", "manager", "operator", "readonly")


def upgrade():
    op.create_table(
        "workspace_invitations",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("workspace_id", sa.BigInteger, sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("invited_by_user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True)),
        sa.Column("accepted_by_user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("email = lower(email)", name="ck_workspace_invitations_email_lower"),
        sa.CheckConstraint(f"role IN ({', '.join(repr(r) for r in ROLES)})", name="ck_workspace_invitations_role_known"),
    )
    op.create_index("ix_workspace_invitations_workspace_id_created_at", "workspace_invitations",
                    ["workspace_id", "created_at"])
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON workspace_invitations TO {APP_ROLE}")
    op.execute("ALTER TABLE workspace_invitations ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE workspace_invitations FORCE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY current_workspace ON workspace_invitations USING (workspace_id = {CURRENT_WORKSPACE}) "
               f"WITH CHECK (workspace_id = {CURRENT_WORKSPACE})")
    op.execute("""
        CREATE FUNCTION invitation_by_token_hash(hash text)
        RETURNS TABLE (invitation_id bigint, workspace_id bigint)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
            SELECT i.id, i.workspace_id FROM public.workspace_invitations i WHERE i.token_hash = hash
        $$""")
    op.execute("REVOKE ALL ON FUNCTION invitation_by_token_hash(text) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION invitation_by_token_hash(text) TO {APP_ROLE}")


def downgrade():
    op.execute("DROP FUNCTION IF EXISTS invitation_by_token_hash(text)")
    op.drop_table("workspace_invitations")
