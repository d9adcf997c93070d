"""A workspace that requires MFA serves none of its routes to a password-only session (over the URL map)."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from app.access import SESSION_WORKSPACE_KEY
from app.models import UserSession
from tests.conftest import csrf_token, csrf_token_from, enter, post_form, sign_in
from tests.test_access_matrix import REDIRECTING_ENDPOINTS, build_url
from tests.test_mfa import code, enrol

WORKSPACE_PREFIXES = ("/admin/t/", "/admin/w/", "/admin/workspaces/<slug>")


def workspace_rules(app, method: str):
    rules = sorted((rule for rule in app.url_map.iter_rules()
                    if rule.rule.startswith(WORKSPACE_PREFIXES) and method in rule.methods), key=lambda r: r.rule)
    assert len(rules) >= (20 if method == "GET" else 10)
    return rules


@pytest.fixture
def strict_a(world, db_session):
    world.a.require_mfa = True
    db_session.commit()
    return world


def make_current(client, workspace):
    """As if the member had been working in the workspace before it required MFA."""
    with client.session_transaction() as session:
        session[SESSION_WORKSPACE_KEY] = workspace.id


def test_every_route_of_the_workspace_sends_a_password_only_member_to_enrol(app, strict_a):
    client = app.test_client()
    sign_in(client, strict_a.ada.email)
    for method in ("GET", "POST"):
        token = csrf_token(client)
        for rule in workspace_rules(app, method):
            make_current(client, strict_a.a)
            url = build_url(rule, strict_a, membership_id=1, invitation_id=1)
            response = client.get(url) if method == "GET" else client.post(
                url, data={"csrf_token": token, "name": "Changed", "external_id": "6f1c7a52-93d4-4c39-9a57-0d3c5a0e7b11"})
            assert response.status_code == 302, f"{method} {url}: {response.status_code}"
            assert response.headers["Location"].startswith("/admin/account/security"), f"{method} {url}"
            assert "ALPHA" not in response.get_data(as_text=True)
    db_name = client.get("/admin/account/security").get_data(as_text=True)
    assert "Alpha MSP requires members to use multi-factor authentication" in db_name


def test_the_redirect_does_not_leave_the_workspace_current(app, strict_a):
    client = app.test_client()
    sign_in(client, strict_a.ada.email)
    make_current(client, strict_a.a)
    client.get(f"/admin/w/{strict_a.a.slug}/managed-tenants")
    with client.session_transaction() as session:
        assert SESSION_WORKSPACE_KEY not in session
    assert "Alpha Customer" not in client.get("/admin/account/security").get_data(as_text=True)


def test_after_enrolling_every_get_route_is_served(app, strict_a):
    client = app.test_client()
    sign_in(client, strict_a.ada.email)
    enrol(client)  # proves a factor in this session
    enter(client, strict_a.a)
    for rule in workspace_rules(app, "GET"):
        url = build_url(rule, strict_a, membership_id=1, invitation_id=1)
        response = client.get(url)
        expected = (301, 302) if rule.endpoint in REDIRECTING_ENDPOINTS else (200,)
        assert response.status_code in expected, f"{url}: {response.status_code}"


def test_a_member_with_a_factor_in_a_password_only_session_confirms_it_and_goes_on(app, strict_a, db_session):
    client = app.test_client()
    sign_in(client, strict_a.ada.email)
    secret, _ = enrol(client)
    # This session was proved with the enrolment code; make it an older, password-only one.
    db_session.execute(UserSession.__table__.update().values(strong=False, auth_method="password"))
    db_session.commit()
    landing = f"/admin/w/{strict_a.a.slug}/managed-tenants"
    response = client.get(landing)
    assert response.status_code == 302 and response.headers["Location"].startswith("/login/verify?next=")
    page = client.get(response.headers["Location"])
    next_code = code(secret, 1)
    confirmed = client.post(response.headers["Location"], data={"csrf_token": csrf_token_from(page), "code": next_code})
    assert confirmed.status_code == 302 and confirmed.headers["Location"] == landing
    assert client.get(landing).status_code == 200
    assert db_session.scalar(select(UserSession.auth_method)) == "password+totp"


def test_other_workspaces_keep_serving_password_only_sessions(app, strict_a):
    client = app.test_client()
    sign_in(client, strict_a.dual.email)  # operator in A (strict) and B (not)
    assert client.get(f"/admin/w/{strict_a.b.slug}/managed-tenants").status_code == 200
    assert client.get(f"/admin/w/{strict_a.a.slug}/managed-tenants").status_code == 302


def test_strangers_still_get_a_404_not_a_hint_that_mfa_is_required(app, strict_a):
    client = app.test_client()
    sign_in(client, strict_a.olivia.email)
    assert client.get(f"/admin/w/{strict_a.a.slug}/managed-tenants").status_code == 404


def test_an_owner_turns_the_requirement_on_only_from_a_strong_session(app, world, db_session):
    client = app.test_client()
    sign_in(client, world.ada.email)
    url = f"/admin/workspaces/{world.a.slug}/settings/security"
    refused = post_form(client, url, {"require_mfa": "on"}, follow_redirects=True)
    assert "Sign in with a second factor yourself first" in refused.get_data(as_text=True)
    db_session.refresh(world.a)
    assert not world.a.require_mfa
    enrol(client)
    assert post_form(client, url, {"require_mfa": "on"}).status_code == 302
    db_session.refresh(world.a)
    assert world.a.require_mfa
    dual = app.test_client()
    sign_in(dual, world.dual.email)
    assert post_form(dual, url, {}).status_code == 302  # redirected to enrol before any role check
