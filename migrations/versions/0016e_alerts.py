"""Alerts: rules per workspace, snoozes, the events to send (de-duplicated) and each attempt.

- alert_rules: event (new_finding, sync_failing, backup_missing, consent_revoked,
  tenant_connected), minimum severity, threshold, tag scope with exclusions (tag ids),
  one channel (email or webhook) and its target, a webhook signing secret, a snooze.
- alert_snoozes: no alert about a tenant (of one rule, or of all) until a time.
- alert_events: UNIQUE (rule, tenant, subject, day): one alert per subject a day.
- alert_deliveries: one row per delivery attempt (the log).
- Row-level security as 0006.

New tables only. Reversible.

Revision ID: 0016e_alerts
Revises: 0016d_bulk_runs
Create Date: 2026-11-30
"""
import os

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0016e_alerts"
down_revision = "0016d_bulk_runs"
branch_labels = None
depends_on = None

APP_ROLE = os.environ.get("APP_DATABASE_ROLE", "tenantatlas_app")
CURRENT_WORKSPACE = "NULLIF(current_setting('app.current_workspace_id', true), '')::bigint"
NEW_TABLES = ("alert_rules", "alert_snoozes", "alert_events", "alert_deliveries")
SEVERITIES = "('low', 'medium', 'high', 'critical')"


def protect(tables):
    for table in tables:
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY current_workspace ON {table} USING (workspace_id = {CURRENT_WORKSPACE}) "
                   f"WITH CHECK (workspace_id = {CURRENT_WORKSPACE})")


def _tenant(table):
    return sa.ForeignKeyConstraint(["tenant_id", "workspace_id"], ["tenants.id", "tenants.workspace_id"],
                                   ondelete="CASCADE", onupdate="CASCADE", name=f"fk_{table}_tenant_in_workspace")


def _rule(table):
    return sa.ForeignKeyConstraint(["rule_id", "workspace_id"], ["alert_rules.id", "alert_rules.workspace_id"],
                                   ondelete="CASCADE", name=f"fk_{table}_rule_in_workspace")


def upgrade():
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("workspace_id", sa.BigInteger, sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("min_severity", sa.String(16)),
        sa.Column("threshold", sa.Integer, nullable=False, server_default="1"),
        sa.Column("include_tag_ids", JSONB, nullable=False, server_default="[]"),
        sa.Column("exclude_tag_ids", JSONB, nullable=False, server_default="[]"),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("target", sa.String(1000), nullable=False),
        sa.Column("signing_secret", sa.String(128)),
        sa.Column("is_enabled", sa.Boolean, nullable=False, server_default="true"),
        sa.Column("snoozed_until", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("id", "workspace_id", name="uq_alert_rules_id_workspace_id"),
        sa.UniqueConstraint("workspace_id", "name", name="uq_alert_rules_workspace_id_name"),
        sa.CheckConstraint("event IN ('new_finding', 'sync_failing', 'backup_missing', 'consent_revoked', "
                           "'tenant_connected')", name="ck_alert_rules_event_known"),
        sa.CheckConstraint("channel IN ('email', 'webhook')", name="ck_alert_rules_channel_known"),
        sa.CheckConstraint(f"min_severity IS NULL OR min_severity IN {SEVERITIES}",
                           name="ck_alert_rules_min_severity_known"),
        sa.CheckConstraint("threshold BETWEEN 1 AND 365", name="ck_alert_rules_threshold_range"),
    )
    op.create_table(
        "alert_snoozes",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("rule_id", sa.BigInteger),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("workspace_id", sa.BigInteger, sa.ForeignKey("workspaces.id"), nullable=False),
        _tenant("alert_snoozes"), _rule("alert_snoozes"),
    )
    op.create_index("ix_alert_snoozes_workspace_id_tenant_id", "alert_snoozes", ["workspace_id", "tenant_id"])
    op.create_table(
        "alert_events",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("rule_id", sa.BigInteger, nullable=False),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("subject", sa.String(600), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("title", sa.String(400), nullable=False),
        sa.Column("payload", JSONB, nullable=False, server_default="{}"),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("workspace_id", sa.BigInteger, sa.ForeignKey("workspaces.id"), nullable=False),
        sa.UniqueConstraint("rule_id", "tenant_id", "subject", "day",
                            name="uq_alert_events_rule_id_tenant_id_subject_day"),
        sa.UniqueConstraint("id", "workspace_id", name="uq_alert_events_id_workspace_id"),
        _tenant("alert_events"), _rule("alert_events"),
        sa.CheckConstraint("status IN ('pending', 'sent', 'failed', 'snoozed')", name="ck_alert_events_status_known"),
    )
    op.create_index("ix_alert_events_workspace_id_created_at", "alert_events", ["workspace_id", "created_at"])
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("workspace_id", sa.BigInteger, sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("alert_event_id", sa.BigInteger, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("error", sa.String(500)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.ForeignKeyConstraint(["alert_event_id", "workspace_id"], ["alert_events.id", "alert_events.workspace_id"],
                                ondelete="CASCADE", name="fk_alert_deliveries_event_in_workspace"),
    )
    op.create_index("ix_alert_deliveries_alert_event_id", "alert_deliveries", ["alert_event_id"])
    protect(NEW_TABLES)


def downgrade():
    for table in reversed(NEW_TABLES):
        op.drop_table(table)
