"""User sessions: each signed-in browser is a row its owner can see and end.

- user_sessions: one row per sign-in (the cookie carries a random secret; only its SHA-256
  is stored), with how the person proved who they are (password, a second factor,
  Microsoft, a passkey), the device (User-Agent) and address, when it started and was
  last seen, and when it ended (sign-out, "end session", a password change, an
  administrator). The app ends a session idle longer than SESSION_IDLE_MINUTES or older
  than SESSION_LIFETIME_HOURS. Not workspace-owned: a person's sessions span workspaces,
  like the users table (no row-level security, as users).

This replaces users.session_token (0005) as what a cookie is bound to; the column stays
for now (dropping it is a later, separate step) and is no longer read. Existing cookies
carry no session secret: everyone signs in once after the deploy.

A new table: no lock on existing tables beyond the foreign key's brief one.

Reversible: the downgrade drops the table.

Revision ID: 0017_user_sessions
Revises: 0017_workspace_invitations
Create Date: 2026-11-30
"""
import os

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import INET

revision = "0017_user_sessions"
down_revision = "0017_workspace_invitations"
branch_labels = None
depends_on = None

APP_ROLE = os.environ.get("APP_DATABASE_ROLE", "tenantatlas_app")


def upgrade():
    op.create_table(
        "user_sessions",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("auth_method", sa.String(40), nullable=False),
        sa.Column("strong", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("user_agent", sa.String(300)),
        sa.Column("ip_address", INET),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("end_reason", sa.String(40)),
    )
    op.create_index("ix_user_sessions_user_id_active", "user_sessions", ["user_id"],
                    postgresql_where=sa.text("ended_at IS NULL"))
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON user_sessions TO {APP_ROLE}")


def downgrade():
    op.drop_table("user_sessions")
