"""Connecting a tenant: the admin-consent round trip against the simulator's consent endpoint.

The callback accepts only a state this app signed for this user, workspace and tenant,
unexpired and used once, and only for the same tenant; every outcome is audited.
"""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import ssl

import httpx
import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AuditLog, ConsentRequest, SyncRun, Tenant
from tests.conftest import enter, post_form, sign_in
from tests.graph_support import graph_settings, graph_simulator  # noqa: F401
from tests.sync_support import graph_app  # noqa: F401


@pytest.fixture
def manager_setup(client, graph_app, graph_simulator, make_user, make_workspace, make_tenant, add_member):
    workspace = make_workspace()
    tenant = make_tenant(workspace, name="Northwind Connect")
    graph_simulator.add_tenant(str(tenant.external_id), name="Northwind Connect")
    user = make_user()
    add_member(workspace, user, "manager")
    sign_in(client, user.email)
    enter(client, workspace)
    return workspace, tenant, user


def start(client, tenant) -> str:
    response = post_form(client, f"/admin/t/{tenant.external_id}/connect")
    assert response.status_code == 302
    return response.headers["Location"]


def consent(graph_simulator, consent_url: str, mode: str = "accept") -> str:
    """What the browser does at the consent endpoint: follow it to the redirect back."""
    graph_simulator.set_consent_mode(mode)
    try:
        answer = httpx.get(consent_url, verify=ssl.create_default_context(cafile=str(graph_simulator.ca_bundle)),
                           follow_redirects=False)
    finally:
        graph_simulator.set_consent_mode("accept")
    assert answer.status_code in (302, 303), answer.text[:300]
    return answer.headers["Location"]


def callback_path(location: str) -> str:
    parts = urlsplit(location)
    return f"{parts.path}?{parts.query}"


def follow(graph_simulator, url: str, mode: str = "accept") -> str:
    """The identity platform's answer to a browser at `url` (consent or sign-in): where it sends it back."""
    return consent(graph_simulator, url, mode)


def connect_fully(client, graph_simulator, tenant):
    """Connect, consent, then the administrator's sign-in that proves it: the last callback's response."""
    step_one = client.get(callback_path(consent(graph_simulator, start(client, tenant))))
    assert step_one.status_code == 302, step_one.get_data(as_text=True)[:500]
    authorize = step_one.headers["Location"]
    assert "/oauth2/v2.0/authorize?" in authorize and f"/{tenant.external_id}/" in authorize
    return client.get(callback_path(follow(graph_simulator, authorize)))


def audit_actions(tenant) -> list[str]:
    return [a for a in db.session.scalars(select(AuditLog.action).where(AuditLog.tenant_id == tenant.id)
                                          .order_by(AuditLog.id))]


def test_connect_sends_the_browser_to_the_tenants_admin_consent_endpoint(client, manager_setup, graph_settings):
    _workspace, tenant, _user = manager_setup
    location = start(client, tenant)
    parts = urlsplit(location)
    assert location.startswith(f"{graph_settings.login_url}/{tenant.external_id}/v2.0/adminconsent?")
    query = parse_qs(parts.query)
    assert query["client_id"] == [graph_settings.client_id]
    assert query["scope"] == [f"{graph_settings.api_url}/.default"]
    assert query["redirect_uri"][0].endswith("/admin/consent/callback")
    assert query["state"][0]


def test_good_consent_connects_records_permissions_and_queues_the_first_sync(client, manager_setup, graph_simulator):
    _workspace, tenant, user = manager_setup
    response = connect_fully(client, graph_simulator, tenant)
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/admin/t/{tenant.external_id}/sync")
    tenant = db.session.get(Tenant, tenant.id)
    assert tenant.connection_status == "connected"
    assert tenant.consented_by_user_id == user.id and tenant.granted_permissions
    run = db.session.scalar(select(SyncRun).where(SyncRun.tenant_id == tenant.id))
    assert run.status == "queued" and run.trigger == "connect"
    jobs = db.session.execute(select(db.text("args")).select_from(db.text("procrastinate_jobs"))
                              .where(db.text("task_name = 'sync_tenant'"))).scalars().all()
    assert {"sync_run_id": run.id, "workspace_id": tenant.workspace_id} in jobs
    assert audit_actions(tenant)[-2:] == ["tenant.consent_answered", "tenant.connect"]
    page = client.get(f"/admin/t/{tenant.external_id}/sync").get_data(as_text=True)
    assert "Connected" in page


def test_connecting_a_tenant_raises_the_tenant_connected_alert_for_the_worker_to_send(client, manager_setup,
                                                                                     graph_simulator):
    from app.operations_models import AlertEvent, AlertRule

    workspace, tenant, _user = manager_setup
    rule = AlertRule(workspace_id=workspace.id, name="New customers", event="tenant_connected", channel="email",
                     target="noc@msp.example")
    db.session.add(rule)
    db.session.commit()
    assert connect_fully(client, graph_simulator, tenant).status_code == 302
    [event] = db.session.scalars(select(AlertEvent).where(AlertEvent.rule_id == rule.id)).all()
    assert (event.tenant_id, event.subject, event.status) == (tenant.id, "tenant_connected", "pending")
    jobs = db.session.execute(select(db.text("args")).select_from(db.text("procrastinate_jobs"))
                              .where(db.text("task_name = 'deliver_alert'"))).scalars().all()
    assert [job["alert_event_id"] for job in jobs] == [event.id]  # queued: the request itself sends nothing


def test_a_replayed_consent_answer_is_refused(client, manager_setup, graph_simulator):
    _workspace, tenant, _user = manager_setup
    back = callback_path(consent(graph_simulator, start(client, tenant)))
    assert client.get(back).status_code == 302  # on to the administrator's sign-in
    again = client.get(back)
    assert again.status_code == 400 and "used already" in again.get_data(as_text=True)
    assert audit_actions(tenant)[-1] == "tenant.connect_refused"


def test_a_forged_state_is_refused(client, manager_setup, graph_simulator):
    _workspace, tenant, _user = manager_setup
    back = consent(graph_simulator, start(client, tenant))
    forged = back.replace("state=", "state=x", 1)
    response = client.get(callback_path(forged))
    assert response.status_code == 400 and "not started by TenantAtlas" in response.get_data(as_text=True)
    assert db.session.get(Tenant, tenant.id).connection_status == "not_connected"


def test_an_expired_state_is_refused(client, manager_setup, graph_simulator, monkeypatch):
    _workspace, tenant, _user = manager_setup
    back = consent(graph_simulator, start(client, tenant))
    monkeypatch.setattr("app.sync.connection.STATE_MAX_AGE_SECONDS", -1)
    response = client.get(callback_path(back))
    assert response.status_code == 400 and "expired" in response.get_data(as_text=True)


def test_a_state_of_another_user_is_refused(app, client, manager_setup, graph_simulator, make_user, add_member):
    workspace, tenant, _user = manager_setup
    back = callback_path(consent(graph_simulator, start(client, tenant)))
    other = make_user()
    add_member(workspace, other, "owner")
    other_client = app.test_client()
    sign_in(other_client, other.email)
    response = other_client.get(back)
    assert response.status_code == 400 and "another user" in response.get_data(as_text=True)
    assert db.session.get(Tenant, tenant.id).connection_status == "not_connected"


def test_consent_returned_for_another_tenant_is_refused(client, manager_setup, graph_simulator):
    _workspace, tenant, _user = manager_setup
    back = consent(graph_simulator, start(client, tenant))
    query = parse_qs(urlsplit(back).query)
    mismatched = (f"/admin/consent/callback?admin_consent=True&tenant=11111111-2222-3333-4444-555555555555"
                  f"&state={query['state'][0]}")
    response = client.get(mismatched)
    assert response.status_code == 400 and "another tenant" in response.get_data(as_text=True)
    assert db.session.get(Tenant, tenant.id).connection_status == "not_connected"
    assert audit_actions(tenant)[-1] == "tenant.connect_refused"


def test_access_denied_is_shown_as_a_clear_message(client, manager_setup, graph_simulator):
    _workspace, tenant, _user = manager_setup
    back = consent(graph_simulator, start(client, tenant), mode="deny")
    assert "error=access_denied" in back
    response = client.get(callback_path(back))
    text = response.get_data(as_text=True)
    assert response.status_code == 400 and "Consent was not granted" in text and "access_denied" in text
    assert db.session.get(Tenant, tenant.id).connection_status == "not_connected"


def test_a_readonly_member_cannot_start_a_connection(client, graph_app, make_user, make_workspace, make_tenant,
                                                     add_member):
    workspace = make_workspace()
    tenant = make_tenant(workspace)
    user = make_user()
    add_member(workspace, user, "readonly")
    sign_in(client, user.email)
    enter(client, workspace)
    response = post_form(client, f"/admin/t/{tenant.external_id}/connect")
    assert response.status_code == 403
    assert db.session.scalar(select(ConsentRequest).where(ConsentRequest.tenant_id == tenant.id)) is None


def test_a_never_connected_tenant_never_looks_healthy(client, make_user, make_workspace, make_tenant, add_member):
    workspace = make_workspace()
    tenant = make_tenant(workspace, name="Fresh Customer")
    user = make_user()
    add_member(workspace, user, "readonly")
    sign_in(client, user.email)
    page = enter(client, workspace).get_data(as_text=True)
    row = page[page.index("Fresh Customer"):]
    row = row[:row.index("</tr>")]
    assert "Not connected" in row and "not checked" in row and "bi-check-circle" not in row
    for path in ("", "/permissions", "/sync"):
        assert "Not connected" in client.get(f"/admin/t/{tenant.external_id}{path}").get_data(as_text=True)


def test_sync_now_queues_one_run_and_says_so_when_one_is_active(client, graph_app, make_user, make_workspace,
                                                                make_tenant, add_member):
    workspace = make_workspace()
    tenant = make_tenant(workspace)
    tenant.connection_status = "connected"
    db.session.commit()
    user = make_user()
    add_member(workspace, user, "operator")
    sign_in(client, user.email)
    enter(client, workspace)
    assert post_form(client, f"/admin/t/{tenant.external_id}/sync").status_code == 302
    response = post_form(client, f"/admin/t/{tenant.external_id}/sync", follow_redirects=True)
    assert "already queued" in response.get_data(as_text=True)
    assert len(db.session.scalars(select(SyncRun).where(SyncRun.tenant_id == tenant.id)).all()) == 1


def test_consent_for_a_tenant_proved_in_another_workspace_is_refused_without_naming_it(
        client, manager_setup, graph_simulator, make_workspace, make_tenant):
    from datetime import datetime, timezone

    workspace, tenant, _user = manager_setup
    elsewhere = make_workspace(name="Rival Secret MSP")
    # The real owner registered the same id and proved it by consent; ours is a mere claim.
    rival = make_tenant(elsewhere, name="Rival Copy", external_id=tenant.external_id)
    rival.consented_at, rival.connection_status = datetime.now(timezone.utc), "connected"
    db.session.commit()
    response = connect_fully(client, graph_simulator, tenant)
    text = response.get_data(as_text=True)
    assert response.status_code == 409 and "already connected to TenantAtlas in another workspace" in text
    assert "Rival" not in text and elsewhere.slug not in text
    assert db.session.get(Tenant, tenant.id).consented_at is None
    assert audit_actions(tenant)[-1] == "tenant.connect_refused"


def test_a_typed_consent_answer_without_an_administrators_sign_in_connects_nothing(client, manager_setup,
                                                                                   graph_simulator):
    """The admin consent answer is not signed by Entra: anyone can type `admin_consent=True&tenant=<id>`
    for a tenant that consented to the app once. Without the sign-in of one of that tenant's
    administrators, nothing is connected and nothing is read."""
    _workspace, tenant, _user = manager_setup
    query = parse_qs(urlsplit(start(client, tenant)).query)  # the attacker never visits the consent page
    typed = f"/admin/consent/callback?admin_consent=True&tenant={tenant.external_id}&state={query['state'][0]}"
    step_one = client.get(typed)
    assert step_one.status_code == 302 and "/oauth2/v2.0/authorize?" in step_one.headers["Location"]
    graph_simulator.set_signin_user(str(tenant.external_id), username="someone@customer.example", roles=())
    try:
        response = client.get(callback_path(follow(graph_simulator, step_one.headers["Location"])))
    finally:
        graph_simulator.set_signin_user(str(tenant.external_id))
    text = response.get_data(as_text=True)
    assert response.status_code == 400 and "is not a Global Administrator or Privileged Role Administrator" in text
    tenant = db.session.get(Tenant, tenant.id)
    assert tenant.connection_status == "not_connected" and tenant.consented_at is None
    assert db.session.scalar(select(SyncRun).where(SyncRun.tenant_id == tenant.id)) is None
    assert audit_actions(tenant)[-1] == "tenant.connect_refused"


def test_the_sign_in_answer_is_used_once(client, manager_setup, graph_simulator):
    _workspace, tenant, _user = manager_setup
    step_one = client.get(callback_path(consent(graph_simulator, start(client, tenant))))
    back = callback_path(follow(graph_simulator, step_one.headers["Location"]))
    assert client.get(back).status_code == 302
    again = client.get(back)
    assert again.status_code == 400 and "does not belong to a connection in progress" in again.get_data(as_text=True)


def test_a_cancelled_sign_in_is_a_clear_message(client, manager_setup, graph_simulator):
    _workspace, tenant, _user = manager_setup
    step_one = client.get(callback_path(consent(graph_simulator, start(client, tenant))))
    back = follow(graph_simulator, step_one.headers["Location"], mode="deny")
    response = client.get(callback_path(back))
    assert response.status_code == 400 and "did not complete" in response.get_data(as_text=True)
    assert db.session.get(Tenant, tenant.id).connection_status == "not_connected"


def test_the_administrators_sign_in_asks_for_an_id_token_only(client, manager_setup, graph_simulator):
    _workspace, tenant, _user = manager_setup
    step_one = client.get(callback_path(consent(graph_simulator, start(client, tenant))))
    scopes = parse_qs(urlsplit(step_one.headers["Location"]).query)["scope"][0].split()
    assert "openid" in scopes and "offline_access" not in scopes
    query = parse_qs(urlsplit(step_one.headers["Location"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"][0]
