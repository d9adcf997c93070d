"""Portfolio operations: tags, baselines, bulk runs and alerts (issue 13).

Every row here belongs to one workspace (`workspace_id`, row-level security as in
migration 0006). A row that names a tenant or a workspace object (tag, baseline,
bulk run, alert rule) references it together with `workspace_id` (composite keys onto
`UNIQUE (id, workspace_id)`), so the database itself refuses a link across workspaces.
Rows that name a tenant follow it when it moves (ON UPDATE CASCADE) except links to
another workspace's objects, which `app.rollout.move_tenant` removes first.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db
from .models import SEVERITIES, TenantOwned, _created_at, _in, _pk, _updated_at

TAG_COLOURS = ("#0d6efd", "#6f42c1", "#d63384", "#dc3545", "#fd7e14", "#198754", "#20c997", "#0dcaf0", "#6c757d")
BULK_ACTIONS = ("sync", "backup", "add_tag", "remove_tag", "assign_baseline")
BULK_ITEM_STATUSES = ("queued", "succeeded", "skipped", "failed")
ALERT_EVENTS = ("new_finding", "sync_failing", "backup_missing", "consent_revoked", "tenant_connected")
ALERT_CHANNELS = ("email", "webhook")
ALERT_STATUSES = ("pending", "sent", "failed", "snoozed")


def _workspace_id() -> Mapped[int]:
    return mapped_column(BigInteger, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False)


def _tenant_link(table: str) -> ForeignKeyConstraint:
    return ForeignKeyConstraint(["tenant_id", "workspace_id"], ["tenants.id", "tenants.workspace_id"],
                                ondelete="CASCADE", onupdate="CASCADE", name=f"fk_{table}_tenant_in_workspace")


# --- tags --------------------------------------------------------------------------------------------


class Tag(db.Model):
    __tablename__ = "tags"
    __table_args__ = (
        UniqueConstraint("workspace_id", "name"),
        UniqueConstraint("id", "workspace_id"),
        CheckConstraint("colour ~ '^#[0-9a-f]{6}$'", name="colour_hex"),
        CheckConstraint("length(name) BETWEEN 1 AND 64", name="name_length"),
    )

    id: Mapped[int] = _pk()
    workspace_id: Mapped[int] = _workspace_id()
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    colour: Mapped[str] = mapped_column(String(7), nullable=False, server_default=TAG_COLOURS[0],
                                        default=TAG_COLOURS[0])
    created_at: Mapped[datetime] = _created_at()


class TenantTag(TenantOwned, db.Model):
    __tablename__ = "tenant_tags"
    __table_args__ = (
        UniqueConstraint("tenant_id", "tag_id"),
        _tenant_link("tenant_tags"),
        ForeignKeyConstraint(["tag_id", "workspace_id"], ["tags.id", "tags.workspace_id"], ondelete="CASCADE",
                             name="fk_tenant_tags_tag_in_workspace"),
        Index("ix_tenant_tags_workspace_id_tag_id", "workspace_id", "tag_id"),
    )

    id: Mapped[int] = _pk()
    tenant_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    tag_id: Mapped[int] = mapped_column(BigInteger, nullable=False)


# --- baselines ---------------------------------------------------------------------------------------


class Baseline(db.Model):
    """A named, versioned set of expected policies (normalized settings), assigned to tenants or tags."""

    __tablename__ = "baselines"
    __table_args__ = (
        UniqueConstraint("workspace_id", "name"),
        UniqueConstraint("id", "workspace_id"),
        CheckConstraint(_in("severity", SEVERITIES), name="severity_known"),
        CheckConstraint("version > 0", name="version_positive"),
    )

    id: Mapped[int] = _pk()
    workspace_id: Mapped[int] = _workspace_id()
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1", default=1)
    # Severity of a deviating setting; a missing policy is one step higher.
    severity: Mapped[str] = mapped_column(String(16), nullable=False, server_default="medium", default="medium")
    # Whether a tenant's policy of a baseline family that matches no baseline policy is a finding.
    report_extra: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false", default=False)
    source_label: Mapped[str | None] = mapped_column(String(400))
    created_by_user_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()

    policies: Mapped[list[BaselinePolicy]] = relationship(
        back_populates="baseline", order_by="BaselinePolicy.position", passive_deletes=True,
        primaryjoin="and_(BaselinePolicy.baseline_id == Baseline.id, BaselinePolicy.workspace_id == Baseline.workspace_id)",
        foreign_keys="[BaselinePolicy.baseline_id, BaselinePolicy.workspace_id]")


class BaselinePolicy(db.Model):
    """One expected policy: its family (policy type, platform), settings, and what may vary.

    `settings` holds normalized flat keys as app.graph.normalize writes them; `any_value`
    lists keys that must exist with whatever value; `expected_assignments` lists the
    target kinds ("allDevices", "group"...) a matched policy must be assigned to.
    """

    __tablename__ = "baseline_policies"
    __table_args__ = (
        ForeignKeyConstraint(["baseline_id", "workspace_id"], ["baselines.id", "baselines.workspace_id"],
                             ondelete="CASCADE", name="fk_baseline_policies_baseline_in_workspace"),
        Index("ix_baseline_policies_baseline_id", "baseline_id"),
    )

    id: Mapped[int] = _pk()
    workspace_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("workspaces.id", ondelete="CASCADE"),
                                              nullable=False)
    baseline_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0", default=0)
    policy_type: Mapped[str] = mapped_column(String(64), nullable=False)
    platform: Mapped[str] = mapped_column(String(32), nullable=False)
    name: Mapped[str] = mapped_column(String(400), nullable=False)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}", default=dict)
    any_value: Mapped[list[str]] = mapped_column(JSONB, nullable=False, server_default="[]", default=list)
    expected_assignments: Mapped[list[str]] = mapped_column(JSONB, nullable=False, server_default="[]",
                                                            default=list)

    baseline: Mapped[Baseline] = relationship(
        back_populates="policies",
        primaryjoin="and_(BaselinePolicy.baseline_id == Baseline.id, BaselinePolicy.workspace_id == Baseline.workspace_id)",
        foreign_keys="[BaselinePolicy.baseline_id, BaselinePolicy.workspace_id]")


class BaselineVersion(db.Model):
    """The content of a baseline as each edit left it (who, when)."""

    __tablename__ = "baseline_versions"
    __table_args__ = (
        UniqueConstraint("baseline_id", "version"),
        ForeignKeyConstraint(["baseline_id", "workspace_id"], ["baselines.id", "baselines.workspace_id"],
                             ondelete="CASCADE", name="fk_baseline_versions_baseline_in_workspace"),
    )

    id: Mapped[int] = _pk()
    workspace_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("workspaces.id", ondelete="CASCADE"),
                                              nullable=False)
    baseline_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    change: Mapped[str] = mapped_column(String(400), nullable=False)
    content: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False)
    created_by_user_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _created_at()


class BaselineAssignment(db.Model):
    """A baseline applies to one tenant, or to every tenant carrying one tag."""

    __tablename__ = "baseline_assignments"
    __table_args__ = (
        CheckConstraint("num_nonnulls(tenant_id, tag_id) = 1", name="tenant_or_tag"),
        ForeignKeyConstraint(["baseline_id", "workspace_id"], ["baselines.id", "baselines.workspace_id"],
                             ondelete="CASCADE", name="fk_baseline_assignments_baseline_in_workspace"),
        ForeignKeyConstraint(["tag_id", "workspace_id"], ["tags.id", "tags.workspace_id"], ondelete="CASCADE",
                             name="fk_baseline_assignments_tag_in_workspace"),
        _tenant_link("baseline_assignments"),
        Index("ux_baseline_assignments_baseline_id_tenant_id", "baseline_id", "tenant_id", unique=True,
              postgresql_where=text("tenant_id IS NOT NULL")),
        Index("ux_baseline_assignments_baseline_id_tag_id", "baseline_id", "tag_id", unique=True,
              postgresql_where=text("tag_id IS NOT NULL")),
        Index("ix_baseline_assignments_workspace_id", "workspace_id"),
    )

    id: Mapped[int] = _pk()
    workspace_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("workspaces.id", ondelete="CASCADE"),
                                              nullable=False)
    baseline_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    tenant_id: Mapped[int | None] = mapped_column(BigInteger)
    tag_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _created_at()


# --- bulk runs ---------------------------------------------------------------------------------------


class BulkRun(db.Model):
    """One bulk action on many tenants: each tenant's outcome is a BulkRunItem."""

    __tablename__ = "bulk_runs"
    __table_args__ = (
        UniqueConstraint("id", "workspace_id"),
        CheckConstraint(_in("action", BULK_ACTIONS), name="action_known"),
        Index("ix_bulk_runs_workspace_id_created_at", "workspace_id", "created_at"),
    )

    id: Mapped[int] = _pk()
    workspace_id: Mapped[int] = _workspace_id()
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    label: Mapped[str] = mapped_column(String(400), nullable=False)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}", default=dict)
    requested_by_user_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _created_at()


class BulkRunItem(TenantOwned, db.Model):
    __tablename__ = "bulk_run_items"
    __table_args__ = (
        UniqueConstraint("bulk_run_id", "tenant_id"),
        ForeignKeyConstraint(["bulk_run_id", "workspace_id"], ["bulk_runs.id", "bulk_runs.workspace_id"],
                             ondelete="CASCADE", name="fk_bulk_run_items_run_in_workspace"),
        _tenant_link("bulk_run_items"),
        CheckConstraint(_in("status", BULK_ITEM_STATUSES), name="status_known"),
        Index("ix_bulk_run_items_tenant_id", "tenant_id"),
    )

    id: Mapped[int] = _pk()
    bulk_run_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    tenant_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="queued", default="queued")
    message: Mapped[str | None] = mapped_column(String(500))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# --- alerts ------------------------------------------------------------------------------------------


class AlertRule(db.Model):
    """When to tell whom: an event (with its threshold), a tag scope with exclusions, one channel."""

    __tablename__ = "alert_rules"
    __table_args__ = (
        UniqueConstraint("id", "workspace_id"),
        UniqueConstraint("workspace_id", "name"),
        CheckConstraint(_in("event", ALERT_EVENTS), name="event_known"),
        CheckConstraint(_in("channel", ALERT_CHANNELS), name="channel_known"),
        CheckConstraint(f"min_severity IS NULL OR {_in('min_severity', SEVERITIES)}", name="min_severity_known"),
        CheckConstraint("threshold BETWEEN 1 AND 365", name="threshold_range"),
    )

    id: Mapped[int] = _pk()
    workspace_id: Mapped[int] = _workspace_id()
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    event: Mapped[str] = mapped_column(String(32), nullable=False)
    min_severity: Mapped[str | None] = mapped_column(String(16))
    # sync_failing: failures in a row; backup_missing: days. 1 elsewhere.
    threshold: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1", default=1)
    include_tag_ids: Mapped[list[int]] = mapped_column(JSONB, nullable=False, server_default="[]", default=list)
    exclude_tag_ids: Mapped[list[int]] = mapped_column(JSONB, nullable=False, server_default="[]", default=list)
    channel: Mapped[str] = mapped_column(String(16), nullable=False)
    # Email: addresses separated by commas; webhook: the URL (checked by app.alerts.webhook).
    target: Mapped[str] = mapped_column(String(1000), nullable=False)
    # The webhook's HMAC-SHA256 key (shown to managers once they set the rule up).
    signing_secret: Mapped[str | None] = mapped_column(String(128))
    is_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="true", default=True)
    snoozed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()


class AlertSnooze(TenantOwned, db.Model):
    """No alert of any rule (rule_id None) or of one rule about this tenant until `until`."""

    __tablename__ = "alert_snoozes"
    __table_args__ = (
        _tenant_link("alert_snoozes"),
        ForeignKeyConstraint(["rule_id", "workspace_id"], ["alert_rules.id", "alert_rules.workspace_id"],
                             ondelete="CASCADE", name="fk_alert_snoozes_rule_in_workspace"),
        Index("ix_alert_snoozes_workspace_id_tenant_id", "workspace_id", "tenant_id"),
    )

    id: Mapped[int] = _pk()
    tenant_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    rule_id: Mapped[int | None] = mapped_column(BigInteger)
    until: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_at: Mapped[datetime] = _created_at()


class AlertEvent(TenantOwned, db.Model):
    """One alert to send: unique per rule, tenant, subject and day (the de-duplication)."""

    __tablename__ = "alert_events"
    __table_args__ = (
        UniqueConstraint("rule_id", "tenant_id", "subject", "day"),
        UniqueConstraint("id", "workspace_id"),
        _tenant_link("alert_events"),
        ForeignKeyConstraint(["rule_id", "workspace_id"], ["alert_rules.id", "alert_rules.workspace_id"],
                             ondelete="CASCADE", name="fk_alert_events_rule_in_workspace"),
        CheckConstraint(_in("status", ALERT_STATUSES), name="status_known"),
        Index("ix_alert_events_workspace_id_created_at", "workspace_id", "created_at"),
    )

    id: Mapped[int] = _pk()
    rule_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    tenant_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    subject: Mapped[str] = mapped_column(String(600), nullable=False)
    day: Mapped[date] = mapped_column(Date, nullable=False)
    title: Mapped[str] = mapped_column(String(400), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default="{}", default=dict)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="pending", default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0", default=0)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created_at()


class AlertDelivery(db.Model):
    """One attempt to deliver an alert event: the log the rule's page shows."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        ForeignKeyConstraint(["alert_event_id", "workspace_id"], ["alert_events.id", "alert_events.workspace_id"],
                             ondelete="CASCADE", name="fk_alert_deliveries_event_in_workspace"),
        Index("ix_alert_deliveries_alert_event_id", "alert_event_id"),
    )

    id: Mapped[int] = _pk()
    workspace_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("workspaces.id", ondelete="CASCADE"),
                                              nullable=False)
    alert_event_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    ok: Mapped[bool] = mapped_column(Boolean, nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = _created_at()


OPERATIONS_TABLES = ("tags", "tenant_tags", "baselines", "baseline_policies", "baseline_versions",
                     "baseline_assignments", "bulk_runs", "bulk_run_items", "alert_rules", "alert_snoozes",
                     "alert_events", "alert_deliveries")
