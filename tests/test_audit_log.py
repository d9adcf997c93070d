"""The audit logs read as people read them: targets by name, changes as before → after, times in the user's zone."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import delete, select, text

from app.models import AuditLog, BackupSchedule, Tenant, User
from tests.conftest import page, post_form, tenant_url




def audit_rows(body: str) -> list[str]:
    return body.split('<tr class="audit-row">')[1:]


def test_audit_targets_are_names_kept_at_write_time_so_deleted_objects_still_read(ada, world, db_session, make_user,
                                                                                 add_member):
    # A member added and removed, then their account deleted.
    grace = make_user("grace@example.test", name="Grace Hopper")
    members = f"/admin/workspaces/{world.a.slug}/members"
    add_member(world.a, grace, "operator")
    membership_id = db_session.execute(text(
        "SELECT id FROM workspace_memberships WHERE user_id = :u"), {"u": grace.id}).scalar_one()
    assert post_form(ada, f"{members}/{membership_id}/remove").status_code == 302
    # A schedule created, then deleted.
    new_schedule = post_form(ada, tenant_url(world.tenant_a, "/schedules/new"),
                             {"name": "Nightly config backup", "frequency": "daily", "retention_days": "30",
                              "is_enabled": "y"})
    assert new_schedule.status_code == 302
    # A tenant registered, then deleted.
    register = post_form(ada, f"/admin/w/{world.a.slug}/managed-tenants",
                         {"external_id": "6f1c7a52-93d4-4c39-9a57-0d3c5a0e7b11", "name": "Woodgrove Bank"})
    assert register.status_code == 302
    db_session.execute(delete(BackupSchedule).where(BackupSchedule.name == "Nightly config backup"))
    db_session.execute(delete(Tenant).where(Tenant.name == "Woodgrove Bank"))
    db_session.execute(delete(User).where(User.id == grace.id))
    db_session.commit()

    workspace_log = page(ada, f"/admin/w/{world.a.slug}/audit")
    removed = next(row for row in audit_rows(workspace_log) if "membership.remove" in row)
    assert '<span class="text-body-secondary">user</span> Grace Hopper' in removed
    created = next(row for row in audit_rows(workspace_log) if "tenant.create" in row)
    assert '<span class="text-body-secondary">tenant</span> Woodgrove Bank' in created
    tenant_log = page(ada, tenant_url(world.tenant_a, "/audit"))
    schedule = next(row for row in audit_rows(tenant_log) if "schedule.create" in row)
    assert '<span class="text-body-secondary">backup schedule</span> Nightly config backup' in schedule
    # Searching finds an entry by its target's name.
    assert "Grace Hopper" in page(ada, f"/admin/w/{world.a.slug}/audit?q=grace")


def test_audit_changes_are_a_before_after_table_and_other_details_a_key_value_list(ada, world, db_session):
    url = tenant_url(world.tenant_a, f"/findings/{world.ids_a['finding_id']}/acknowledge")
    assert post_form(ada, url, {"note": "Accepted until Q3"}).status_code == 302
    db_session.add(AuditLog(action="tenant.connect_refused", workspace_id=world.a.id, tenant_id=world.tenant_a.id,
                            target_type="tenant", details={"reason": "verified elsewhere"}))
    db_session.commit()
    body = page(ada, tenant_url(world.tenant_a, "/audit"))
    acknowledged = next(row for row in audit_rows(body) if "finding.acknowledge" in row)
    assert '<table class="table table-sm table-borderless audit-change mb-0">' in acknowledged
    assert ('<tr class="changed"><th scope="row">status</th><td class="before">open</td>'
            '<td class="after"><span class="arrow" aria-hidden="true">→ </span>acknowledged</td></tr>') in acknowledged
    assert '<th scope="row">note</th><td class="before">—</td>' in acknowledged
    assert "Accepted until Q3" in acknowledged
    refused = next(row for row in audit_rows(body) if "tenant.connect_refused" in row)
    assert "<dt>reason</dt><dd>verified elsewhere</dd>" in refused and "audit-change" not in refused
    assert '"before": ' not in body and '{"reason"' not in body  # no raw JSON left


def test_times_show_in_the_users_timezone_with_its_abbreviation_utc_by_default(ada, world, db_session):
    db_session.add(AuditLog(action="tenant.sync_requested", workspace_id=world.a.id, tenant_id=world.tenant_a.id,
                            created_at=datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)))
    db_session.add(AuditLog(action="tenant.sync_resumed", workspace_id=world.a.id, tenant_id=world.tenant_a.id,
                            created_at=datetime(2026, 7, 15, 12, 0, tzinfo=timezone.utc)))
    db_session.commit()
    audit = f"/admin/w/{world.a.slug}/audit"
    body = page(ada, audit)
    assert '2026-01-15 12:00&nbsp;<span class="time-zone">UTC</span>' in body
    assert 'Timezone: UTC' in body  # in the user menu

    form = page(ada, "/admin/account/timezone")
    assert '<option value="Europe/Berlin">Europe/Berlin</option>' in form
    response = post_form(ada, "/admin/account/timezone", {"timezone": "Europe/Berlin"})
    assert response.status_code == 302
    body = page(ada, audit)
    assert '2026-01-15 13:00&nbsp;<span class="time-zone">CET</span>' in body
    assert '2026-07-15 14:00&nbsp;<span class="time-zone">CEST</span>' in body
    assert "Timezone: Europe/Berlin" in body
    entry = db_session.scalar(select(AuditLog).where(AuditLog.action == "user.timezone_change"))
    assert entry.details == {"before": {"timezone": "UTC"}, "after": {"timezone": "Europe/Berlin"}}

    post_form(ada, "/admin/account/timezone", {"timezone": "America/New_York"})
    assert '2026-01-15 07:00&nbsp;<span class="time-zone">EST</span>' in page(ada, audit)


@pytest.mark.parametrize("value", ["Mars/Olympus", "../../../etc/passwd", "/etc/localtime", "Europe/Berlin\n",
                                   "", "x" * 5000, "Europe/../Europe/Berlin", "\x00", "utc"])
def test_a_timezone_that_is_not_an_iana_name_is_a_400_and_changes_nothing(ada, world, db_session, value):
    response = post_form(ada, "/admin/account/timezone", {"timezone": value})
    assert response.status_code == 400
    if value and "\x00" not in value:  # a NUL byte is refused before any form (the app-wide 400)
        assert "Choose a timezone from the list" in response.get_data(as_text=True)
    db_session.expire_all()
    assert db_session.get(User, world.ada.id).timezone is None
