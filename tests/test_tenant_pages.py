"""The tenant pages: what each shows and how it handles input."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from app.diffing import settings_diff
from app.models import BackupSchedule, Finding, TenantVisit
from tests.conftest import enter, page, post_form, sign_in, tenant_url




def test_dashboard_shows_counts_latest_backup_findings_and_permissions(ada, world):
    body = page(ada, tenant_url(world.tenant_a))
    assert "ALPHA backup" in body
    assert "ALPHA drift" in body
    assert "1 of 1 permissions missing" in body


def test_opening_a_tenant_records_a_visit(ada, world, db_session):
    page(ada, tenant_url(world.tenant_a, "/policies"))
    visit = db_session.scalar(select(TenantVisit).where(TenantVisit.user_id == world.ada.id))
    assert (visit.tenant_id, visit.workspace_id) == (world.tenant_a.id, world.a.id)


def test_policy_detail_lists_versions_and_the_diff_shows_changed_settings(ada, world):
    ids = world.ids_a
    body = page(ada, tenant_url(world.tenant_a, f"/policies/{ids['policy_id']}"))
    assert "v2" in body and "v1" in body and "Compare the two picked versions" in body
    diff = page(ada, tenant_url(world.tenant_a, f"/policies/{ids['policy_id']}/diff?a={ids['version_b']}&b={ids['version_a']}"))
    assert "v1 → v2" in diff  # ordered oldest first whichever way they were picked
    assert "passwordMinimumLength" in diff and 'class="diff-changed"' in diff
    assert "2 settings differ." in diff
    only = page(ada, tenant_url(world.tenant_a, f"/policies/{ids['policy_id']}/diff?a={ids['version_a']}&b={ids['version_b']}&changes=only"))
    assert "passwordMinimumLength" in only and 'class="diff-same"' not in only and "Show all settings" in only


@pytest.mark.parametrize("query", ["", "?a=1", "?a=x&b=y", "?a=999999999&b=1", "?a=99999999999999999999999&b=1"])
def test_policy_diff_with_missing_or_bad_versions_is_a_clear_4xx(ada, world, query):
    response = ada.get(tenant_url(world.tenant_a, f"/policies/{world.ids_a['policy_id']}/diff{query}"))
    assert response.status_code in (400, 404)
    assert "Traceback" not in response.get_data(as_text=True)


def test_settings_diff_marks_added_removed_and_changed_nested_keys():
    rows = {row.path: row.status for row in settings_diff(
        {"a": 1, "b": {"c": [1, 2]}, "gone": True}, {"a": 2, "b": {"c": [1, 3]}, "new": "x"})}
    assert rows == {"a": "changed", "b.c[0]": "same", "b.c[1]": "changed", "gone": "removed", "new": "added"}


def test_policy_list_search_and_sort(ada, world, populate_tenant):
    populate_tenant(world.tenant_a2)
    body = page(ada, tenant_url(world.tenant_a, "/policies?q=ALPHA&sort=name&dir=desc"))
    assert "ALPHA policy 0" in body and "Alpha Customer Two policy" not in body


def test_findings_filter_by_severity_and_status(ada, world):
    body = page(ada, tenant_url(world.tenant_a, "/findings?severity=high&status=open"))
    assert "ALPHA drift" in body
    body = page(ada, tenant_url(world.tenant_a, "/findings?severity=low"))
    assert "ALPHA drift" not in body
    body = page(ada, tenant_url(world.tenant_a, "/findings?severity=nonsense&status=whatever"))
    assert "ALPHA drift" in body  # unknown filter values fall back to the defaults


def test_finding_triage_cycle(ada, world, db_session):
    base = tenant_url(world.tenant_a, f"/findings/{world.ids_a['finding_id']}")
    finding = db_session.get(Finding, world.ids_a["finding_id"])
    assert post_form(ada, f"{base}/acknowledge").status_code == 302
    db_session.refresh(finding)
    assert finding.status == "acknowledged"
    assert post_form(ada, f"{base}/resolve").status_code == 302
    db_session.refresh(finding)
    assert finding.status == "resolved" and finding.resolved_at is not None
    response = post_form(ada, f"{base}/acknowledge", follow_redirects=True)
    assert "cannot be acknowledged from there" in response.get_data(as_text=True)
    assert post_form(ada, f"{base}/reopen").status_code == 302
    db_session.refresh(finding)
    assert finding.status == "open" and finding.resolved_at is None
    assert post_form(ada, f"{base}/delete").status_code in (404, 405)


def test_schedule_create_edit_and_enable(ada, world, db_session):
    base = tenant_url(world.tenant_a, "/schedules")
    response = post_form(ada, f"{base}/new", {"name": "Hourly", "frequency": "hourly", "retention_days": "7",
                                              "is_enabled": "y"})
    assert response.status_code == 302
    schedule = db_session.scalar(select(BackupSchedule).where(BackupSchedule.name == "Hourly"))
    assert schedule.tenant_id == world.tenant_a.id and schedule.is_enabled and schedule.next_run_at
    response = post_form(ada, f"{base}/{schedule.id}/edit", {"name": "Hourly", "frequency": "daily",
                                                             "retention_days": "90"})
    db_session.refresh(schedule)
    # Editing never enables or disables: those are their own actions.
    assert (schedule.frequency, schedule.retention_days, schedule.is_enabled) == ("daily", 90, True)
    post_form(ada, f"{base}/{schedule.id}/disable")
    db_session.refresh(schedule)
    assert not schedule.is_enabled
    post_form(ada, f"{base}/{schedule.id}/enable")
    db_session.refresh(schedule)
    assert schedule.is_enabled


def test_a_stale_edit_tab_cannot_turn_a_disabled_schedule_back_on(ada, world, db_session):
    base = tenant_url(world.tenant_a, "/schedules")
    schedule_id = world.ids_a["schedule_id"]
    edit_page = page(ada, f"{base}/{schedule_id}/edit")  # opened while enabled
    assert 'name="is_enabled"' not in edit_page
    post_form(ada, f"{base}/{schedule_id}/disable")
    post_form(ada, f"{base}/{schedule_id}/edit", {"name": "ALPHA nightly", "frequency": "daily",
                                                  "retention_days": "30", "keep_last": "3", "is_enabled": "y"})
    schedule = db_session.get(BackupSchedule, schedule_id)
    db_session.refresh(schedule)
    assert schedule.is_enabled is False


def test_only_a_manager_can_shorten_how_long_backups_are_kept(app, world, db_session):
    from tests.conftest import enter, sign_in

    base = tenant_url(world.tenant_a, "/schedules")
    schedule_id = world.ids_a["schedule_id"]
    client = app.test_client()
    sign_in(client, world.dual.email)  # an operator
    enter(client, world.a)
    response = post_form(client, f"{base}/{schedule_id}/edit", {"name": "ALPHA nightly", "frequency": "daily",
                                                                "retention_days": "1", "keep_last": "0"})
    assert response.status_code == 400 and "Only a manager or higher can shorten" in response.get_data(as_text=True)
    longer = post_form(client, f"{base}/{schedule_id}/edit", {"name": "ALPHA nightly", "frequency": "daily",
                                                              "retention_days": "60", "keep_last": "5"})
    assert longer.status_code == 302
    assert db_session.get(BackupSchedule, schedule_id).retention_days == 60


def test_disable_from_a_stale_tab_keeps_the_schedule_disabled_and_says_nothing_changed(ada, world, db_session):
    from app.models import AuditLog

    schedule = db_session.get(BackupSchedule, world.ids_a["schedule_id"])
    url = tenant_url(world.tenant_a, f"/schedules/{schedule.id}/disable")
    first = post_form(ada, url, follow_redirects=True)
    assert "disabled." in first.get_data(as_text=True)
    second = post_form(ada, url, follow_redirects=True)  # the same button, in a tab opened before the first
    assert "is already disabled; nothing changed" in second.get_data(as_text=True)
    db_session.refresh(schedule)
    assert schedule.is_enabled is False
    audited = db_session.scalars(select(AuditLog.action).where(AuditLog.target_id == str(schedule.id))).all()
    assert audited == ["schedule.disable"]
    again = post_form(ada, tenant_url(world.tenant_a, f"/schedules/{schedule.id}/enable"), follow_redirects=True)
    assert "enabled." in again.get_data(as_text=True)
    assert post_form(ada, tenant_url(world.tenant_a, f"/schedules/{schedule.id}/toggle")).status_code in (404, 405)


def test_the_schedule_list_offers_the_action_for_the_current_state(ada, world, db_session):
    body = page(ada, tenant_url(world.tenant_a, "/schedules"))
    assert f"/schedules/{world.ids_a['schedule_id']}/disable" in body and "/enable" not in body
    assert "/toggle" not in body


@pytest.mark.parametrize("form, message", [
    ({"name": "", "frequency": "daily", "retention_days": "7"}, "This field is required"),
    ({"name": "X", "frequency": "yearly", "retention_days": "7"}, "Not a valid choice"),
    ({"name": "X", "frequency": "daily", "retention_days": "0"}, "Number must be between 1 and 3650"),
    ({"name": "X", "frequency": "daily", "retention_days": "lots"}, "Not a valid integer"),
    ({"name": "ALPHA nightly", "frequency": "daily", "retention_days": "7"}, "exists already"),
    ({"name": "X" * 300, "frequency": "daily", "retention_days": "7"}, "at most 200"),
])
def test_schedule_form_errors_are_explained(ada, world, form, message):
    response = post_form(ada, tenant_url(world.tenant_a, "/schedules/new"), form)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)


def test_readonly_member_sees_schedules_without_controls(client, world, make_user, add_member):
    viewer = make_user("viewer@example.test")
    add_member(world.a, viewer, "readonly")
    sign_in(client, viewer.email)
    enter(client, world.a)
    body = page(client, tenant_url(world.tenant_a, "/schedules"))
    assert "ALPHA nightly" in body and "New schedule" not in body and "Disable" not in body
    assert client.get(tenant_url(world.tenant_a, "/schedules/new")).status_code == 403


def test_backup_set_restore_run_and_inventory_detail(ada, world):
    ids = world.ids_a
    assert "ALPHA item" in page(ada, tenant_url(world.tenant_a, f"/backups/{ids['backup_set_id']}"))
    run = page(ada, tenant_url(world.tenant_a, f"/restore-runs/{ids['restore_run_id']}"))
    assert "ALPHA item" in run and "updated" in run and "verified" in run
    item = page(ada, tenant_url(world.tenant_a, f"/inventory/{ids['item_id']}"))
    assert "primaryUser" in item and "ALPHA person" in item


@pytest.mark.parametrize("path", ["/groups", "/roles", "/permissions", "/audit", "/inventory", "/backups",
                                  "/restore-runs"])
def test_lists_accept_search_sort_and_bad_values(ada, world, path):
    for query in ("?q=ALPHA", "?sort=nonsense&dir=up&page=-1&per_page=1000", "?q=%25_%5C"):
        assert ada.get(tenant_url(world.tenant_a, path + query)).status_code == 200


def test_unknown_child_ids_are_404(ada, world):
    for path in ("/policies/0", "/policies/99999999", "/backups/123456789", "/restore-runs/5",
                 "/inventory/999999", "/schedules/424242/edit", "/policies/abc"):
        assert ada.get(tenant_url(world.tenant_a, path)).status_code == 404, path


def test_ids_beyond_bigint_are_404_not_an_overflow(ada, world):
    for path in ("/policies/99999999999999999999999", "/backups/9223372036854775808", "/inventory/0"):
        assert ada.get(tenant_url(world.tenant_a, path)).status_code == 404, path


def test_archived_tenant_cannot_be_pinned(ada, world, db_session):
    from app.models import TenantPin

    world.tenant_a.status = "archived"
    db_session.commit()
    response = post_form(ada, tenant_url(world.tenant_a, "/pin"), follow_redirects=True)
    assert "cannot be pinned" in response.get_data(as_text=True)
    assert db_session.scalar(select(TenantPin.id)) is None


def test_pin_and_unpin_say_what_happened(ada, world):
    body = post_form(ada, tenant_url(world.tenant_a, "/pin"), follow_redirects=True).get_data(as_text=True)
    assert "is pinned to your tenant switcher" in body and "Unpin from switcher" in body
    body = post_form(ada, tenant_url(world.tenant_a, "/unpin"), follow_redirects=True).get_data(as_text=True)
    assert "is no longer pinned" in body and "Pin to switcher" in body


def test_diff_of_a_version_with_itself_is_refused(ada, world):
    ids = world.ids_a
    response = ada.get(tenant_url(world.tenant_a, f"/policies/{ids['policy_id']}/diff?a={ids['version_a']}&b={ids['version_a']}"))
    assert response.status_code == 400
    assert "two different versions" in response.get_data(as_text=True)


def test_upper_case_tenant_id_redirects_to_the_canonical_address(ada, world):
    upper = str(world.tenant_a.external_id).upper()
    response = ada.get(f"/admin/t/{upper}/findings?status=all")
    assert response.status_code == 301
    assert response.headers["Location"] == f"/admin/t/{world.tenant_a.external_id}/findings?status=all"


def test_reopen_message(ada, world):
    base = tenant_url(world.tenant_a, f"/findings/{world.ids_a['finding_id']}")
    post_form(ada, f"{base}/resolve")
    body = post_form(ada, f"{base}/reopen", follow_redirects=True).get_data(as_text=True)
    assert "ALPHA drift” reopened." in body


@pytest.mark.parametrize("moment, frequency, expected", [
    ("2026-11-24T02:56:00", "hourly", "2026-11-24T03:00:00"),
    ("2026-11-24T01:00:00", "daily", "2026-11-24T02:00:00"),
    ("2026-11-24T02:56:00", "daily", "2026-11-25T02:00:00"),
    ("2026-11-24T02:56:00", "weekly", "2026-11-30T02:00:00"),  # a Tuesday: next Monday
    ("2026-11-30T01:00:00", "weekly", "2026-11-30T02:00:00"),
    ("2026-11-24T02:56:00", "monthly", "2026-12-01T02:00:00"),
    ("2026-12-05T00:00:00", "monthly", "2027-01-01T02:00:00"),
])
def test_next_run_is_the_next_slot_of_the_frequency(moment, frequency, expected):
    from datetime import datetime, timezone

    from app.backup.schedules import next_run_after

    start = datetime.fromisoformat(moment).replace(tzinfo=timezone.utc)
    assert next_run_after(start, frequency) == datetime.fromisoformat(expected).replace(tzinfo=timezone.utc)


def test_a_planned_restore_offers_execute_and_discard_to_a_manager_only(ada, world, db_session, make_user,
                                                                      add_member, client):
    from app.models import RestoreRun

    run = db_session.get(RestoreRun, world.ids_a["restore_run_id"])
    run.status, run.summary = "planned", {"actions": {"update": 1}}  # as plan_restore leaves a plan
    db_session.commit()
    url = tenant_url(world.tenant_a, f"/restore-runs/{run.id}")
    body = page(ada, url)
    assert f"/restore-runs/{run.id}/execute" in body and f"/restore-runs/{run.id}/cancel" in body
    # ALPHA is not connected: the page says why executing cannot work, before anyone tries.
    assert "not connected to Microsoft Graph" in body


def test_acknowledging_a_finding_keeps_the_note_shows_it_and_audits_it(ada, world, db_session):
    from app.models import AuditLog

    url = tenant_url(world.tenant_a, f"/findings/{world.ids_a['finding_id']}/acknowledge")
    response = post_form(ada, url, {"note": "  Accepted risk:\n ticket PSA-4711 "}, follow_redirects=True)
    assert "acknowledged with your note" in response.get_data(as_text=True)
    finding = db_session.get(Finding, world.ids_a["finding_id"])
    db_session.refresh(finding)
    assert finding.status == "acknowledged"
    assert finding.detail["acknowledgement"]["note"] == "Accepted risk: ticket PSA-4711"
    assert finding.detail["acknowledgement"]["by"] == "Ada"
    entry = db_session.scalar(select(AuditLog).where(AuditLog.action == "finding.acknowledge"))
    assert entry.details["after"] == {"status": "acknowledged", "note": "Accepted risk: ticket PSA-4711"}
    body = page(ada, tenant_url(world.tenant_a, "/findings?status=all"))
    assert "“Accepted risk: ticket PSA-4711” · acknowledged by Ada" in body
    post_form(ada, tenant_url(world.tenant_a, f"/findings/{world.ids_a['finding_id']}/reopen"))
    db_session.refresh(finding)
    assert finding.status == "open" and "acknowledgement" not in finding.detail


def test_a_finding_note_over_the_limit_is_a_clear_400_and_changes_nothing(ada, world, db_session):
    url = tenant_url(world.tenant_a, f"/findings/{world.ids_a['finding_id']}/acknowledge")
    response = post_form(ada, url, {"note": "x" * 1001})
    assert response.status_code == 400
    assert "A note can be at most 1000 characters" in response.get_data(as_text=True)
    assert db_session.get(Finding, world.ids_a["finding_id"]).status == "open"


def test_inventory_filters_by_object_type(ada, world):
    both = page(ada, tenant_url(world.tenant_a, "/inventory"))
    assert "ALPHA laptop" in both and "ALPHA person" in both
    assert '<option value="device"' in both and '<option value="user"' in both
    devices = page(ada, tenant_url(world.tenant_a, "/inventory?type=device"))
    assert "ALPHA laptop" in devices and "ALPHA person" not in devices
    unknown = page(ada, tenant_url(world.tenant_a, "/inventory?type=nonsense%0A"))
    assert "ALPHA laptop" in unknown and "ALPHA person" in unknown  # an unknown type falls back to all


def test_a_new_schedule_defaults_to_daily(ada, world):
    body = page(ada, tenant_url(world.tenant_a, "/schedules/new"))
    assert '<option selected value="daily">' in body or '<option value="daily" selected>' in body


def test_the_version_picks_work_without_script_and_odd_picks_are_a_clear_400(ada, world):
    ids, base = world.ids_a, tenant_url(world.tenant_a, f"/policies/{world.ids_a['policy_id']}/diff")
    both = ada.get(f"{base}?a=&b=&pick={ids['version_b']}&pick={ids['version_a']}")
    assert both.status_code == 200 and "v1 → v2" in both.get_data(as_text=True)
    assert ada.get(f"{base}?a={ids['version_a']}&b={ids['version_b']}&pick={ids['version_a']}").status_code == 400
    detail = page(ada, tenant_url(world.tenant_a, f"/policies/{ids['policy_id']}"))
    assert f'name="a" value="{ids["version_b"]}"' in detail and f'name="b" value="{ids["version_a"]}"' in detail


def test_the_schedule_page_of_an_archived_tenant_says_its_schedules_never_run(ada, world, db_session):
    world.tenant_a.status = "archived"
    db_session.commit()
    body = page(ada, tenant_url(world.tenant_a, "/schedules"))
    assert "archived: its schedules never run" in body
