"""Which alert rules an evaluation's findings match, and the alert events they become.

Called at the end of every evaluation of a tenant (app.drift.evaluate_tenant). For each
enabled rule of the workspace whose tag scope takes the tenant (any included tag, or no
include list; no excluded tag):

- new_finding: a finding detected or reopened now, at or above the rule's severity;
- sync_failing: the tenant's sync-failing finding, at `threshold` failures in a row or more;
- backup_missing ("backup failed or missing for N days"): `threshold` days or more since the
  tenant's last successful backup (or none ever, for a tenant connected or once backed up),
  read from the evaluation's hygiene facts, so a rule of 2 days alerts on day 2 and not when
  the "no successful backup" finding appears (FINDINGS_BACKUP_MAX_AGE_DAYS); and its latest
  backup failing, once per failed set. Not while that finding is acknowledged or accepted;
- consent_revoked: the consent-revoked finding;
- tenant_connected: app.alerts.rules.queue_tenant_connected (the consent callback).

An event is one row per (rule, tenant, subject, day): inserted ON CONFLICT DO NOTHING, so a
subject alerts at most once a day however often it is evaluated. A snoozed rule, or a
tenant snoozed for the rule (or for every rule), records the event as `snoozed` and sends
nothing. Events to send are queued as jobs (app.jobs.enqueue_alert): the worker sends them.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert

from app.extensions import db
from app.models import SEVERITIES
from app.wording import counted
from app.operations_models import AlertEvent, AlertRule, AlertSnooze, TenantTag


EVENT_LABELS = {  # the rule form's choices
    "new_finding": "A new finding at or above a severity",
    "sync_failing": "Sync failing N times in a row",
    "backup_missing": "Backup failed, or none successful for N days",
    "consent_revoked": "Admin consent revoked",
    "tenant_connected": "A tenant newly connected",
}


def describe_rule(rule: AlertRule) -> str:
    """What a rule alerts on, in words, with its own severity or N (the pages' one wording)."""
    if rule.event == "new_finding":
        return f"A new finding of severity {rule.min_severity or 'low'} or above"
    if rule.event == "sync_failing":
        return f"Sync failing {counted(rule.threshold, 'time')} in a row"
    if rule.event == "backup_missing":
        return f"A backup failed, or none successful for {counted(rule.threshold, 'day')}"
    return EVENT_LABELS.get(rule.event, rule.event)


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
    if rule.event == "consent_revoked":
        return finding.kind == "connection"
    return False


def _rules_for(tenant) -> list[AlertRule]:
    return list(db.session.scalars(select(AlertRule).where(AlertRule.workspace_id == tenant.workspace_id,
                                                           AlertRule.is_enabled.is_(True))))


def queue_finding_alerts(tenant, new_findings, holding_findings, now: datetime, facts: dict | None = None) -> int:
    """Queue the alerts of one evaluation: `facts` are its hygiene facts (app.drift.hygiene.hygiene_facts)."""
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
        if rule.event == "backup_missing":
            wanted.extend((rule, *alert) for alert in _backup_alerts(rule, tenant, candidates, facts or {}, now))
            continue
        for finding in candidates:
            if _matches(rule, finding, id(finding) in new_ids):
                wanted.append((rule, finding.subject_key or f"finding:{finding.id}", finding.title, {
                    "finding": {"id": finding.id, "kind": finding.kind, "severity": finding.severity,
                                "title": finding.title, "status": finding.status, "detail": finding.detail}}))
    return _queue(tenant, wanted, now)


def _backup_alerts(rule: AlertRule, tenant, findings, facts: dict, now: datetime) -> list[tuple[str, str, dict]]:
    """(subject, title, payload) of a "backup failed or missing for N days" rule for this tenant."""
    if any(finding.kind == "backup" and finding.status != "open" for finding in findings):
        return []  # someone acknowledged or accepted the missing backups of this tenant already
    alerts = []
    last_success = facts.get("last_success")
    applies = tenant.is_connected or facts.get("has_backups")
    if applies and (last_success is None or last_success <= now - timedelta(days=rule.threshold)):
        days = (now - last_success).days if last_success else None
        title = (f"No successful backup of {tenant.name} yet" if last_success is None else
                 f"No successful backup of {tenant.name} in {days} day(s)")
        alerts.append(("backup_missing", title, {"backup": {
            "lastSuccessfulBackupAt": last_success.isoformat() if last_success else None,
            "lastSuccessfulBackupDaysAgo": days, "thresholdDays": rule.threshold}}))
    latest = facts.get("latest_backup")
    failed_subject = f"backup_failed:{latest['id']}" if latest and latest["status"] == "failed" else None
    if failed_subject and db.session.scalar(select(AlertEvent.id).where(  # once per failed set, not once a day
            AlertEvent.rule_id == rule.id, AlertEvent.tenant_id == tenant.id,
            AlertEvent.subject == failed_subject).limit(1)) is None:
        alerts.append((failed_subject, f"A backup of {tenant.name} failed", {"backup": {
            "setId": latest["id"], "status": "failed", "error": latest["error"]}}))
    return alerts


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
