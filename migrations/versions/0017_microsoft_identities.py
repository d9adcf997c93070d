"""Microsoft sign-in: a person is their Entra tenant id and object id, never an email.

users.entra_tenant_id and users.entra_object_id (both or neither), unique together: the
ID token's `tid` and `oid`, which Entra never reuses for another person (an email or UPN
can be renamed and given to someone else). Set when an invited person accepts with
Microsoft; nobody is matched by email.

Nullable columns: no table rewrite; the unique index is built on a small table (staff
accounts) in the migration's transaction.

Reversible: the downgrade drops the index, the check and the columns.

Revision ID: 0017_microsoft_identities
Revises: 0017_second_factors
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op

revision = "0017_microsoft_identities"
down_revision = "0017_second_factors"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("entra_tenant_id", sa.Uuid))
    op.add_column("users", sa.Column("entra_object_id", sa.Uuid))
    op.create_check_constraint("ck_users_entra_identity_whole", "users",
                               "(entra_tenant_id IS NULL) = (entra_object_id IS NULL)")
    op.create_index("ux_users_entra_identity", "users", ["entra_tenant_id", "entra_object_id"], unique=True,
                    postgresql_where=sa.text("entra_object_id IS NOT NULL"))


def downgrade():
    op.drop_index("ux_users_entra_identity", table_name="users")
    op.drop_constraint("ck_users_entra_identity_whole", "users", type_="check")
    op.drop_column("users", "entra_object_id")
    op.drop_column("users", "entra_tenant_id")
