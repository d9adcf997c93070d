"""Baseline schema, before workspace isolation.

Users, workspaces, memberships, tenants, the twelve tenant-owned tables (bound
to their tenant only) and the audit log.

This is the product as it stood before workspace isolation; the later rollout
revisions add `workspace_id` to the tenant-owned tables. Reversible: the
downgrade drops everything, back to an empty database.

Revision ID: 0001_baseline
Revises:
Create Date: 2026-11-24

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = '0001_baseline'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('workspaces',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('slug', sa.String(length=63), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(slug) <= 63", name=op.f('ck_workspaces_slug_url_safe')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_workspaces')),
    sa.UniqueConstraint('slug', name=op.f('uq_workspaces_slug'))
    )
    op.create_table('tenants',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('workspace_id', sa.BigInteger(), nullable=False),
    sa.Column('external_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('primary_domain', sa.String(length=253), nullable=True),
    sa.Column('status', sa.String(length=16), server_default='active', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status IN ('active', 'archived')", name=op.f('ck_tenants_status_known')),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_tenants_workspace_id_workspaces'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tenants')),
    sa.UniqueConstraint('external_id', name=op.f('uq_tenants_external_id')),
    sa.UniqueConstraint('id', 'workspace_id', name=op.f('uq_tenants_id_workspace_id'))
    )
    op.create_index('ix_tenants_workspace_id_name', 'tenants', ['workspace_id', 'name'], unique=False)
    op.create_table('users',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('is_active', sa.Boolean(), server_default='true', nullable=False),
    sa.Column('last_workspace_id', sa.BigInteger(), nullable=True),
    sa.Column('last_login_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('email = lower(email)', name=op.f('ck_users_email_lower')),
    sa.CheckConstraint('length(email) BETWEEN 3 AND 254', name=op.f('ck_users_email_length')),
    sa.ForeignKeyConstraint(['last_workspace_id'], ['workspaces.id'], name=op.f('fk_users_last_workspace_id_workspaces'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('email', name=op.f('uq_users_email'))
    )
    op.create_index(op.f('ix_users_last_workspace_id'), 'users', ['last_workspace_id'], unique=False)
    op.create_table('audit_logs',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('workspace_id', sa.BigInteger(), nullable=True),
    sa.Column('tenant_id', sa.BigInteger(), nullable=True),
    sa.Column('actor_user_id', sa.BigInteger(), nullable=True),
    sa.Column('action', sa.String(length=100), nullable=False),
    sa.Column('target_type', sa.String(length=64), nullable=True),
    sa.Column('target_id', sa.String(length=128), nullable=True),
    sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('ip_address', postgresql.INET(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['actor_user_id'], ['users.id'], name=op.f('fk_audit_logs_actor_user_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_audit_logs_tenant_id_tenants'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_audit_logs_workspace_id_workspaces'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_logs'))
    )
    op.create_index(op.f('ix_audit_logs_actor_user_id'), 'audit_logs', ['actor_user_id'], unique=False)
    op.create_index('ix_audit_logs_tenant_id_created_at', 'audit_logs', ['tenant_id', 'created_at'], unique=False)
    op.create_index('ix_audit_logs_workspace_id_created_at', 'audit_logs', ['workspace_id', 'created_at'], unique=False)
    op.create_table('backup_schedules',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('tenant_id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('frequency', sa.String(length=16), nullable=False),
    sa.Column('next_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('is_enabled', sa.Boolean(), server_default='true', nullable=False),
    sa.Column('retention_days', sa.Integer(), server_default='30', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("frequency IN ('hourly', 'daily', 'weekly', 'monthly')", name=op.f('ck_backup_schedules_frequency_known')),
    sa.CheckConstraint('retention_days BETWEEN 1 AND 3650', name=op.f('ck_backup_schedules_retention_days_range')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_backup_schedules_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_backup_schedules')),
    sa.UniqueConstraint('id', 'tenant_id', name=op.f('uq_backup_schedules_id_tenant_id')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_backup_schedules_tenant_id_name'))
    )
    op.create_index(op.f('ix_backup_schedules_tenant_id'), 'backup_schedules', ['tenant_id'], unique=False)
    op.create_table('entra_groups',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('tenant_id', sa.BigInteger(), nullable=False),
    sa.Column('graph_id', sa.String(length=128), nullable=False),
    sa.Column('display_name', sa.String(length=400), nullable=False),
    sa.Column('group_type', sa.String(length=32), nullable=False),
    sa.Column('member_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('member_count >= 0', name=op.f('ck_entra_groups_member_count_nonnegative')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_entra_groups_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_entra_groups')),
    sa.UniqueConstraint('tenant_id', 'graph_id', name=op.f('uq_entra_groups_tenant_id_graph_id'))
    )
    op.create_index(op.f('ix_entra_groups_tenant_id'), 'entra_groups', ['tenant_id'], unique=False)
    op.create_table('entra_role_definitions',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('tenant_id', sa.BigInteger(), nullable=False),
    sa.Column('graph_id', sa.String(length=128), nullable=False),
    sa.Column('display_name', sa.String(length=400), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('is_built_in', sa.Boolean(), server_default='true', nullable=False),
    sa.Column('permissions', postgresql.JSONB(astext_type=sa.Text()), server_default='[]', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_entra_role_definitions_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_entra_role_definitions')),
    sa.UniqueConstraint('tenant_id', 'graph_id', name=op.f('uq_entra_role_definitions_tenant_id_graph_id'))
    )
    op.create_index(op.f('ix_entra_role_definitions_tenant_id'), 'entra_role_definitions', ['tenant_id'], unique=False)
    op.create_table('inventory_items',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('tenant_id', sa.BigInteger(), nullable=False),
    sa.Column('object_type', sa.String(length=64), nullable=False),
    sa.Column('graph_id', sa.String(length=128), nullable=False),
    sa.Column('display_name', sa.String(length=400), nullable=False),
    sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_inventory_items_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inventory_items')),
    sa.UniqueConstraint('id', 'tenant_id', name=op.f('uq_inventory_items_id_tenant_id')),
    sa.UniqueConstraint('tenant_id', 'object_type', 'graph_id', name=op.f('uq_inventory_items_tenant_id_object_type_graph_id'))
    )
    op.create_index(op.f('ix_inventory_items_tenant_id'), 'inventory_items', ['tenant_id'], unique=False)
    op.create_table('policies',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('tenant_id', sa.BigInteger(), nullable=False),
    sa.Column('graph_id', sa.String(length=128), nullable=False),
    sa.Column('policy_type', sa.String(length=64), nullable=False),
    sa.Column('platform', sa.String(length=32), nullable=False),
    sa.Column('display_name', sa.String(length=400), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('settings', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('last_modified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_policies_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_policies')),
    sa.UniqueConstraint('id', 'tenant_id', name=op.f('uq_policies_id_tenant_id')),
    sa.UniqueConstraint('tenant_id', 'graph_id', name=op.f('uq_policies_tenant_id_graph_id'))
    )
    op.create_index(op.f('ix_policies_tenant_id'), 'policies', ['tenant_id'], unique=False)
    op.create_index('ix_policies_tenant_id_display_name', 'policies', ['tenant_id', 'display_name'], unique=False)
    op.create_table('tenant_permissions',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('tenant_id', sa.BigInteger(), nullable=False),
    sa.Column('permission_name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('checked_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status IN ('granted', 'missing')", name=op.f('ck_tenant_permissions_status_known')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_tenant_permissions_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tenant_permissions')),
    sa.UniqueConstraint('tenant_id', 'permission_name', name=op.f('uq_tenant_permissions_tenant_id_permission_name'))
    )
    op.create_index(op.f('ix_tenant_permissions_tenant_id'), 'tenant_permissions', ['tenant_id'], unique=False)
    op.create_table('workspace_memberships',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('workspace_id', sa.BigInteger(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("role IN ('owner', 'manager', 'operator', 'readonly')", name=op.f('ck_workspace_memberships_role_known')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_workspace_memberships_user_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_workspace_memberships_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_workspace_memberships')),
    sa.UniqueConstraint('workspace_id', 'user_id', name=op.f('uq_workspace_memberships_workspace_id_user_id'))
    )
    op.create_index(op.f('ix_workspace_memberships_user_id'), 'workspace_memberships', ['user_id'], unique=False)
    op.create_table('backup_sets',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('tenant_id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('item_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('triggered_by', sa.String(length=16), nullable=False),
    sa.Column('triggered_by_user_id', sa.BigInteger(), nullable=True),
    sa.Column('schedule_id', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status IN ('pending', 'running', 'completed', 'partial', 'failed')", name=op.f('ck_backup_sets_status_known')),
    sa.CheckConstraint("triggered_by IN ('user', 'schedule')", name=op.f('ck_backup_sets_triggered_by_known')),
    sa.CheckConstraint('item_count >= 0', name=op.f('ck_backup_sets_item_count_nonnegative')),
    sa.ForeignKeyConstraint(['schedule_id', 'tenant_id'], ['backup_schedules.id', 'backup_schedules.tenant_id'], name=op.f('fk_backup_sets_schedule_id_tenant_id_backup_schedules')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_backup_sets_tenant_id_tenants'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['triggered_by_user_id'], ['users.id'], name=op.f('fk_backup_sets_triggered_by_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_backup_sets')),
    sa.UniqueConstraint('id', 'tenant_id', name=op.f('uq_backup_sets_id_tenant_id'))
    )
    op.create_index(op.f('ix_backup_sets_schedule_id'), 'backup_sets', ['schedule_id'], unique=False)
    op.create_index(op.f('ix_backup_sets_tenant_id'), 'backup_sets', ['tenant_id'], unique=False)
    op.create_index('ix_backup_sets_tenant_id_started_at', 'backup_sets', ['tenant_id', 'started_at'], unique=False)
    op.create_index(op.f('ix_backup_sets_triggered_by_user_id'), 'backup_sets', ['triggered_by_user_id'], unique=False)
    op.create_table('findings',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('tenant_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('title', sa.String(length=400), nullable=False),
    sa.Column('detail', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('policy_id', sa.BigInteger(), nullable=True),
    sa.Column('status', sa.String(length=16), server_default='open', nullable=False),
    sa.Column('detected_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("severity IN ('low', 'medium', 'high', 'critical')", name=op.f('ck_findings_severity_known')),
    sa.CheckConstraint("status IN ('open', 'acknowledged', 'resolved')", name=op.f('ck_findings_status_known')),
    sa.ForeignKeyConstraint(['policy_id', 'tenant_id'], ['policies.id', 'policies.tenant_id'], name=op.f('fk_findings_policy_id_tenant_id_policies')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_findings_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_findings'))
    )
    op.create_index(op.f('ix_findings_policy_id'), 'findings', ['policy_id'], unique=False)
    op.create_index(op.f('ix_findings_tenant_id'), 'findings', ['tenant_id'], unique=False)
    op.create_index('ix_findings_tenant_id_status_severity', 'findings', ['tenant_id', 'status', 'severity'], unique=False)
    op.create_table('inventory_links',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('tenant_id', sa.BigInteger(), nullable=False),
    sa.Column('source_item_id', sa.BigInteger(), nullable=False),
    sa.Column('target_item_id', sa.BigInteger(), nullable=False),
    sa.Column('link_type', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('source_item_id <> target_item_id', name=op.f('ck_inventory_links_not_self')),
    sa.ForeignKeyConstraint(['source_item_id', 'tenant_id'], ['inventory_items.id', 'inventory_items.tenant_id'], name=op.f('fk_inventory_links_source_item_id_tenant_id_inventory_items'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['target_item_id', 'tenant_id'], ['inventory_items.id', 'inventory_items.tenant_id'], name=op.f('fk_inventory_links_target_item_id_tenant_id_inventory_items'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_inventory_links_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inventory_links')),
    sa.UniqueConstraint('source_item_id', 'target_item_id', 'link_type', name=op.f('uq_inventory_links_source_item_id_target_item_id_link_type'))
    )
    op.create_index(op.f('ix_inventory_links_target_item_id'), 'inventory_links', ['target_item_id'], unique=False)
    op.create_index(op.f('ix_inventory_links_tenant_id'), 'inventory_links', ['tenant_id'], unique=False)
    op.create_table('policy_versions',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('tenant_id', sa.BigInteger(), nullable=False),
    sa.Column('policy_id', sa.BigInteger(), nullable=False),
    sa.Column('version_number', sa.Integer(), nullable=False),
    sa.Column('captured_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('snapshot', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.CheckConstraint('version_number > 0', name=op.f('ck_policy_versions_version_number_positive')),
    sa.ForeignKeyConstraint(['policy_id', 'tenant_id'], ['policies.id', 'policies.tenant_id'], name=op.f('fk_policy_versions_policy_id_tenant_id_policies'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_policy_versions_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_policy_versions')),
    sa.UniqueConstraint('policy_id', 'version_number', name=op.f('uq_policy_versions_policy_id_version_number'))
    )
    op.create_index(op.f('ix_policy_versions_tenant_id'), 'policy_versions', ['tenant_id'], unique=False)
    op.create_table('backup_items',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('tenant_id', sa.BigInteger(), nullable=False),
    sa.Column('backup_set_id', sa.BigInteger(), nullable=False),
    sa.Column('policy_id', sa.BigInteger(), nullable=True),
    sa.Column('item_type', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=400), nullable=False),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['backup_set_id', 'tenant_id'], ['backup_sets.id', 'backup_sets.tenant_id'], name=op.f('fk_backup_items_backup_set_id_tenant_id_backup_sets'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['policy_id', 'tenant_id'], ['policies.id', 'policies.tenant_id'], name=op.f('fk_backup_items_policy_id_tenant_id_policies')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_backup_items_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_backup_items'))
    )
    op.create_index(op.f('ix_backup_items_backup_set_id'), 'backup_items', ['backup_set_id'], unique=False)
    op.create_index(op.f('ix_backup_items_policy_id'), 'backup_items', ['policy_id'], unique=False)
    op.create_index(op.f('ix_backup_items_tenant_id'), 'backup_items', ['tenant_id'], unique=False)
    op.create_table('restore_runs',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('tenant_id', sa.BigInteger(), nullable=False),
    sa.Column('backup_set_id', sa.BigInteger(), nullable=False),
    sa.Column('requested_by_user_id', sa.BigInteger(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('is_dry_run', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('results', postgresql.JSONB(astext_type=sa.Text()), server_default='[]', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status IN ('queued', 'running', 'succeeded', 'partial', 'failed')", name=op.f('ck_restore_runs_status_known')),
    sa.ForeignKeyConstraint(['backup_set_id', 'tenant_id'], ['backup_sets.id', 'backup_sets.tenant_id'], name=op.f('fk_restore_runs_backup_set_id_tenant_id_backup_sets')),
    sa.ForeignKeyConstraint(['requested_by_user_id'], ['users.id'], name=op.f('fk_restore_runs_requested_by_user_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_restore_runs_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_restore_runs'))
    )
    op.create_index(op.f('ix_restore_runs_backup_set_id'), 'restore_runs', ['backup_set_id'], unique=False)
    op.create_index(op.f('ix_restore_runs_requested_by_user_id'), 'restore_runs', ['requested_by_user_id'], unique=False)
    op.create_index(op.f('ix_restore_runs_tenant_id'), 'restore_runs', ['tenant_id'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_restore_runs_tenant_id'), table_name='restore_runs')
    op.drop_index(op.f('ix_restore_runs_requested_by_user_id'), table_name='restore_runs')
    op.drop_index(op.f('ix_restore_runs_backup_set_id'), table_name='restore_runs')
    op.drop_table('restore_runs')
    op.drop_index(op.f('ix_backup_items_tenant_id'), table_name='backup_items')
    op.drop_index(op.f('ix_backup_items_policy_id'), table_name='backup_items')
    op.drop_index(op.f('ix_backup_items_backup_set_id'), table_name='backup_items')
    op.drop_table('backup_items')
    op.drop_index(op.f('ix_policy_versions_tenant_id'), table_name='policy_versions')
    op.drop_table('policy_versions')
    op.drop_index(op.f('ix_inventory_links_tenant_id'), table_name='inventory_links')
    op.drop_index(op.f('ix_inventory_links_target_item_id'), table_name='inventory_links')
    op.drop_table('inventory_links')
    op.drop_index('ix_findings_tenant_id_status_severity', table_name='findings')
    op.drop_index(op.f('ix_findings_tenant_id'), table_name='findings')
    op.drop_index(op.f('ix_findings_policy_id'), table_name='findings')
    op.drop_table('findings')
    op.drop_index(op.f('ix_backup_sets_triggered_by_user_id'), table_name='backup_sets')
    op.drop_index('ix_backup_sets_tenant_id_started_at', table_name='backup_sets')
    op.drop_index(op.f('ix_backup_sets_tenant_id'), table_name='backup_sets')
    op.drop_index(op.f('ix_backup_sets_schedule_id'), table_name='backup_sets')
    op.drop_table('backup_sets')
    op.drop_index(op.f('ix_workspace_memberships_user_id'), table_name='workspace_memberships')
    op.drop_table('workspace_memberships')
    op.drop_index(op.f('ix_tenant_permissions_tenant_id'), table_name='tenant_permissions')
    op.drop_table('tenant_permissions')
    op.drop_index('ix_policies_tenant_id_display_name', table_name='policies')
    op.drop_index(op.f('ix_policies_tenant_id'), table_name='policies')
    op.drop_table('policies')
    op.drop_index(op.f('ix_inventory_items_tenant_id'), table_name='inventory_items')
    op.drop_table('inventory_items')
    op.drop_index(op.f('ix_entra_role_definitions_tenant_id'), table_name='entra_role_definitions')
    op.drop_table('entra_role_definitions')
    op.drop_index(op.f('ix_entra_groups_tenant_id'), table_name='entra_groups')
    op.drop_table('entra_groups')
    op.drop_index(op.f('ix_backup_schedules_tenant_id'), table_name='backup_schedules')
    op.drop_table('backup_schedules')
    op.drop_index('ix_audit_logs_workspace_id_created_at', table_name='audit_logs')
    op.drop_index('ix_audit_logs_tenant_id_created_at', table_name='audit_logs')
    op.drop_index(op.f('ix_audit_logs_actor_user_id'), table_name='audit_logs')
    op.drop_table('audit_logs')
    op.drop_index(op.f('ix_users_last_workspace_id'), table_name='users')
    op.drop_table('users')
    op.drop_index('ix_tenants_workspace_id_name', table_name='tenants')
    op.drop_table('tenants')
    op.drop_table('workspaces')
