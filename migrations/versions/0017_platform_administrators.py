"""Platform administrators: users.is_admin, the one flag that may create workspaces.

Until now any signed-in user could create a workspace. An administrator is set by
`flask create-user --admin` or by another administrator (Administration page); workspace
owners keep managing their own workspaces as before. Nobody is an administrator after the
upgrade: an operator grants it with `flask set-admin EMAIL` (audited).

A boolean column with a constant default: PostgreSQL 11+ adds it without rewriting `users`.

Reversible: the downgrade drops the column.

Revision ID: 0017_platform_administrators
Revises: 0016e_alerts
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op

revision = "0017_platform_administrators"
down_revision = "0016e_alerts"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("is_admin", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade():
    op.drop_column("users", "is_admin")
