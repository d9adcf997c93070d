"""Second factors: TOTP with recovery codes, passkeys, and a workspace's MFA requirement.

- users.totp_secret (base32), totp_enabled_at, totp_last_step: an authenticator app; the
  last accepted 30-second step makes each code single-use within its window.
- recovery_codes: ten one-time codes per enrolment, stored as SHA-256 (each is 50 random
  bits); a used code keeps its row with used_at.
- webauthn_credentials: a person's passkeys (credential id, public key, signature
  counter, transports).
- workspaces.require_mfa: "members must use MFA or Microsoft sign-in"; the app sends a
  member whose session is not that strong to enrol or verify before any page of it.

Person-owned tables (no workspace), like users: no row-level security. Nullable columns
or constant defaults only: no table rewrite.

Reversible: the downgrade drops the tables and columns.

Revision ID: 0017_second_factors
Revises: 0017_user_sessions
Create Date: 2026-11-30
"""
import os

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0017_second_factors"
down_revision = "0017_user_sessions"
branch_labels = None
depends_on = None

APP_ROLE = os.environ.get("APP_DATABASE_ROLE", "tenantatlas_app")


def upgrade():
    op.add_column("users", sa.Column("totp_secret", sa.String(64)))
    op.add_column("users", sa.Column("totp_enabled_at", sa.DateTime(timezone=True)))
    op.add_column("users", sa.Column("totp_last_step", sa.BigInteger))
    op.add_column("workspaces", sa.Column("require_mfa", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_table(
        "recovery_codes",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("used_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("user_id", "code_hash", name="uq_recovery_codes_user_id_code_hash"),
    )
    op.create_table(
        "webauthn_credentials",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("credential_id", sa.LargeBinary, nullable=False, unique=True),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("sign_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("transports", JSONB, nullable=False, server_default="[]"),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
    )
    for table in ("recovery_codes", "webauthn_credentials"):
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")


def downgrade():
    op.drop_table("webauthn_credentials")
    op.drop_table("recovery_codes")
    op.drop_column("workspaces", "require_mfa")
    op.drop_column("users", "totp_last_step")
    op.drop_column("users", "totp_enabled_at")
    op.drop_column("users", "totp_secret")
