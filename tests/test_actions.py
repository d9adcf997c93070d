"""Every POST: refused without a CSRF token, refused (403) below its role, audited when it succeeds."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

from app.models import AuditLog, BackupSchedule, TenantPin, WorkspaceMembership
from tests.conftest import TEST_PASSWORD, csrf_token, enter, sign_in

BELOW = {"operator": "readonly", "manager": "operator", "owner": "manager"}
RESTORE_ENDPOINTS = ("tenant.restore_from_backup", "tenant.restore_version", "tenant.restore_execute",
                     "tenant.restore_cancel")
BACKUP_AND_RESTORE = ["tenant.backup_now", *RESTORE_ENDPOINTS]
REFUSED_ONLY = ["tenant.backup_upload"]  # CSRF and role; its success needs an archive (test_backup_archive)


@pytest.fixture(autouse=True)
def graph_configured(app):
    """Connect only builds the consent URL (no network): a configured app registration is enough."""
    from app.graph.settings import GraphSettings

    before = app.extensions["graph_settings"]
    app.extensions["graph_settings"] = GraphSettings(client_id="00000000-0000-0000-0000-0000000000aa",
                                                     client_secret="not-used")
    yield
    app.extensions["graph_settings"] = before


def _membership_id(db_session, workspace, user):
    return db_session.scalar(select(WorkspaceMembership.id).where(
        WorkspaceMembership.workspace_id == workspace.id, WorkspaceMembership.user_id == user.id))


def prepare(endpoint, world, db_session):
    """(url, form data, minimum role, audit action) for one POST endpoint, with any state it needs."""
    a, ext, ids = world.a, world.tenant_a.external_id, world.ids_a
    if endpoint == "portfolio.unarchive_tenant":
        world.tenant_a2.status = "archived"
        db_session.commit()
    if endpoint in ("tenant.sync_now", "tenant.sync_resume"):
        world.tenant_a.connection_status = "connected"
        if endpoint == "tenant.sync_resume":
            world.tenant_a.sync_paused_at = datetime.now(timezone.utc)
        db_session.commit()
    if endpoint in RESTORE_ENDPOINTS or endpoint == "tenant.backup_now":
        # Restoring writes to a connected tenant that granted the write tier.
        from app.graph.families import required_permissions
        from app.models import PolicyVersion, RestoreRun

        world.tenant_a.connection_status = "connected"
        world.tenant_a.granted_permissions = sorted(set(required_permissions("read")) | set(required_permissions("write")))
        db_session.get(PolicyVersion, ids["version_a"]).payload_id = ids["payload_id"]
        db_session.get(RestoreRun, ids["restore_run_id"]).status = "planned"
        db_session.commit()
    if endpoint == "tenant.schedule_enable":
        db_session.get(BackupSchedule, world.ids_a["schedule_id"]).is_enabled = False
        db_session.commit()
    if endpoint == "tenant.unpin":
        db_session.add(TenantPin(user_id=world.ada.id, tenant_id=world.tenant_a.id, workspace_id=a.id))
        db_session.commit()
    schedule = {"name": "Weekly export", "frequency": "weekly", "retention_days": "14", "is_enabled": "y"}
    return {
        "portfolio.register_tenant": (f"/admin/w/{a.slug}/managed-tenants",
                                      {"external_id": str(uuid.uuid4()), "name": "New Customer"}, "manager",
                                      "tenant.create"),
        "portfolio.archive_tenant": (f"/admin/w/{a.slug}/managed-tenants/{world.tenant_a2.external_id}/archive", {},
                                     "manager", "tenant.archive"),
        "portfolio.unarchive_tenant": (f"/admin/w/{a.slug}/managed-tenants/{world.tenant_a2.external_id}/unarchive",
                                       {}, "manager", "tenant.unarchive"),
        "tenant.pin": (f"/admin/t/{ext}/pin", {}, "readonly", "tenant.pin"),
        "tenant.unpin": (f"/admin/t/{ext}/unpin", {}, "readonly", "tenant.unpin"),
        "tenant.schedule_new": (f"/admin/t/{ext}/schedules/new", schedule, "operator", "schedule.create"),
        # Longer retention: shortening it is a manager's (test_tenant_pages).
        "tenant.schedule_edit": (f"/admin/t/{ext}/schedules/{ids['schedule_id']}/edit",
                                 {**schedule, "retention_days": "60"}, "operator", "schedule.update"),
        "tenant.schedule_disable": (f"/admin/t/{ext}/schedules/{ids['schedule_id']}/disable", {}, "operator",
                                    "schedule.disable"),
        "tenant.schedule_enable": (f"/admin/t/{ext}/schedules/{ids['schedule_id']}/enable", {}, "operator",
                                   "schedule.enable"),
        "tenant.finding_transition": (f"/admin/t/{ext}/findings/{ids['finding_id']}/acknowledge", {}, "operator",
                                      "finding.acknowledge"),
        "tenant.sync_now": (f"/admin/t/{ext}/sync", {}, "operator", "tenant.sync_requested"),
        "tenant.sync_resume": (f"/admin/t/{ext}/sync/resume", {}, "operator", "tenant.sync_resumed"),
        "tenant.connect": (f"/admin/t/{ext}/connect", {}, "manager", "tenant.connect_started"),
        "tenant.backup_now": (f"/admin/t/{ext}/backups/run", {}, "operator", "backup.start"),
        "tenant.restore_from_backup": (f"/admin/t/{ext}/backups/{ids['backup_set_id']}/restore",
                                       {"item": str(ids["backup_item_id"]), "target_tenant": str(ext),
                                        "assignment_mode": "keep"}, "manager", "restore.plan"),
        "tenant.restore_version": (f"/admin/t/{ext}/policies/{ids['policy_id']}/versions/{ids['version_a']}/restore",
                                   {"target_tenant": str(ext), "assignment_mode": "skip"}, "manager", "restore.plan"),
        "tenant.restore_execute": (f"/admin/t/{ext}/restore-runs/{ids['restore_run_id']}/execute", {}, "manager",
                                   "restore.execute"),
        "tenant.restore_cancel": (f"/admin/t/{ext}/restore-runs/{ids['restore_run_id']}/cancel", {}, "manager",
                                  "restore.cancel"),
        # Its success, with a real archive, is tests/test_backup_archive.py's.
        "tenant.backup_upload": (f"/admin/t/{ext}/backups/upload", {}, "operator", "backup.upload"),
        "workspaces.settings": (f"/admin/workspaces/{a.slug}/settings", {"name": "Alpha Renamed"}, "owner",
                                "workspace.rename"),
        "workspaces.add_member": (f"/admin/workspaces/{a.slug}/members",
                                  {"email": world.olivia.email, "role": "readonly"}, "owner", "membership.add"),
        "workspaces.change_role": (
            f"/admin/workspaces/{a.slug}/members/{_membership_id(db_session, a, world.dual)}/role",
            {"role": "manager"}, "owner", "membership.role_change"),
        "workspaces.remove_member": (
            f"/admin/workspaces/{a.slug}/members/{_membership_id(db_session, a, world.dual)}/remove", {}, "owner",
            "membership.remove"),
        "workspaces.create": ("/admin/workspaces", {"name": "Charlie", "slug": "charlie-msp"}, "readonly",
                              "workspace.create"),
        "workspaces.switch": ("/admin/workspaces/switch", {"workspace_id": str(a.id)}, "readonly",
                              "workspace.switch"),
        "auth.logout": ("/logout", {}, "readonly", "auth.sign_out"),
        "auth.change_password": ("/admin/account/password",
                                 {"current_password": TEST_PASSWORD, "new_password": "another long secret",
                                  "confirm_password": "another long secret"}, "readonly", "auth.password_change"),
        "auth.change_timezone": ("/admin/account/timezone", {"timezone": "Europe/Berlin"}, "readonly",
                                 "user.timezone_change"),
    }[endpoint]


def admin_post_endpoints(app):
    return sorted({rule.endpoint for rule in app.url_map.iter_rules()
                   if "POST" in rule.methods and rule.endpoint != "auth.login"})


@pytest.fixture
def role_users(world, make_user, add_member):
    """A member of workspace A for each role."""
    users = {"owner": world.ada, "operator": world.dual}
    for role in ("readonly", "manager"):
        users[role] = make_user(f"{role}@example.test", name=role.title())
        add_member(world.a, users[role], role)
    return users


def signed_in_as(app, user, workspace):
    client = app.test_client()
    sign_in(client, user.email)
    enter(client, workspace)
    return client


def test_the_table_covers_every_post_route(app, world, db_session):
    for endpoint in admin_post_endpoints(app):
        prepare(endpoint, world, db_session)  # KeyError: a POST route this test does not know


@pytest.mark.parametrize("endpoint", [
    "portfolio.register_tenant", "portfolio.archive_tenant", "tenant.pin", "tenant.schedule_new",
    "tenant.schedule_disable", "tenant.finding_transition", "workspaces.settings", "workspaces.add_member",
    "workspaces.change_role", "workspaces.remove_member", "workspaces.create", "workspaces.switch", "auth.logout",
    "auth.change_password", "auth.change_timezone", "tenant.sync_now", "tenant.connect", *BACKUP_AND_RESTORE,
    *REFUSED_ONLY,
])
def test_post_without_csrf_token_is_refused_and_changes_nothing(app, world, db_session, endpoint):
    url, data, _, action = prepare(endpoint, world, db_session)
    client = signed_in_as(app, world.ada, world.a)
    before = db_session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == action))
    response = client.post(url, data=data)
    assert response.status_code == 400
    assert db_session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == action)) == before


@pytest.mark.parametrize("endpoint", [
    "portfolio.register_tenant", "portfolio.archive_tenant", "portfolio.unarchive_tenant", "tenant.schedule_new",
    "tenant.schedule_edit", "tenant.schedule_disable", "tenant.schedule_enable", "tenant.finding_transition",
    "workspaces.settings", "workspaces.add_member", "workspaces.change_role", "workspaces.remove_member",
    "tenant.sync_now", "tenant.sync_resume", "tenant.connect", *BACKUP_AND_RESTORE, *REFUSED_ONLY,
])
def test_post_with_too_small_a_role_is_403_with_a_clear_message(app, world, db_session, role_users, endpoint):
    url, data, minimum, action = prepare(endpoint, world, db_session)
    user = role_users[BELOW[minimum]]
    client = signed_in_as(app, user, world.a)
    response = client.post(url, data={**data, "csrf_token": csrf_token(client)})
    assert response.status_code == 403
    body = response.get_data(as_text=True)
    assert f"Only {'an' if minimum in ('operator', 'owner') else 'a'} {minimum} or higher can" in body
    assert db_session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == action)) == 0


@pytest.mark.parametrize("endpoint", [
    "portfolio.register_tenant", "portfolio.archive_tenant", "portfolio.unarchive_tenant", "tenant.pin",
    "tenant.unpin", "tenant.schedule_new", "tenant.schedule_edit", "tenant.schedule_disable", "tenant.schedule_enable",
    "tenant.finding_transition", "workspaces.settings", "workspaces.add_member", "workspaces.change_role",
    "workspaces.remove_member", "workspaces.create", "workspaces.switch", "auth.logout", "auth.change_timezone",
    "tenant.sync_now", "tenant.sync_resume", "tenant.connect", *BACKUP_AND_RESTORE,
])
def test_post_with_the_role_succeeds_and_is_audited(app, world, db_session, role_users, endpoint):
    url, data, minimum, action = prepare(endpoint, world, db_session)
    # The lowest role that may do it (personal actions, which need no role, as the owner who prepared them).
    user = world.ada if minimum == "readonly" else role_users[minimum]
    client = signed_in_as(app, user, world.a)
    response = client.post(url, data={**data, "csrf_token": csrf_token(client)})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    entry = db_session.scalar(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id.desc()))
    assert entry is not None and entry.actor_user_id == user.id
    if endpoint.startswith(("tenant.", "portfolio.")):
        assert entry.workspace_id == world.a.id and entry.tenant_id is not None
    if action not in ("auth.sign_out", "auth.password_change", "tenant.pin", "tenant.unpin", "workspace.switch"):
        assert "before" in entry.details and "after" in entry.details
    if not action.startswith("auth."):  # an entry about something names it, so it reads after a deletion too
        assert entry.target_name, action


def test_pin_is_personal_and_allowed_to_readonly(app, world, db_session, role_users):
    client = signed_in_as(app, role_users["readonly"], world.a)
    response = client.post(f"/admin/t/{world.tenant_a.external_id}/pin", data={"csrf_token": csrf_token(client)})
    assert response.status_code == 302
    assert db_session.scalar(select(TenantPin.user_id)) == role_users["readonly"].id
