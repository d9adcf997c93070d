"""Alerts: rules matched at evaluation, sent by email to a real SMTP server and to a real
webhook receiver on loopback, signed, retried, logged, de-duplicated and snoozed."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select, text

from app.alerts.channels import TargetRefused, validate_target
from app.alerts.delivery import deliver
from app.drift import evaluate_tenant
from app.extensions import db
from app.models import BackupSet, Finding
from app.operations_models import AlertDelivery, AlertEvent, AlertRule, AlertSnooze, Tag, TenantTag
from tests.conftest import csrf_token, post_form
from tests.graph_support import RecordingSleep
from tests.smtp_support import smtp_server, smtp_server_session  # noqa: F401

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)


class Receiver:
    """A webhook receiver on loopback: records each request; answers with `statuses` in turn (then the last)."""

    def __init__(self, statuses=(200,)):
        self.requests: list[dict] = []
        self.statuses = list(statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/tenantatlas"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(app):
    """A loopback receiver, which this installation's configuration allows (http, a private address)."""
    app.config.update(ALERT_WEBHOOK_ALLOW_PRIVATE=True, ALERT_WEBHOOK_ALLOW_HTTP=True)
    made = []

    def make(statuses=(200,)):
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for item in made:
        item.close()
    app.config.update(ALERT_WEBHOOK_ALLOW_PRIVATE=False, ALERT_WEBHOOK_ALLOW_HTTP=False)


def rule(db_session, workspace, **values) -> AlertRule:
    values = {"name": "Consent", "event": "consent_revoked", "channel": "email", "target": "noc@msp.example", **values}
    if values["channel"] == "webhook":
        values.setdefault("signing_secret", "s3cret-for-tests")
    row = AlertRule(workspace_id=workspace.id, **values)
    db_session.add(row)
    db_session.commit()
    return row


def revoked(db_session, tenant):
    tenant.connection_status, tenant.connection_error = "consent_revoked", "AADSTS700016"
    db_session.commit()
    return tenant


def events(rule_row):
    return db.session.scalars(select(AlertEvent).where(AlertEvent.rule_id == rule_row.id).order_by(AlertEvent.id)).all()


def alert_jobs():
    return [row[0] for row in db.session.execute(text(
        "SELECT args FROM procrastinate_jobs WHERE task_name = 'deliver_alert' ORDER BY id"))]


def test_an_email_alert_reaches_the_smtp_server_with_the_tenant_and_the_finding(
        world, db_session, smtp_server):  # noqa: F811
    noc = rule(db_session, world.a)
    evaluate_tenant(revoked(db_session, world.tenant_a), NOW)
    [event] = events(noc)
    assert event.status == "pending" and [job["alert_event_id"] for job in alert_jobs()] == [event.id]
    assert deliver(event.id) == "sent"
    [mail] = smtp_server.received
    assert mail.recipients == ["noc@msp.example"]
    assert mail.subject.strip() == "[TenantAtlas] Admin consent was revoked (or the app removed) in this tenant"
    assert world.tenant_a.name in mail.text and str(world.tenant_a.external_id) in mail.text
    assert "Severity: critical" in mail.text
    assert db_session.scalar(select(func.count()).select_from(AlertDelivery)
                             .where(AlertDelivery.alert_event_id == event.id, AlertDelivery.ok.is_(True))) == 1


def test_a_webhook_alert_is_signed_with_the_rules_secret(app, world, db_session, receiver):
    hook = receiver()
    noc = rule(db_session, world.a, channel="webhook", target=hook.url)
    evaluate_tenant(revoked(db_session, world.tenant_a), NOW)
    [event] = events(noc)
    with app.app_context():  # as in the worker: the installation's configuration applies
        assert deliver(event.id) == "sent"
    [request] = hook.requests
    expected = "sha256=" + hmac.new(b"s3cret-for-tests", request["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request["headers"]["X-TenantAtlas-Signature"], expected)
    payload = json.loads(request["body"])
    assert payload["event"] == "consent_revoked" and payload["tenant"]["name"] == world.tenant_a.name
    assert request["headers"]["X-TenantAtlas-Delivery"] == str(event.id)


def test_a_failing_webhook_is_retried_with_backoff_and_every_attempt_logged(app, world, db_session, receiver):
    hook = receiver(statuses=(503, 500, 500))
    noc = rule(db_session, world.a, channel="webhook", target=hook.url)
    evaluate_tenant(revoked(db_session, world.tenant_a), NOW)
    [event] = events(noc)
    sleep = RecordingSleep()
    with app.app_context():
        assert deliver(event.id, sleep=sleep) == "failed"
    assert len(hook.requests) == 3 and sleep.waits == [2, 4]
    attempts = db_session.scalars(select(AlertDelivery).where(AlertDelivery.alert_event_id == event.id)
                                  .order_by(AlertDelivery.attempt)).all()
    assert [(a.attempt, a.ok, a.status_code) for a in attempts] == [(1, False, 503), (2, False, 500), (3, False, 500)]

    hook.statuses = [500, 200]
    recovering = rule(db_session, world.a, name="Recovering", channel="webhook", target=hook.url)
    evaluate_tenant(world.tenant_a, NOW)
    [event] = events(recovering)
    with app.app_context():
        assert deliver(event.id, sleep=RecordingSleep()) == "sent"
    assert [a.ok for a in db_session.scalars(select(AlertDelivery).where(
        AlertDelivery.alert_event_id == event.id).order_by(AlertDelivery.attempt))] == [False, True]


def test_alerts_are_deduplicated_per_day_and_snoozes_send_nothing(world, db_session, smtp_server):  # noqa: F811
    noc = rule(db_session, world.a)
    tenant = revoked(db_session, world.tenant_a)
    for _ in range(3):
        evaluate_tenant(tenant, NOW)
    assert len(events(noc)) == 1
    evaluate_tenant(tenant, NOW + timedelta(days=1))  # still revoked the next day: one more
    assert len(events(noc)) == 2

    noc.snoozed_until = NOW + timedelta(days=3)
    db_session.commit()
    evaluate_tenant(tenant, NOW + timedelta(days=2))
    assert events(noc)[-1].status == "snoozed"
    noc.snoozed_until = None
    db_session.add(AlertSnooze(tenant_id=tenant.id, workspace_id=tenant.workspace_id, rule_id=None,
                               until=NOW + timedelta(days=10)))
    db_session.commit()
    evaluate_tenant(tenant, NOW + timedelta(days=3))
    assert [e.status for e in events(noc)] == ["pending", "pending", "snoozed", "snoozed"]
    assert len(alert_jobs()) == 2


def test_rules_are_scoped_to_tags_with_exclusions_and_by_severity(world, db_session):
    vip = Tag(workspace_id=world.a.id, name="VIP")
    lab = Tag(workspace_id=world.a.id, name="Lab")
    db_session.add_all([vip, lab])
    db_session.flush()
    db_session.add_all([TenantTag(tenant_id=world.tenant_a.id, tag_id=vip.id, workspace_id=world.a.id),
                        TenantTag(tenant_id=world.tenant_a2.id, tag_id=vip.id, workspace_id=world.a.id),
                        TenantTag(tenant_id=world.tenant_a2.id, tag_id=lab.id, workspace_id=world.a.id)])
    db_session.commit()
    scoped = rule(db_session, world.a, name="VIP not lab", event="new_finding", min_severity="low",
                  include_tag_ids=[vip.id], exclude_tag_ids=[lab.id])
    critical_only = rule(db_session, world.a, name="Critical", event="new_finding", min_severity="critical")
    high_up = rule(db_session, world.a, name="High", event="new_finding", min_severity="high")
    revoked(db_session, world.tenant_a)  # consent revoked: critical
    world.tenant_a2.connection_status, world.tenant_a2.last_sync_status = "failing", "failed"
    world.tenant_a2.consecutive_failures = 1  # sync failing once: medium; connected, never backed up: high
    db_session.commit()
    for tenant in (world.tenant_a, world.tenant_a2):
        evaluate_tenant(tenant, NOW)
    assert {e.tenant_id for e in events(scoped)} == {world.tenant_a.id}  # tenant A2 is in the lab
    assert {e.payload["finding"]["severity"] for e in events(critical_only)} == {"critical"}
    assert {(e.tenant_id, e.payload["finding"]["severity"]) for e in events(high_up)} == {
        (world.tenant_a.id, "critical"), (world.tenant_a2.id, "high")}


@pytest.mark.parametrize("url", ["https://127.0.0.1/hook", "https://10.1.2.3/hook", "https://[::1]/hook",
                                 "https://169.254.169.254/latest/meta-data", "http://hooks.example.com/x",
                                 "https://user:pw@hooks.example.com/x", "ftp://hooks.example.com/x", "not a url"])
def test_internal_or_unsafe_webhook_targets_are_refused(app, url):
    with app.app_context(), pytest.raises(TargetRefused):
        validate_target("webhook", url, resolve=lambda host: ["203.0.113.10"] if "example" in host else [host.strip("[]")])


def test_a_public_name_that_resolves_to_a_private_address_is_refused(app):
    with app.app_context():
        with pytest.raises(TargetRefused, match="internal address"):
            validate_target("webhook", "https://hooks.example.com/x", resolve=lambda host: ["192.168.1.20"])
        assert validate_target("webhook", "https://hooks.example.com/x",
                               resolve=lambda host: ["93.184.215.14"]) == "https://hooks.example.com/x"


def test_the_rule_form_refuses_an_internal_webhook_and_creates_a_valid_email_rule(ada, world, db_session):
    url = f"/admin/w/{world.a.slug}/alerts"
    response = ada.post(url, data={"name": "Hook", "event": "consent_revoked", "channel": "webhook",
                                   "target": "https://127.0.0.1:8443/hook", "threshold": "1",
                                   "csrf_token": csrf_token(ada)})
    assert response.status_code == 400 and "internal address" in response.get_data(as_text=True)
    post_form(ada, url, {"name": "NOC", "event": "sync_failing", "threshold": "3", "channel": "email",
                         "target": "noc@msp.example, Oncall@MSP.example"})
    created = db_session.scalar(select(AlertRule).where(AlertRule.workspace_id == world.a.id))
    assert (created.event, created.threshold, created.target) == ("sync_failing", 3,
                                                                  "noc@msp.example, oncall@msp.example")


def finished_backup(db_session, tenant, status, finished_at, error=None):
    row = BackupSet(tenant_id=tenant.id, workspace_id=tenant.workspace_id, name=f"{status} backup", status=status,
                    started_at=finished_at - timedelta(minutes=5), finished_at=finished_at, triggered_by="schedule",
                    error=error)
    db_session.add(row)
    db_session.commit()
    return row


def test_a_backup_missing_rule_alerts_at_its_own_threshold_not_at_the_findings_window(world, db_session):
    """N = 3 days alerts on day 3, although "no successful backup" becomes a finding only after 7."""
    tenant = world.tenant_a2
    tenant.connection_status = "connected"
    finished_backup(db_session, tenant, "completed", NOW - timedelta(days=2, hours=12))
    three_days = rule(db_session, world.a, name="No backup 3 days", event="backup_missing", threshold=3)
    evaluate_tenant(tenant, NOW)
    assert events(three_days) == []  # 2.5 days: not yet
    evaluate_tenant(tenant, NOW + timedelta(days=1))
    [event] = events(three_days)
    assert event.subject == "backup_missing"
    assert event.payload["backup"]["lastSuccessfulBackupDaysAgo"] == 3
    assert "in 3 day(s)" in event.title
    assert not db.session.scalars(select(Finding).where(Finding.tenant_id == tenant.id,
                                                         Finding.kind == "backup")).all()


def test_a_failed_backup_alerts_once_per_failed_set_and_a_later_success_stops_it(world, db_session):
    tenant = world.tenant_a2
    tenant.connection_status = "connected"
    finished_backup(db_session, tenant, "completed", NOW - timedelta(hours=30))
    failed = finished_backup(db_session, tenant, "failed", NOW - timedelta(hours=1), error="Graph refused it")
    backups = rule(db_session, world.a, name="Backups", event="backup_missing", threshold=7)
    evaluate_tenant(tenant, NOW)
    evaluate_tenant(tenant, NOW + timedelta(days=1))  # the next day, still the same failed set: no second alert
    [event] = events(backups)
    assert (event.subject, event.payload["backup"]["error"]) == (f"backup_failed:{failed.id}", "Graph refused it")
    finished_backup(db_session, tenant, "completed", NOW + timedelta(days=1, hours=1))
    evaluate_tenant(tenant, NOW + timedelta(days=2))
    assert len(events(backups)) == 1


def test_an_acknowledged_no_backup_finding_silences_backup_alerts(world, db_session):
    tenant = world.tenant_a2
    tenant.connection_status = "connected"
    db_session.commit()
    evaluate_tenant(tenant, NOW)  # never backed up: the finding, no rule yet
    finding = db.session.scalar(select(Finding).where(Finding.tenant_id == tenant.id, Finding.kind == "backup"))
    finding.status = "acknowledged"
    db_session.commit()
    backups = rule(db_session, world.a, name="Backups", event="backup_missing", threshold=1)
    evaluate_tenant(tenant, NOW + timedelta(days=1))
    assert events(backups) == []


def test_sync_failing_and_backup_missing_alert_from_their_thresholds_and_a_new_connection_alerts(world, db_session):
    failing = rule(db_session, world.a, name="Failing 3", event="sync_failing", threshold=3)
    stale = rule(db_session, world.a, name="No backup 10 days", event="backup_missing", threshold=10)
    connected = rule(db_session, world.a, name="Connected", event="tenant_connected")
    tenant = world.tenant_a2  # no backup at all, never connected
    tenant.connection_status, tenant.last_sync_status = "failing", "failed"
    for failures in (1, 2, 3):
        tenant.consecutive_failures = failures
        db_session.commit()
        evaluate_tenant(tenant, NOW + timedelta(days=failures))  # a day apart: not de-duplicated
    assert [e.payload["finding"]["detail"]["consecutiveFailures"] for e in events(failing)] == [3]
    assert len(events(stale)) == 3  # never backed up: as old as can be, every day

    from app.alerts.rules import queue_tenant_connected

    assert queue_tenant_connected(tenant, NOW) == 1
    assert queue_tenant_connected(tenant, NOW) == 0  # the same day: once
    assert [e.title for e in events(connected)] == [f"{tenant.name} is connected"]


def test_de_duplication_is_per_subject_two_findings_of_one_tenant_on_one_day_are_two_alerts(world, db_session):
    from app.models import TenantPermission

    everything = rule(db_session, world.a, name="All", event="new_finding", min_severity="low")
    tenant = world.tenant_a2
    tenant.connection_status = "connected"
    db_session.add_all([TenantPermission(tenant_id=tenant.id, workspace_id=tenant.workspace_id,
                                         permission_name=name, status="missing")
                        for name in ("A.Read.All", "B.Read.All")])
    db_session.commit()
    evaluate_tenant(tenant, NOW)
    evaluate_tenant(tenant, NOW + timedelta(hours=1))  # the same day again: nothing new
    subjects = [event.subject for event in events(everything)]
    assert sorted(subjects) == ["hygiene:backup_missing", "hygiene:permission_missing:A.Read.All",
                                "hygiene:permission_missing:B.Read.All"]


def test_snoozing_one_tenant_for_one_rule_on_the_page_silences_only_that_pair_and_can_be_ended(ada, world,
                                                                                                db_session):
    first = rule(db_session, world.a, name="One")
    second = rule(db_session, world.a, name="Two")
    url = f"/admin/w/{world.a.slug}/alerts/{first.id}"
    tenant = world.tenant_a
    assert post_form(ada, f"{url}/snooze-tenant", {"tenant": str(tenant.external_id), "hours": "24"}).status_code == 302
    assert post_form(ada, f"{url}/snooze-tenant", {"tenant": str(tenant.external_id), "hours": "72"}).status_code == 302
    [snooze] = db_session.scalars(select(AlertSnooze)).all()  # snoozing again replaces, never stacks
    assert snooze.rule_id == first.id and snooze.until > datetime.now(timezone.utc) + timedelta(hours=71)
    body = ada.get(url).get_data(as_text=True)
    assert "Tenants snoozed for this rule" in body and tenant.name in body
    tenant.connection_status = "consent_revoked"
    evaluate_tenant(tenant, datetime.now(timezone.utc))
    assert dict(db.session.execute(select(AlertEvent.rule_id, AlertEvent.status)).all()) == {
        first.id: "snoozed", second.id: "pending"}

    response = post_form(ada, f"{url}/snooze-tenant", {"tenant": str(tenant.external_id), "hours": "0"})
    assert response.status_code == 302
    assert db_session.scalars(select(AlertSnooze)).all() == []  # 0 hours ends it; it never makes a new one
    assert "Tenants snoozed for this rule" not in ada.get(url).get_data(as_text=True)


def test_a_tenant_snooze_of_another_workspaces_tenant_says_no_such_tenant_and_stores_nothing(ada, world, db_session):
    mine = rule(db_session, world.a, name="One")
    url = f"/admin/w/{world.a.slug}/alerts/{mine.id}"
    for given in (str(world.tenant_b.external_id), world.tenant_b.name, "not a tenant", "", "x" * 5000):
        response = post_form(ada, f"{url}/snooze-tenant", {"tenant": given, "hours": "24"}, follow_redirects=True)
        body = response.get_data(as_text=True)
        assert response.status_code == 200 and "No tenant of this workspace has that name or tenant id" in body
        assert world.tenant_b.name not in body
    assert db_session.scalars(select(AlertSnooze)).all() == []


def test_a_tenant_to_snooze_is_found_by_its_name_its_id_or_a_pasted_page_address(ada, world, db_session):
    mine = rule(db_session, world.a, name="One")
    url = f"/admin/w/{world.a.slug}/alerts/{mine.id}"
    tenant = world.tenant_a
    for given in (f"  {tenant.name.upper()} ", f" {tenant.external_id}\n",
                  f"https://atlas.example/admin/t/{tenant.external_id}/policies?x=1"):
        response = post_form(ada, f"{url}/snooze-tenant", {"tenant": given, "hours": "24"}, follow_redirects=True)
        assert f"Alerts of One about {tenant.name} are snoozed for 1 day." in response.get_data(as_text=True), given
        [snooze] = db_session.scalars(select(AlertSnooze)).all()
        assert snooze.tenant_id == tenant.id

