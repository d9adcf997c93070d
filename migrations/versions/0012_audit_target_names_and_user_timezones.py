"""Audit entries keep their target's name; users pick the timezone their times are shown in.

- audit_logs.target_name: the target's name at the time of the entry (a tenant, a user, a
  schedule, a finding…), so that an entry about an object deleted since still reads.
  Older entries have none and show their type and id as before.
- users.timezone: an IANA name (Europe/Berlin), validated by the app with zoneinfo;
  NULL means UTC.

Both columns are nullable and have no default: adding them changes only the catalog
(no table rewrite), under a brief lock bounded by the migration's lock_timeout.

Reversible: the downgrade drops both columns.

Revision ID: 0012_audit_names_user_timezones
Revises: 0011_tenant_ids_per_workspace
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0012_audit_names_user_timezones"
down_revision = "0011_tenant_ids_per_workspace"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("audit_logs", sa.Column("target_name", sa.String(length=300), nullable=True))
    op.add_column("users", sa.Column("timezone", sa.String(length=64), nullable=True))


def downgrade():
    op.drop_column("users", "timezone")
    op.drop_column("audit_logs", "target_name")
