"""Tenant switcher marks: per-user recent visits and pins.

Two new, empty tables; each row is bound to its tenant's workspace through the
composite key tenants(id, workspace_id). Reversible: the downgrade drops them.

Revision ID: 0002_switcher_marks
Revises: 0001_baseline
Create Date: 2026-11-24

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002_switcher_marks'
down_revision = '0001_baseline'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('tenant_pins',
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('tenant_id', sa.BigInteger(), nullable=False),
    sa.Column('workspace_id', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'workspace_id'], ['tenants.id', 'tenants.workspace_id'], name=op.f('fk_tenant_pins_tenant_id_workspace_id_tenants'), onupdate='CASCADE', ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_tenant_pins_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tenant_pins')),
    sa.UniqueConstraint('user_id', 'tenant_id', name=op.f('uq_tenant_pins_user_id_tenant_id'))
    )
    op.create_index(op.f('ix_tenant_pins_tenant_id'), 'tenant_pins', ['tenant_id'], unique=False)
    op.create_index('ix_tenant_pins_user_id_workspace_id', 'tenant_pins', ['user_id', 'workspace_id'], unique=False)
    op.create_table('tenant_visits',
    sa.Column('visited_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('tenant_id', sa.BigInteger(), nullable=False),
    sa.Column('workspace_id', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'workspace_id'], ['tenants.id', 'tenants.workspace_id'], name=op.f('fk_tenant_visits_tenant_id_workspace_id_tenants'), onupdate='CASCADE', ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_tenant_visits_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tenant_visits')),
    sa.UniqueConstraint('user_id', 'tenant_id', name=op.f('uq_tenant_visits_user_id_tenant_id'))
    )
    op.create_index(op.f('ix_tenant_visits_tenant_id'), 'tenant_visits', ['tenant_id'], unique=False)
    op.create_index('ix_tenant_visits_user_id_workspace_id_visited_at', 'tenant_visits', ['user_id', 'workspace_id', 'visited_at'], unique=False)


def downgrade():
    op.drop_index('ix_tenant_visits_user_id_workspace_id_visited_at', table_name='tenant_visits')
    op.drop_index(op.f('ix_tenant_visits_tenant_id'), table_name='tenant_visits')
    op.drop_table('tenant_visits')
    op.drop_index('ix_tenant_pins_user_id_workspace_id', table_name='tenant_pins')
    op.drop_index(op.f('ix_tenant_pins_tenant_id'), table_name='tenant_pins')
    op.drop_table('tenant_pins')
