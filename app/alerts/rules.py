"""Which alert rules an evaluation's findings match, and the alert events they become.

Called at the end of every evaluation of a tenant (app.drift.evaluate_tenant). For each
enabled rule of the workspace whose tag scope takes the tenant (any included tag, or no
include list; no excluded tag):

- new_finding: a finding detected or reopened now, at or above the rule's severity;
- sync_failing: the tenant's sync-failing finding, at `threshold` failures in a row or more;
- backup_missing: the backup finding, `threshold` days or more since the last success (or never);
- consent_revoked: the consent-revoked finding;
- tenant_connected: app.alerts.rules.queue_tenant_connected (the consent callback).

An event is one row per (rule, tenant, subject, day): inserted ON CONFLICT DO NOTHING, so a
subject alerts at most once a day however often it is evaluated. A snoozed rule, or a
tenant snoozed for the rule (or for every rule), records the event as `snoozed` and sends
nothing. Events to send are queued as jobs (app.jobs.enqueue_alert): the worker sends them.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert

from app.extensions import db
from app.models import SEVERITIES
from app.operations_models import AlertEvent, AlertRule, AlertSnooze, TenantTag


def _in_scope(rule: AlertRule, tag_ids: set[int]) -> bool:
    if rule.include_tag_ids and not tag_ids & set(rule.include_tag_ids):
        return False
    return not tag_ids & set(rule.exclude_tag_ids or [])


def _matches(rule: AlertRule, finding, is_new: bool) -> bool:
    detail = finding.detail or {}
    if finding.status not in ("open",):
        return False  # acknowledged or accepted: someone knows already
    if rule.event == "new_finding":
        return is_new and SEVERITIES.index(finding.severity) >= SEVERITIES.index(rule.min_severity or "low")
    if rule.event == "sync_failing":
        return finding.kind == "sync" and detail.get("consecutiveFailures", 0) >= rule.threshold
    if rule.event == "backup_missing":
        days = detail.get("lastSuccessfulBackupDaysAgo")
        return finding.kind == "backup" and (days is None or days >= rule.threshold)
    if rule.event == "consent_revoked":
        return finding.kind == "connection"
    return False


def _rules_for(tenant) -> list[AlertRule]:
    return list(db.session.scalars(select(AlertRule).where(AlertRule.workspace_id == tenant.workspace_id,
                                                           AlertRule.is_enabled.is_(True))))


def queue_finding_alerts(tenant, new_findings, holding_findings, now: datetime) -> int:
    rules = _rules_for(tenant)
    if not rules:
        return 0
    new_ids = {id(f) for f in new_findings}
    candidates = {id(f): f for f in [*new_findings, *holding_findings]}.values()
    wanted = []
    tag_ids = set(db.session.scalars(select(TenantTag.tag_id).where(TenantTag.tenant_id == tenant.id)))
    for rule in rules:
        if not _in_scope(rule, tag_ids):
            continue
        for finding in candidates:
            if _matches(rule, finding, id(finding) in new_ids):
                wanted.append((rule, finding.subject_key or f"finding:{finding.id}", finding.title, {
                    "finding": {"id": finding.id, "kind": finding.kind, "severity": finding.severity,
                                "title": finding.title, "status": finding.status, "detail": finding.detail}}))
    return _queue(tenant, wanted, now)


def queue_tenant_connected(tenant, now: datetime) -> int:
    rules = [rule for rule in _rules_for(tenant) if rule.event == "tenant_connected"]
    if not rules:
        return 0
    tag_ids = set(db.session.scalars(select(TenantTag.tag_id).where(TenantTag.tenant_id == tenant.id)))
    return _queue(tenant, [(rule, "tenant_connected", f"{tenant.name} is connected", {}) for rule in rules
                           if _in_scope(rule, tag_ids)], now)


def _snoozed(rule: AlertRule, tenant, now: datetime) -> bool:
    if rule.snoozed_until and rule.snoozed_until > now:
        return True
    return db.session.scalar(select(AlertSnooze.id).where(
        AlertSnooze.tenant_id == tenant.id, AlertSnooze.until > now,
        or_(AlertSnooze.rule_id.is_(None), AlertSnooze.rule_id == rule.id)).limit(1)) is not None


def _queue(tenant, wanted, now: datetime) -> int:
    from app.jobs import enqueue_alert

    queued = 0
    for rule, subject, title, payload in wanted:
        snoozed = _snoozed(rule, tenant, now)
        event_id = db.session.execute(insert(AlertEvent).values(
            rule_id=rule.id, tenant_id=tenant.id, workspace_id=tenant.workspace_id, subject=subject[:600],
            day=now.date(), title=title[:400], status="snoozed" if snoozed else "pending",
            payload={"event": rule.event, "rule": rule.name, "tenant": {
                "id": str(tenant.external_id), "name": tenant.name}, "title": title, "at": now.isoformat(),
                **payload}).on_conflict_do_nothing(index_elements=["rule_id", "tenant_id", "subject", "day"])
            .returning(AlertEvent.id)).scalar()
        if event_id is not None and not snoozed:
            enqueue_alert(db.session.get(AlertEvent, event_id))
            queued += 1
    return queued
