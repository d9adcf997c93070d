"""Passkey ceremonies' server side: options, and answers that must be refused (the real ceremonies run in
Chromium with a virtual authenticator: tests/test_browser_identity.py)."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from app.models import AuditLog, UserSession
from tests.conftest import csrf_token, csrf_token_from


def post_json(client, url, body, token):
    return client.post(url, data=json.dumps(body), content_type="application/json",
                       headers={"X-CSRFToken": token, "Accept": "application/json"})


def test_registration_options_name_this_site_and_the_person(signed_in_client):
    token = csrf_token(signed_in_client)
    response = post_json(signed_in_client, "/admin/account/passkeys/options", {}, token)
    options = response.get_json()
    assert options["rp"] == {"id": "localhost", "name": "TenantAtlas"}
    assert options["user"]["name"] == "member@example.test"
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert len(options["challenge"]) >= 43


def test_sign_in_options_without_an_account_ask_for_a_discoverable_passkey(client):
    token = csrf_token_from(client.get("/login"))
    options = post_json(client, "/login/passkey/options", {}, token).get_json()
    assert options["rpId"] == "localhost" and options["allowCredentials"] == []
    assert options["userVerification"] == "required"


def test_an_answer_without_a_ceremony_is_refused_and_audited(client, db_session):
    token = csrf_token_from(client.get("/login"))
    response = post_json(client, "/login/passkey", {"credential": {"id": "AAAA", "rawId": "AAAA"}}, token)
    assert response.status_code == 400 and "expired or was already used" in response.get_json()["error"]
    assert db_session.scalar(select(AuditLog.details).where(AuditLog.action == "auth.passkey_refused")) == {
        "reason": "no challenge"}
    assert db_session.scalar(select(UserSession.id)) is None


def test_an_unknown_passkey_is_refused(client, db_session):
    token = csrf_token_from(client.get("/login"))
    post_json(client, "/login/passkey/options", {}, token)
    response = post_json(client, "/login/passkey", {"credential": {"id": "AAAA", "rawId": "AAAA"}}, token)
    assert response.status_code == 400 and "not registered" in response.get_json()["error"]


def test_a_challenge_is_used_once(client):
    token = csrf_token_from(client.get("/login"))
    post_json(client, "/login/passkey/options", {}, token)
    post_json(client, "/login/passkey", {"credential": {"id": "AAAA", "rawId": "AAAA"}}, token)
    again = post_json(client, "/login/passkey", {"credential": {"id": "AAAA", "rawId": "AAAA"}}, token)
    assert "expired or was already used" in again.get_json()["error"]


@pytest.mark.parametrize("body", [None, "not json", [], {"credential": "x"}, {"credential": {"rawId": "!!!"}},
                                  {"credential": {"rawId": "A" * 70000}}])
def test_malformed_answers_are_a_clear_4xx_never_a_500(signed_in_client, body):
    token = csrf_token(signed_in_client)
    for url in ("/admin/account/passkeys", "/login/passkey"):
        data = body if isinstance(body, str) else json.dumps(body)
        response = signed_in_client.post(url, data=data, content_type="application/json",
                                         headers={"X-CSRFToken": token, "Accept": "application/json"})
        assert 400 <= response.status_code < 500, (url, body, response.status_code)


def test_ceremonies_need_the_csrf_token(signed_in_client):
    response = signed_in_client.post("/admin/account/passkeys/options", data="{}", content_type="application/json")
    assert response.status_code == 400
