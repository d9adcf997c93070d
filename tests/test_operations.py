"""Tags, bulk actions, CSV exports and the baseline pages, through the web app."""
from __future__ import annotations

import csv
import io
import uuid

from sqlalchemy import func, select, text

from app.bulk import carry_out_item
from app.extensions import db
from app.models import AuditLog, Finding, Policy, SyncRun
from app.operations_models import (Baseline, BaselineAssignment, BaselinePolicy, BaselineVersion, BulkRun,
                                   BulkRunItem, Tag, TenantTag)
from app.row_security import working_in_workspace
from tests.conftest import csrf_token, enter, page, post_form, sign_in, tenant_url


def jobs(task_name: str) -> list[dict]:
    return [row[0] for row in db.session.execute(text(
        "SELECT args FROM procrastinate_jobs WHERE task_name = :t ORDER BY id"), {"t": task_name})]


def read_csv(response) -> list[list[str]]:
    assert response.status_code == 200, response.status_code
    assert response.mimetype == "text/csv"
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def tag(db_session, workspace, name="Healthcare", *tenants):
    row = Tag(workspace_id=workspace.id, name=name)
    db_session.add(row)
    db_session.flush()
    db_session.add_all([TenantTag(tenant_id=t.id, tag_id=row.id, workspace_id=workspace.id) for t in tenants])
    db_session.commit()
    return row


# --- tags -------------------------------------------------------------------------------------------------


def test_tags_are_created_renamed_recoloured_and_deleted_by_managers(ada, world, db_session):
    base = f"/admin/w/{world.a.slug}/tags"
    post_form(ada, base, {"name": "  Health   care ", "colour": "#198754"})
    created = db_session.scalar(select(Tag).where(Tag.workspace_id == world.a.id))
    assert (created.name, created.colour) == ("Health care", "#198754")
    assert ada.post(base, data={"name": "Health care", "colour": "#198754",
                                "csrf_token": csrf_token(ada)}).status_code == 400  # the name is taken
    assert ada.post(base, data={"name": "x" * 65, "csrf_token": csrf_token(ada)}).status_code == 400
    assert ada.post(base, data={"name": "Y", "colour": "red", "csrf_token": csrf_token(ada)}).status_code == 400
    post_form(ada, f"{base}/{created.id}", {"name": "Healthcare", "colour": "#dc3545"})
    db_session.refresh(created)
    assert (created.name, created.colour) == ("Healthcare", "#dc3545")
    assert "tag-dc3545" in page(ada, base)
    post_form(ada, f"{base}/{created.id}/delete")
    assert db_session.scalar(select(func.count()).select_from(Tag).where(Tag.workspace_id == world.a.id)) == 0
    assert db_session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action.like("tag.%"))) == 3


def test_deleting_a_tag_that_carries_a_baseline_evaluates_its_tenants_again(ada, world, db_session):
    managed = tag(db_session, world.a, "Managed", world.tenant_a, world.tenant_a2)
    plain = tag(db_session, world.a, "Plain", world.tenant_a)
    baseline = Baseline(workspace_id=world.a.id, name="Std")
    db_session.add(baseline)
    db_session.flush()
    db_session.add(BaselineAssignment(workspace_id=world.a.id, baseline_id=baseline.id, tag_id=managed.id))
    db_session.commit()
    post_form(ada, f"/admin/w/{world.a.slug}/tags/{plain.id}/delete")
    assert jobs("evaluate_tenant_findings") == []  # no baseline came through that one
    post_form(ada, f"/admin/w/{world.a.slug}/tags/{managed.id}/delete")
    assert sorted(job["tenant_id"] for job in jobs("evaluate_tenant_findings")) == sorted(
        [world.tenant_a.id, world.tenant_a2.id])
    assert db_session.scalar(select(func.count()).select_from(BaselineAssignment)) == 0


def test_another_workspaces_tag_is_a_404(ada, world, db_session):
    theirs = tag(db_session, world.b, "Bravo only")
    response = ada.post(f"/admin/w/{world.a.slug}/tags/{theirs.id}/delete", data={"csrf_token": csrf_token(ada)})
    assert response.status_code == 404
    assert db_session.get(Tag, theirs.id) is not None


def test_the_portfolio_filters_by_tag_and_the_switcher_search_matches_tags(ada, world, db_session):
    healthcare = tag(db_session, world.a, "Healthcare", world.tenant_a2)
    body = page(ada, f"/admin/w/{world.a.slug}/managed-tenants?tag={healthcare.id}")
    assert world.tenant_a2.name in body and world.tenant_a.name not in body
    theirs = tag(db_session, world.b, "Bravo", world.tenant_b)
    for foreign in (theirs.id, 999999):  # another workspace's tag, no tag at all: nothing matches
        body = page(ada, f"/admin/w/{world.a.slug}/managed-tenants?tag={foreign}")
        assert world.tenant_a.name not in body and world.tenant_b.name not in body
    assert ada.get(f"/admin/w/{world.a.slug}/managed-tenants?tag=abc").status_code == 200  # ignored
    found = ada.get(f"/admin/w/{world.a.slug}/tenant-switcher/search?q=health").get_json()["results"]
    assert [r["name"] for r in found] == [world.tenant_a2.name]


# --- bulk ---------------------------------------------------------------------------------------------------


def test_bulk_sync_of_a_filtered_selection_runs_one_job_per_tenant(ada, world, db_session):
    pilot = tag(db_session, world.a, "Pilot", world.tenant_a, world.tenant_a2)
    for tenant in (world.tenant_a, world.tenant_a2):
        tenant.connection_status = "connected"
    world.tenant_a2.status = "archived"
    db_session.commit()
    response = post_form(ada, f"/admin/w/{world.a.slug}/bulk?tag={pilot.id}&status=all",
                         {"action": "sync", "scope": "filter"})
    run = db_session.scalar(select(BulkRun).where(BulkRun.workspace_id == world.a.id))
    assert response.headers["Location"].endswith(f"/bulk/{run.id}")
    items = db_session.scalars(select(BulkRunItem).where(BulkRunItem.bulk_run_id == run.id)).all()
    assert {item.tenant_id for item in items} == {world.tenant_a.id, world.tenant_a2.id}
    assert sorted(job["item_id"] for job in jobs("bulk_run_item")) == sorted(item.id for item in items)

    with working_in_workspace(world.a.id):  # what the worker does, item by item
        outcomes = {item.tenant_id: carry_out_item(item.id) for item in items}
    assert outcomes == {world.tenant_a.id: "succeeded", world.tenant_a2.id: "skipped"}
    assert db_session.scalar(select(func.count()).select_from(SyncRun).where(
        SyncRun.tenant_id == world.tenant_a.id, SyncRun.requested_by_user_id == world.ada.id)) == 1
    assert len(jobs("sync_tenant")) == 1
    body = page(ada, f"/admin/w/{world.a.slug}/bulk/{run.id}")
    assert "Archived: unarchive it to sync." in body and "Sync run" in body


def test_bulk_backup_queues_one_backup_per_connected_tenant_and_says_why_it_skipped_the_others(ada, world,
                                                                                               db_session):
    from app.models import BackupSet

    world.tenant_a.connection_status = "connected"  # A2 stays not connected
    db_session.commit()
    response = post_form(ada, f"/admin/w/{world.a.slug}/bulk", {
        "action": "backup", "scope": "selected",
        "tenant": [str(world.tenant_a.external_id), str(world.tenant_a2.external_id)]})
    run = db_session.scalar(select(BulkRun).where(BulkRun.workspace_id == world.a.id))
    assert response.status_code == 302 and run.label == "Back up now"
    items = db_session.scalars(select(BulkRunItem).where(BulkRunItem.bulk_run_id == run.id)).all()
    with working_in_workspace(world.a.id):
        outcomes = {item.tenant_id: carry_out_item(item.id) for item in items}
    assert outcomes == {world.tenant_a.id: "succeeded", world.tenant_a2.id: "skipped"}
    queued = db_session.scalars(select(BackupSet).where(BackupSet.tenant_id == world.tenant_a.id,
                                                        BackupSet.status == "pending")).all()
    assert len(queued) == 1 and queued[0].triggered_by_user_id == world.ada.id
    assert len(jobs("backup_tenant")) == 1
    assert "Not connected: a manager connects it first." in page(ada, f"/admin/w/{world.a.slug}/bulk/{run.id}")


def test_a_forged_selection_with_another_workspaces_tenant_is_a_404_and_queues_nothing(ada, world, db_session):
    url = f"/admin/w/{world.a.slug}/bulk"
    token = csrf_token(ada)
    forged = {"action": "sync", "scope": "selected", "csrf_token": token,
              "tenant": [str(world.tenant_a.external_id), str(world.tenant_b.external_id)]}
    assert ada.post(url, data=forged).status_code == 404
    unknown = {**forged, "tenant": [str(world.tenant_a.external_id), str(uuid.uuid4())]}
    assert ada.post(url, data=unknown).status_code == 404
    malformed = {**forged, "tenant": [str(world.tenant_a.external_id), "1 OR 1=1"]}
    response = ada.post(url, data=malformed)
    assert response.status_code == 400 and "is not a tenant id" in response.get_data(as_text=True)
    assert ada.post(url, data={**forged, "tenant": []}).status_code == 400
    theirs = tag(db_session, world.b, "Bravo tag")
    assert ada.post(url, data={**forged, "action": "add_tag", "tag_id": str(theirs.id),
                               "tenant": [str(world.tenant_a.external_id)]}).status_code == 404
    assert db_session.scalar(select(func.count()).select_from(BulkRun)) == 0
    assert jobs("bulk_run_item") == []


def test_bulk_add_and_remove_tag_and_assign_baseline(ada, world, db_session):
    managed = tag(db_session, world.a, "Managed")
    baseline = Baseline(workspace_id=world.a.id, name="Std")
    db_session.add(baseline)
    db_session.commit()
    selection = [str(world.tenant_a.external_id), str(world.tenant_a2.external_id)]
    url = f"/admin/w/{world.a.slug}/bulk"
    for action, extra in (("add_tag", {"tag_id": managed.id}), ("assign_baseline", {"baseline_id": baseline.id}),
                          ("remove_tag", {"tag_id": managed.id})):
        post_form(ada, url, {"action": action, "scope": "selected", "tenant": selection, **extra})
        run = db_session.scalar(select(BulkRun).where(BulkRun.action == action))
        with working_in_workspace(world.a.id):
            for item in db_session.scalars(select(BulkRunItem).where(BulkRunItem.bulk_run_id == run.id)).all():
                assert carry_out_item(item.id) == "succeeded"
        if action == "add_tag":
            assert db_session.scalar(select(func.count()).select_from(TenantTag)
                                     .where(TenantTag.tag_id == managed.id)) == 2
    assert db_session.scalar(select(func.count()).select_from(TenantTag).where(TenantTag.tag_id == managed.id)) == 0
    assert db_session.scalar(select(func.count()).select_from(BaselineAssignment)
                             .where(BaselineAssignment.baseline_id == baseline.id)) == 2


def test_a_readonly_member_cannot_start_a_bulk_action(client, world, db_session, add_member, make_user):
    reader = make_user("reader@example.test", name="Reader")
    add_member(world.a, reader, "readonly")
    sign_in(client, reader.email)
    enter(client, world.a)
    response = client.post(f"/admin/w/{world.a.slug}/bulk", data={
        "action": "sync", "scope": "selected", "tenant": [str(world.tenant_a.external_id)],
        "csrf_token": csrf_token(client)})
    assert response.status_code == 403
    assert jobs("bulk_run_item") == []


# --- CSV ----------------------------------------------------------------------------------------------------


def test_the_portfolio_csv_has_the_pages_columns_order_and_filter(ada, world, db_session):
    healthcare = tag(db_session, world.a, "Healthcare", world.tenant_a, world.tenant_a2)
    rows = read_csv(ada.get(f"/admin/w/{world.a.slug}/managed-tenants.csv?tag={healthcare.id}&sort=name&dir=desc"))
    assert rows[0] == ["Tenant", "Tenant ID", "Primary domain", "Status", "Connection", "Last sync", "Policies",
                       "Last backup", "Last backup status", "Open critical", "Open high", "Open medium", "Open low",
                       "Missing permissions"]
    assert [row[0] for row in rows[1:]] == sorted([world.tenant_a.name, world.tenant_a2.name], reverse=True)
    assert world.tenant_b.name not in str(rows)


def test_a_formula_in_a_cell_is_neutralised(ada, world, db_session):
    world.tenant_a.name = "=HYPERLINK(\"http://evil.test\",\"click\")"
    world.tenant_a2.name = "+1+cmd|' /C calc'!A0"
    db_session.commit()
    rows = read_csv(ada.get(f"/admin/w/{world.a.slug}/managed-tenants.csv"))
    names = sorted(row[0] for row in rows[1:])
    assert names == sorted(["'=HYPERLINK(\"http://evil.test\",\"click\")", "'+1+cmd|' /C calc'!A0"])
    assert all(not row[0].startswith(("=", "+", "-", "@")) for row in rows[1:])


def test_findings_csv_workspace_wide_and_per_tenant_and_audit_csv_with_a_date_range(ada, world, db_session):
    rows = read_csv(ada.get(f"/admin/w/{world.a.slug}/findings.csv?status=all"))
    assert rows[0] == ["Tenant", "Tenant ID", "Severity", "Status", "Kind", "Finding", "Baseline", "Setting",
                       "Expected", "Actual", "Detected at", "Resolved at", "Accepted until", "Note"]
    assert {row[0] for row in rows[1:]} == {world.tenant_a.name}  # B's finding is not here
    assert "BRAVO" not in str(rows)
    tenant_rows = read_csv(ada.get(tenant_url(world.tenant_a, "/findings.csv?status=all")))
    assert tenant_rows[0] == rows[0] and len(tenant_rows) == len(rows)

    post_form(ada, tenant_url(world.tenant_a, "/pin"))
    audit = read_csv(ada.get(f"/admin/w/{world.a.slug}/audit.csv?from=2000-01-01&to=2999-12-31"))
    assert audit[0] == ["When", "Actor", "Action", "Tenant", "Target type", "Target", "Details", "IP address"]
    assert "tenant.pin" in [row[2] for row in audit[1:]]
    assert read_csv(ada.get(f"/admin/w/{world.a.slug}/audit.csv?to=2001-01-01"))[1:] == []
    assert "tenant.pin" in str(read_csv(ada.get(tenant_url(world.tenant_a, "/audit.csv?from=2026-01-01"))))
    response = ada.get(f"/admin/w/{world.a.slug}/audit.csv?from=yesterday")
    assert response.status_code == 400 and "YYYY-MM-DD" in response.get_data(as_text=True)
    assert ada.get(f"/admin/w/{world.a.slug}/audit.csv?from=2026-02-01&to=2026-01-01").status_code == 400


def test_csv_exports_are_refused_like_their_pages(client, world, db_session):
    sign_in(client, world.bob.email)
    enter(client, world.b)
    for url in (f"/admin/w/{world.a.slug}/managed-tenants.csv", f"/admin/w/{world.a.slug}/findings.csv",
                f"/admin/w/{world.a.slug}/audit.csv", tenant_url(world.tenant_a, "/findings.csv"),
                tenant_url(world.tenant_a, "/audit.csv")):
        response = client.get(url)
        assert response.status_code == 404, url
        assert "ALPHA" not in response.get_data(as_text=True)


# --- baselines through the pages ----------------------------------------------------------------------------


def test_build_edit_assign_and_see_the_matrix(ada, world, db_session):
    base = f"/admin/w/{world.a.slug}/baselines"
    policy = db_session.scalar(select(Policy).where(Policy.tenant_id == world.tenant_a.id))
    policy.settings = {"passwordRequired": True, "minLength": 12}
    db_session.commit()
    response = post_form(ada, base, {"name": "MSP Standard", "tenant": str(world.tenant_a.external_id),
                                     "severity": "high"})
    baseline = db_session.scalar(select(Baseline).where(Baseline.workspace_id == world.a.id))
    assert response.headers["Location"].endswith(f"/baselines/{baseline.id}")
    item = db_session.scalar(select(BaselinePolicy).where(BaselinePolicy.baseline_id == baseline.id))
    assert item.settings == {"passwordRequired": True, "minLength": 12}
    assert ada.post(base, data={"name": "MSP Standard", "tenant": str(world.tenant_a.external_id),
                                "severity": "high", "csrf_token": csrf_token(ada)}).status_code == 400
    assert ada.post(base, data={"name": "Other", "tenant": str(world.tenant_b.external_id), "severity": "high",
                                "csrf_token": csrf_token(ada)}).status_code == 400  # not a choice here

    edit = f"{base}/{baseline.id}/policies/{item.id}/edit"
    post_form(ada, edit, {"action": "any_value", "key": "minLength"})
    assert ada.post(edit, data={"action": "explode", "csrf_token": csrf_token(ada)}).status_code == 400
    post_form(ada, edit, {"action": "drop_setting", "key": "nonexistent"})  # refused with a message
    db_session.refresh(baseline)
    db_session.refresh(item)
    assert baseline.version == 2 and item.any_value == ["minLength"]
    assert [v.version for v in db_session.scalars(select(BaselineVersion).where(
        BaselineVersion.baseline_id == baseline.id))] == [1, 2]

    post_form(ada, f"{base}/{baseline.id}/assign", {"target": f"tenant:{world.tenant_a2.external_id}"})
    assert [job["tenant_id"] for job in jobs("evaluate_tenant_findings")] == [world.tenant_a2.id]
    assert ada.post(f"{base}/{baseline.id}/assign", data={"target": f"tenant:{world.tenant_b.external_id}",
                                                          "csrf_token": csrf_token(ada)}).status_code == 400
    from app.drift import evaluate_tenant

    with working_in_workspace(world.a.id):
        evaluate_tenant(world.tenant_a2)
        db_session.commit()
    body = page(ada, f"{base}/{baseline.id}/matrix")
    assert world.tenant_a2.name in body and "passwordRequired" in body
    missing = db_session.scalar(select(Finding).where(Finding.tenant_id == world.tenant_a2.id,
                                                      Finding.baseline_id == baseline.id))
    assert missing.detail["deviation"] == "missing_policy" and missing.severity == "critical"
    assert "cell-missing" in body
    body = page(ada, f"/admin/w/{world.a.slug}/findings?baseline={baseline.id}&severity=critical")
    assert "Missing policy" in body and world.tenant_a2.name in body


def test_another_workspaces_baseline_is_a_404_everywhere(ada, world, db_session):
    theirs = Baseline(workspace_id=world.b.id, name="Bravo baseline")
    db_session.add(theirs)
    db_session.commit()
    base = f"/admin/w/{world.a.slug}/baselines/{theirs.id}"
    assert ada.get(base).status_code == 404
    assert ada.get(f"{base}/matrix").status_code == 404
    assert ada.post(f"{base}/delete", data={"csrf_token": csrf_token(ada)}).status_code == 404
    assert db_session.get(Baseline, theirs.id) is not None


def test_the_demo_shows_its_tags_baseline_matrix_findings_and_exports(client, db_session):
    from app.demo.seed import DEMO_PASSWORD, seed_demo_data

    seed_demo_data(echo=lambda line: None)
    sign_in(client, "olivia.chen@tenantatlas.demo", DEMO_PASSWORD)
    slug = "atlas-managed-services"
    body = page(client, f"/admin/w/{slug}/managed-tenants")
    assert "tag-badge" in body and "Managed" in body
    body = page(client, f"/admin/w/{slug}/baselines")
    assert "MSP Standard" in body
    workspace_baseline = db_session.scalar(text(
        "SELECT b.id FROM baselines b JOIN workspaces w ON w.id = b.workspace_id WHERE w.slug = :s"), {"s": slug})
    body = page(client, f"/admin/w/{slug}/baselines/{workspace_baseline}/matrix")
    assert "cell-deviating" in body
    assert "differs from baseline MSP Standard" in page(client, f"/admin/w/{slug}/findings?kind=drift")
    for path in ("tags", "bulk", "alerts", f"baselines/{workspace_baseline}"):
        page(client, f"/admin/w/{slug}/{path}")
    rows = read_csv(client.get(f"/admin/w/{slug}/findings.csv?status=all"))
    assert len(rows) > 50
