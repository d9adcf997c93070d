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
    if endpoint == "workspaces.create":
        world.ada.is_admin = True  # only platform administrators create workspaces
        db_session.commit()
    invitation_token = None
    if endpoint.startswith("invitations.") or endpoint == "workspaces.revoke_invitation":
        invitation_token = _invitation(db_session, world.b if endpoint.startswith("invitations.") else a,
                                       world.ada.email if endpoint.startswith("invitations.") else "x@example.test")
    other_session_id = 0
    if endpoint == "sessions.end_one":
        from app.models import UserSession

        other = UserSession(user_id=world.ada.id, token_hash=uuid.uuid4().hex * 2, auth_method="password",
                            user_agent="Mozilla/5.0 (iPhone) Safari/604.1")
        db_session.add(other)
        db_session.commit()
        other_session_id = other.id
    schedule = {"name": "Weekly export", "frequency": "weekly", "retention_days": "14", "is_enabled": "y"}
    ops = operations_rows(world, db_session)
    w = f"/admin/w/{a.slug}"
    return {
        "tags.create": (f"{w}/tags", {"name": "Pilot ring", "colour": "#fd7e14"}, "manager", "tag.create"),
        "tags.edit": (f"{w}/tags/{ops['tag_id']}", {"name": "Renamed", "colour": "#198754"}, "manager", "tag.update"),
        "tags.delete": (f"{w}/tags/{ops['tag_id']}/delete", {}, "manager", "tag.delete"),
        "baselines.create": (f"{w}/baselines", {"name": "Built", "tenant": str(ext), "severity": "medium"}, "manager",
                             "baseline.create"),
        "baselines.create_from_backup": (f"{w}/baselines/from-backup",
                                         {"name": "From backup", "backup_set": str(ids["backup_set_id"]),
                                          "scope": "all", "severity": "medium"}, "manager", "baseline.create"),
        "baselines.assign": (f"{w}/baselines/{ops['baseline_id']}/assign", {"target": f"tenant:{ext}"}, "manager",
                             "baseline.assign"),
        "baselines.unassign": (f"{w}/baselines/{ops['baseline_id']}/assignments/{ops['assignment_id']}/remove", {},
                               "manager", "baseline.unassign"),
        "baselines.edit": (f"{w}/baselines/{ops['baseline_id']}/policies/{ops['baseline_policy_id']}/edit",
                           {"action": "any_value", "key": "a"}, "manager", "baseline.edit"),
        "baselines.evaluate": (f"{w}/baselines/{ops['baseline_id']}/evaluate", {}, "operator", "baseline.evaluate"),
        "baselines.delete": (f"{w}/baselines/{ops['baseline_id']}/delete", {}, "manager", "baseline.delete"),
        "bulk.start": (f"{w}/bulk", {"action": "sync", "scope": "selected", "tenant": str(ext)}, "operator",
                       "bulk.start"),
        "alerts.create": (f"{w}/alerts", {"name": "Oncall", "event": "consent_revoked", "channel": "email",
                                          "target": "oncall@example.test", "threshold": "1"}, "manager",
                          "alert_rule.create"),
        "alerts.snooze": (f"{w}/alerts/{ops['rule_id']}/snooze", {"hours": "4"}, "operator", "alert_rule.snooze"),
        "alerts.snooze_tenant": (f"{w}/alerts/{ops['rule_id']}/snooze-tenant", {"tenant": str(ext), "hours": "24"},
                                 "operator", "alert_rule.snooze_tenant"),
        "alerts.delete": (f"{w}/alerts/{ops['rule_id']}/delete", {}, "manager", "alert_rule.delete"),
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
        "workspaces.invite": (f"/admin/workspaces/{a.slug}/invitations",
                              {"email": world.olivia.email, "role": "readonly"}, "owner", "invitation.create"),
        "workspaces.revoke_invitation": (
            f"/admin/workspaces/{a.slug}/invitations/{_invitation_id(db_session, invitation_token)}/revoke", {},
            "owner", "invitation.revoke"),
        # The invitee's own answers (personal: no role in the workspace yet).
        "invitations.accept_signed_in": (f"/invitations/{invitation_token}/accept", {}, "readonly",
                                         "invitation.accept"),
        "invitations.register": (f"/invitations/{invitation_token}/register",
                                 {"name": "New Person", "password": "long enough 1", "confirm_password": "long enough 1"},
                                 "readonly", "user.create"),
        "administration.toggle_admin": (f"/admin/users/{world.olivia.id}/admin", {}, "administrator",
                                        "user.admin_grant"),
        "administration.end_sessions": (f"/admin/users/{world.olivia.id}/sessions/end", {}, "administrator",
                                        "auth.sessions_ended"),
        "workspaces.security": (f"/admin/workspaces/{a.slug}/settings/security", {"require_mfa": "on"}, "owner",
                                "workspace.require_mfa"),
        "sessions.end_one": (f"/admin/account/sessions/{other_session_id}/end", {}, "readonly", "auth.session_end"),
        # Passkeys: JSON ceremonies (tests/test_browser_identity.py drives them in Chromium).
        "passkeys.registration_options": ("/admin/account/passkeys/options", {}, "readonly", "none"),
        "passkeys.register": ("/admin/account/passkeys", {}, "readonly", "auth.passkey_added"),
        "passkeys.remove": ("/admin/account/passkeys/1/remove", {}, "readonly", "auth.passkey_removed"),
        "passkeys.authentication_options": ("/login/passkey/options", {}, "readonly", "none"),
        "passkeys.authenticate": ("/login/passkey", {}, "readonly", "auth.sign_in"),
        # The second factor (tests/test_mfa.py drives these through their pages).
        "mfa.verify": ("/login/verify", {"code": "000000"}, "readonly", "auth.mfa_failed"),
        "mfa.recover": ("/login/recover", {"recovery_code": "aaaaa-aaaaa"}, "readonly", "auth.mfa_failed"),
        "mfa.enrol_totp": ("/admin/account/security/totp", {"code": "000000"}, "readonly", "auth.mfa_enrolled"),
        "mfa.remove_totp": ("/admin/account/security/totp/remove", {"password": TEST_PASSWORD}, "readonly",
                            "auth.mfa_removed"),
        "mfa.regenerate_recovery_codes": ("/admin/account/security/recovery-codes", {"password": TEST_PASSWORD},
                                          "readonly", "auth.recovery_codes_renewed"),
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


def operations_rows(world, db_session) -> dict:
    """A tag, a baseline (a policy, assigned to the tag) and an alert rule of workspace A, made once."""
    if hasattr(world, "operations_ids"):
        return world.operations_ids
    from app.operations_models import AlertRule, Baseline, BaselineAssignment, BaselinePolicy, Tag

    tag = Tag(workspace_id=world.a.id, name="Actions tag")
    baseline = Baseline(workspace_id=world.a.id, name="Actions baseline")
    rule = AlertRule(workspace_id=world.a.id, name="Actions rule", event="new_finding", channel="email",
                     target="ops@example.test")
    db_session.add_all([tag, baseline, rule])
    db_session.flush()
    item = BaselinePolicy(workspace_id=world.a.id, baseline_id=baseline.id, policy_type="deviceConfiguration",
                          platform="windows10", name="Actions policy", settings={"a": True})
    assignment = BaselineAssignment(workspace_id=world.a.id, baseline_id=baseline.id, tag_id=tag.id)
    db_session.add_all([item, assignment])
    db_session.commit()
    world.operations_ids = {"tag_id": tag.id, "baseline_id": baseline.id, "baseline_policy_id": item.id,
                            "assignment_id": assignment.id, "rule_id": rule.id}
    return world.operations_ids


OPERATIONS_ENDPOINTS = ["tags.create", "tags.edit", "tags.delete", "baselines.create",
                        "baselines.create_from_backup", "baselines.assign",
                        "baselines.unassign", "baselines.edit", "baselines.evaluate", "baselines.delete", "bulk.start",
                        "alerts.create", "alerts.snooze", "alerts.snooze_tenant", "alerts.delete"]


def _invitation(db_session, workspace, email):
    """A pending invitation inserted as the owner; returns its link's token."""
    import secrets
    from datetime import timedelta

    from app.web.account.invitations import token_hash
    from app.models import WorkspaceInvitation

    token = secrets.token_urlsafe(32)
    db_session.add(WorkspaceInvitation(workspace_id=workspace.id, email=email, role="readonly",
                                       token_hash=token_hash(token),
                                       expires_at=datetime.now(timezone.utc) + timedelta(days=7)))
    db_session.commit()
    return token


def _invitation_id(db_session, token):
    from app.web.account.invitations import token_hash
    from app.models import WorkspaceInvitation

    if token is None:
        return 0
    return db_session.scalar(select(WorkspaceInvitation.id).where(WorkspaceInvitation.token_hash == token_hash(token)))


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
    "tenant.schedule_disable", "tenant.finding_transition", "workspaces.settings", "workspaces.invite",
    "workspaces.revoke_invitation", "workspaces.change_role", "workspaces.remove_member", "workspaces.create",
    "workspaces.switch", "auth.logout", "auth.change_password", "auth.change_timezone", "tenant.sync_now",
    "tenant.connect", "invitations.accept_signed_in", "administration.toggle_admin", "administration.end_sessions",
    "workspaces.security", "sessions.end_one", "mfa.verify", "mfa.recover", "mfa.enrol_totp", "mfa.remove_totp",
    "mfa.regenerate_recovery_codes", "passkeys.registration_options", "passkeys.register", "passkeys.remove",
    "passkeys.authentication_options", "passkeys.authenticate", *BACKUP_AND_RESTORE, *OPERATIONS_ENDPOINTS,
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
    "workspaces.settings", "workspaces.invite", "workspaces.revoke_invitation", "workspaces.change_role",
    "workspaces.remove_member", "tenant.sync_now", "tenant.sync_resume", "tenant.connect", "workspaces.security",
    *BACKUP_AND_RESTORE, *OPERATIONS_ENDPOINTS,
    *REFUSED_ONLY,
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
    "tenant.finding_transition", "workspaces.settings", "workspaces.revoke_invitation", "workspaces.change_role",
    "workspaces.remove_member", "workspaces.create", "workspaces.switch", "auth.logout", "auth.change_timezone",
    "tenant.sync_now", "tenant.sync_resume", "tenant.connect", "invitations.accept_signed_in",
    "administration.toggle_admin", "administration.end_sessions", "sessions.end_one", *BACKUP_AND_RESTORE,
    *OPERATIONS_ENDPOINTS,
])
def test_post_with_the_role_succeeds_and_is_audited(app, world, db_session, role_users, endpoint):
    url, data, minimum, action = prepare(endpoint, world, db_session)
    # The lowest role that may do it (personal actions, which need no role, as the owner who prepared them).
    user = world.ada if minimum in ("readonly", "administrator") else role_users[minimum]
    if minimum == "administrator":
        world.ada.is_admin = True
        db_session.commit()
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
