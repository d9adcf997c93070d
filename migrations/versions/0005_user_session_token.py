"""Per-user session token: sign-out and password changes end every session of the user.

Adds users.session_token, filled for existing users by a volatile default. That
rewrites `users` under an ACCESS EXCLUSIVE lock: a table of staff accounts (small),
so the lock is brief; the migration's lock_timeout still bounds the wait for it.
Existing sessions end at the deploy (their cookies carry no token): everyone signs in once.

Reversible: the downgrade drops the column.

Revision ID: 0005_user_session_token
Revises: 0004_workspace_id_phase3
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op

revision = "0005_user_session_token"
down_revision = "0004_workspace_id_phase3"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column(
        "session_token", sa.String(length=64), nullable=False,
        server_default=sa.text("replace(gen_random_uuid()::text, '-', '')")))


def downgrade():
    op.drop_column("users", "session_token")
