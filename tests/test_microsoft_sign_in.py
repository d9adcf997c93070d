"""Sign in with Microsoft against the simulator's identity platform: the one success and every refusal.

Each refusal is a clear page, creates nothing (no account, no session) and is audited
(auth.microsoft_refused with its reason).
"""
from __future__ import annotations

import html
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from app.config import ConfigError
from app.models import AuditLog, User, UserSession, WorkspaceMembership
from app.web.account.oidc import OidcSettings
from simulator import id_token_faults
from tests.conftest import post_form, sign_in
from tests.graph_support import graph_settings, graph_simulator  # noqa: F401  (fixtures)
from tests.oidc_support import (certificate_settings, microsoft_sign_in, oidc_app, provider_answer,  # noqa: F401
                                staff_tenant, use_oidc)


@pytest.fixture
def linked_ada(db_session, graph_simulator, staff_tenant, make_user):  # noqa: F811
    """A TenantAtlas account linked to the staff tenant's sign-in user (tid, oid)."""
    person = graph_simulator.signin_user(staff_tenant)
    user = make_user(person["username"], name="Ada Lovelace")
    user.entra_tenant_id, user.entra_object_id = uuid.UUID(staff_tenant), uuid.UUID(person["object_id"])
    db_session.commit()
    return user


def counts(db_session):
    return (db_session.scalar(select(func.count()).select_from(User)),
            db_session.scalar(select(func.count()).select_from(UserSession)))


def refusal_reasons(db_session):
    return [d["reason"] for d in db_session.scalars(select(AuditLog.details).where(
        AuditLog.action == "auth.microsoft_refused").order_by(AuditLog.id))]


def signed_in(client) -> bool:
    return client.get("/admin/workspaces").status_code == 200


def test_the_sign_in_page_offers_microsoft_only_when_configured(client, oidc_app, app):
    assert "Sign in with Microsoft" in client.get("/login").get_data(as_text=True)


def test_the_authorize_request_uses_pkce_a_nonce_and_the_configured_tenant(client, oidc_app, staff_tenant,
                                                                        graph_simulator):  # noqa: F811
    location = client.get("/login/microsoft").headers["Location"]
    parts = urlsplit(location)
    query = parse_qs(parts.query)
    assert location.startswith(f"{graph_simulator.login_url}/{staff_tenant}/oauth2/v2.0/authorize?")
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["nonce"][0] and query["state"][0] and "openid" in query["scope"][0].split()
    assert query["client_id"] == [graph_simulator.client_id]


def test_a_linked_person_signs_in_with_a_strong_session(client, oidc_app, linked_ada, graph_simulator,
                                                      db_session):  # noqa: F811
    response = microsoft_sign_in(client, graph_simulator)
    assert response.status_code == 302 and response.headers["Location"] == "/admin"
    assert signed_in(client)
    row = db_session.scalars(select(UserSession).where(UserSession.user_id == linked_ada.id)).one()
    assert row.strong and row.auth_method == "microsoft"
    assert db_session.scalar(select(AuditLog.details).where(AuditLog.action == "auth.sign_in")) == {
        "method": "microsoft"}


def test_a_certificate_credential_works_too(client, app, graph_settings, graph_simulator, staff_tenant,
                                           linked_ada):  # noqa: F811
    undo = use_oidc(app, graph_settings, certificate_settings(graph_simulator, staff_tenant))
    try:
        response = microsoft_sign_in(client, graph_simulator)
    finally:
        undo()
    assert response.status_code == 302 and signed_in(client)


def assert_refused(response, db_session, before, words: str, reason: str, status: int = 400):
    body = html.unescape(response.get_data(as_text=True))
    assert response.status_code == status, body[:500]
    assert "Sign-in with Microsoft refused" in body and words in body
    assert counts(db_session) == before  # no account, no session
    assert refusal_reasons(db_session)[-1].startswith(reason)


def test_a_wrong_state_is_refused(client, oidc_app, linked_ada, graph_simulator, db_session):  # noqa: F811
    before = counts(db_session)
    location = client.get("/login/microsoft").headers["Location"]
    answer = provider_answer(graph_simulator, location)
    query = parse_qs(urlsplit(answer).query)
    forged = f"/login/microsoft/callback?code={query['code'][0]}&state=forged-{uuid.uuid4().hex}"
    assert_refused(client.get(forged), db_session, before, "does not belong to a sign-in started in this browser",
                   "wrong state")
    assert not signed_in(client)


def test_a_replayed_answer_is_refused(client, oidc_app, linked_ada, graph_simulator, db_session, app):  # noqa: F811
    location = client.get("/login/microsoft").headers["Location"]
    answer = provider_answer(graph_simulator, location)
    assert client.get(answer).status_code == 302  # the first use signs in
    users, sessions = counts(db_session)
    # The same answer again, in the same browser: its state was used.
    assert_refused(client.get(answer), db_session, (users, sessions), "used already", "wrong state")


def test_a_replayed_code_is_refused_by_the_provider(oidc_app, linked_ada, graph_simulator, db_session,
                                                    app):  # noqa: F811
    first = app.test_client()
    answer = provider_answer(graph_simulator, first.get("/login/microsoft").headers["Location"])
    assert first.get(answer).status_code == 302
    old_code = parse_qs(urlsplit(answer).query)["code"][0]
    before = counts(db_session)
    # An attacker's own sign-in (fresh state and verifier) with the victim's code.
    attacker = app.test_client()
    state = parse_qs(urlsplit(attacker.get("/login/microsoft").headers["Location"]).query)["state"][0]
    response = attacker.get(f"/login/microsoft/callback?code={old_code}&state={state}")
    assert_refused(response, db_session, before, "refused this sign-in's code", "code refused")
    assert not signed_in(attacker)


@pytest.mark.parametrize("fault,words,reason,status", [
    ("wrong_nonce", "does not match the sign-in started here", "wrong nonce", 400),
    ("wrong_issuer", "came from another issuer", "wrong issuer", 400),
    ("wrong_audience", "meant for another application", "wrong audience", 400),
    ("expired", "had expired", "expired token", 400),
    ("other_key", "not signed by your Microsoft Entra tenant's keys", "bad signature", 400),
    ("unknown_key", "not signed by your Microsoft Entra tenant's keys", "unknown signing key", 400),
    ("other_tenant", "another Microsoft Entra organization", "another tenant", 403),
])
def test_a_bad_id_token_is_refused(client, oidc_app, linked_ada, graph_simulator, staff_tenant, db_session,
                                   fault, words, reason, status):  # noqa: F811
    before = counts(db_session)
    id_token_faults.inject(graph_simulator, staff_tenant, fault)
    try:
        response = microsoft_sign_in(client, graph_simulator)
    finally:
        id_token_faults.clear(graph_simulator)
    assert_refused(response, db_session, before, words, reason, status)
    assert not signed_in(client)


def test_an_unknown_person_is_told_to_ask_for_an_invitation_and_nothing_is_created(
        client, oidc_app, graph_simulator, staff_tenant, db_session, make_user):  # noqa: F811
    # Same email as the Microsoft account, but never linked: an email alone matches nobody.
    make_user(graph_simulator.signin_user(staff_tenant)["username"])
    before = counts(db_session)
    response = microsoft_sign_in(client, graph_simulator)
    assert_refused(response, db_session, before, "Ask your administrator for an invitation", "unknown person", 403)


def test_an_invitation_accepted_with_microsoft_links_the_account(client, oidc_app, graph_simulator, staff_tenant,
                                                                 world, db_session, app):  # noqa: F811
    email = graph_simulator.signin_user(staff_tenant)["username"].lower()
    owner = app.test_client()
    sign_in(owner, world.ada.email)
    body = post_form(owner, f"/admin/workspaces/{world.a.slug}/invitations",
                     {"email": email, "role": "operator"}).get_data(as_text=True)
    token = body.split("/invitations/")[1].split('"')[0]
    assert 'href="/invitations/' + token + '/microsoft"' in client.get(f"/invitations/{token}").get_data(as_text=True)
    response = microsoft_sign_in(client, graph_simulator, start=f"/invitations/{token}/microsoft")
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    user = db_session.scalar(select(User).where(User.email == email))
    assert str(user.entra_tenant_id) == staff_tenant and user.password_hash == "!"
    assert db_session.scalar(select(WorkspaceMembership.role).where(WorkspaceMembership.user_id == user.id)) == \
        "operator"
    # From now on the same Microsoft account signs in by itself.
    later = app.test_client()
    assert microsoft_sign_in(later, graph_simulator).status_code == 302 and signed_in(later)


def test_an_invitation_for_another_email_is_refused_with_microsoft(client, oidc_app, graph_simulator, world,
                                                                   db_session, app):  # noqa: F811
    owner = app.test_client()
    sign_in(owner, world.ada.email)
    body = post_form(owner, f"/admin/workspaces/{world.a.slug}/invitations",
                     {"email": "someone.else@example.test", "role": "operator"}).get_data(as_text=True)
    token = body.split("/invitations/")[1].split('"')[0]
    before = counts(db_session)
    response = microsoft_sign_in(client, graph_simulator, start=f"/invitations/{token}/microsoft")
    assert response.status_code == 403 and "This invitation is for someone.else@example.test" in \
        response.get_data(as_text=True)
    assert counts(db_session) == before


def test_without_configuration_the_routes_do_not_exist(client):
    assert client.get("/login/microsoft").status_code == 404
    assert client.get("/login/microsoft/callback?code=x&state=y").status_code == 404
    assert "Sign in with Microsoft" not in client.get("/login").get_data(as_text=True)


@pytest.mark.parametrize("environ,message", [
    ({"OIDC_CLIENT_ID": "x", "OIDC_TENANT": "common", "OIDC_CLIENT_SECRET": "s"}, "OIDC_TENANT must be"),
    ({"OIDC_CLIENT_ID": "x", "OIDC_TENANT": str(uuid.uuid4())}, "needs OIDC_CLIENT_SECRET or OIDC_CLIENT_CERTIFICATE"),
    ({"OIDC_CLIENT_ID": "x", "OIDC_TENANT": str(uuid.uuid4()), "OIDC_CLIENT_CERTIFICATE": "/nonexistent.pem"},
     "OIDC_CLIENT_CERTIFICATE cannot be read"),
])
def test_bad_oidc_configuration_is_a_clear_error(environ, message):
    with pytest.raises(ConfigError, match=message):
        OidcSettings.from_environ(environ)


def test_no_oidc_client_id_means_local_accounts_only():
    assert OidcSettings.from_environ({}) is None
