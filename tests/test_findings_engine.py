"""Hygiene findings computed from the tenant's rows, their lifecycle, and triage through the pages."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from app.drift import evaluate_tenant
from app.drift.findings import triage
from app.extensions import db
from app.models import AuditLog, BackupSet, Finding, TenantPermission
from tests.conftest import page, post_form, tenant_url

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def computed(tenant, kind=None):
    statement = select(Finding).where(Finding.tenant_id == tenant.id, Finding.subject_key.is_not(None))
    if kind:
        statement = statement.where(Finding.kind == kind)
    return list(db.session.scalars(statement.order_by(Finding.id)))


def backup(db_session, tenant, status, finished_at):
    db_session.add(BackupSet(tenant_id=tenant.id, workspace_id=tenant.workspace_id, name=f"{status} backup",
                             status=status, started_at=finished_at - timedelta(minutes=5), finished_at=finished_at,
                             triggered_by="schedule"))
    db_session.flush()


def test_no_backup_finding_only_without_a_successful_backup_in_the_window(db_session, make_workspace, make_tenant):
    tenant = make_tenant(make_workspace())
    backup(db_session, tenant, "completed", NOW - timedelta(days=9))
    backup(db_session, tenant, "failed", NOW - timedelta(days=1))
    evaluate_tenant(tenant, NOW)
    [finding] = computed(tenant, "backup")
    assert finding.title == "No successful backup in the last 7 days" and finding.status == "open"
    assert finding.detail["lastSuccessfulBackupDaysAgo"] == 9

    backup(db_session, tenant, "partial", NOW - timedelta(hours=2))  # a partial backup is a successful one
    evaluate_tenant(tenant, NOW)
    [finding] = computed(tenant, "backup")
    assert finding.status == "resolved" and finding.resolved_at == NOW


def test_a_tenant_never_connected_and_never_backed_up_has_no_backup_finding(db_session, make_workspace, make_tenant):
    tenant = make_tenant(make_workspace())
    evaluate_tenant(tenant, NOW)
    assert computed(tenant) == []
    tenant.connection_status = "connected"
    evaluate_tenant(tenant, NOW)
    [finding] = computed(tenant, "backup")
    assert finding.severity == "high" and finding.detail["lastSuccessfulBackupAt"] is None


def test_sync_failing_consent_revoked_and_missing_permissions_follow_the_tenant(db_session, make_workspace,
                                                                                 make_tenant):
    tenant = make_tenant(make_workspace())
    backup(db_session, tenant, "completed", NOW - timedelta(hours=1))
    tenant.connection_status, tenant.last_sync_status, tenant.consecutive_failures = "failing", "failed", 2
    tenant.connection_error = "Graph answered 503"
    db_session.add(TenantPermission(tenant_id=tenant.id, workspace_id=tenant.workspace_id,
                                    permission_name="Group.Read.All", status="missing"))
    db_session.flush()
    evaluate_tenant(tenant, NOW)
    assert {(f.kind, f.severity, f.status) for f in computed(tenant)} == {
        ("sync", "medium", "open"), ("permission", "high", "open")}

    tenant.connection_status = "consent_revoked"
    evaluate_tenant(tenant, NOW)
    # Consent gone: nothing is known of what is granted any more (as the portfolio's dash says).
    assert {(f.kind, f.status) for f in computed(tenant)} == {
        ("sync", "resolved"), ("permission", "resolved"), ("connection", "open")}

    tenant.connection_status, tenant.last_sync_status, tenant.consecutive_failures = "connected", "succeeded", 0
    db_session.execute(TenantPermission.__table__.update().where(TenantPermission.tenant_id == tenant.id)
                       .values(status="granted"))
    evaluate_tenant(tenant, NOW)
    assert {f.status for f in computed(tenant)} == {"resolved"}


def test_an_archived_tenant_is_not_evaluated(db_session, make_workspace, make_tenant):
    tenant = make_tenant(make_workspace())
    tenant.connection_status, tenant.status = "consent_revoked", "archived"
    evaluate_tenant(tenant, NOW)
    assert computed(tenant) == []


def test_accepting_a_finding_on_the_page_needs_a_reason_keeps_it_and_is_audited(ada, world, db_session):
    tenant = world.tenant_a
    tenant.connection_status = "consent_revoked"
    evaluate_tenant(tenant, NOW)
    db_session.commit()
    [finding] = computed(tenant, "connection")
    url = tenant_url(tenant, f"/findings/{finding.id}/accept")
    post_form(ada, url, {"reason": "   "})
    db_session.refresh(finding)
    assert finding.status == "open"
    assert ada.post(url, data={"reason": "x", "until": "not-a-date",
                               "csrf_token": _token(ada, tenant)}).status_code == 400
    post_form(ada, url, {"reason": "Customer re-consents next week", "until": "2099-01-31"})
    db_session.refresh(finding)
    assert finding.status == "accepted" and finding.accepted_until.date().isoformat() == "2099-02-01"
    assert finding.detail["acceptance"]["by"] == "Ada"
    entry = db_session.scalar(select(AuditLog).where(AuditLog.action == "finding.accept"))
    assert entry.details["after"] == {"status": "accepted", "note": "Customer re-consents next week",
                                      "until": "2099-02-01"}
    body = page(ada, tenant_url(tenant, "/findings?status=all"))
    assert "Customer re-consents next week" in body and "accepted by Ada" in body
    evaluate_tenant(tenant, NOW)  # a later run respects it
    db_session.refresh(finding)
    assert finding.status == "accepted"
    post_form(ada, tenant_url(tenant, f"/findings/{finding.id}/reopen"))
    db_session.refresh(finding)
    assert finding.status == "open" and "acceptance" not in finding.detail
    assert [e["event"] for e in finding.history] == ["detected", "accept", "reopen"]
    assert finding.history[1]["by"] == "Ada" and finding.history[1]["note"] == "Customer re-consents next week"


def _token(client, tenant):
    from tests.conftest import csrf_token

    return csrf_token(client)


def test_the_dashboard_never_shows_no_backup_beside_a_fresh_completed_backup(ada, world, db_session):
    tenant = world.tenant_a  # the fixture gave it a completed backup set; make it finish an hour ago
    from datetime import datetime as _dt

    now = _dt.now(timezone.utc)
    db_session.execute(BackupSet.__table__.update().where(BackupSet.tenant_id == tenant.id)
                       .values(status="completed", started_at=now - timedelta(hours=2), finished_at=now - timedelta(hours=1)))
    tenant.connection_status = "connected"
    db_session.commit()
    evaluate_tenant(tenant)
    db_session.commit()
    body = page(ada, tenant_url(tenant, ""))
    assert "No successful backup" not in body
    db_session.execute(BackupSet.__table__.update().where(BackupSet.tenant_id == tenant.id)
                       .values(finished_at=now - timedelta(days=8), started_at=now - timedelta(days=8)))
    db_session.commit()
    evaluate_tenant(tenant)
    db_session.commit()
    assert "No successful backup in the last 7 days" in page(ada, tenant_url(tenant, ""))


def test_an_acknowledgement_and_a_reopen_of_a_computed_finding_survive_re_runs(world, db_session):
    tenant = world.tenant_a
    tenant.connection_status = "consent_revoked"
    evaluate_tenant(tenant, NOW)
    db_session.commit()
    [finding] = computed(tenant, "connection")
    triage(finding, "acknowledge", by="Ada", now=NOW, note="customer called")
    db_session.commit()
    for _ in range(3):
        evaluate_tenant(tenant, NOW + timedelta(hours=1))
    db_session.commit()
    db_session.refresh(finding)
    assert finding.status == "acknowledged" and finding.detail["acknowledgement"]["by"] == "Ada"
    triage(finding, "reopen", by="Ada", now=NOW, note="")
    evaluate_tenant(tenant, NOW + timedelta(hours=2))
    db_session.commit()
    db_session.refresh(finding)
    assert finding.status == "open" and finding.history[-1]["event"] == "reopen" and finding.history[-1]["by"] == "Ada"
