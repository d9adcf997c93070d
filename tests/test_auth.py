"""Sign-in and sign-out."""
from __future__ import annotations

import re

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from app.web.account.auth import FAILED_SIGN_IN
from app.models import AuditLog, User
from tests.conftest import TEST_PASSWORD, csrf_token_from, sign_in


def _without_csrf(html: str) -> str:
    return re.sub(r'value="[^"]*"', "", html)


def test_sign_in_redirects_to_the_shell_and_shows_the_user(client, make_user):
    make_user("ada@example.test", name="Ada Lovelace")
    response = sign_in(client, "ada@example.test")
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin"
    page = client.get("/admin", follow_redirects=True).get_data(as_text=True)
    assert "Ada Lovelace" in page
    assert "Sign out" in page


def test_sign_in_email_is_case_insensitive(client, make_user):
    make_user("grace@example.test")
    assert sign_in(client, "  Grace@Example.TEST ").status_code == 302


def test_unknown_email_and_wrong_password_get_the_same_answer(client, make_user):
    make_user("known@example.test")
    wrong_password = sign_in(client, "known@example.test", "not the password")
    unknown_email = sign_in(client, "nobody@example.test", "not the password")
    assert wrong_password.status_code == unknown_email.status_code == 200
    assert FAILED_SIGN_IN in wrong_password.get_data(as_text=True)
    body_a = _without_csrf(wrong_password.get_data(as_text=True)).replace("known@example.test", "EMAIL")
    body_b = _without_csrf(unknown_email.get_data(as_text=True)).replace("nobody@example.test", "EMAIL")
    assert body_a == body_b


def test_inactive_user_cannot_sign_in(client, make_user):
    make_user("gone@example.test", active=False)
    response = sign_in(client, "gone@example.test")
    assert response.status_code == 200
    assert FAILED_SIGN_IN in response.get_data(as_text=True)
    assert client.get("/admin/workspaces").status_code == 302


def test_deactivated_user_loses_an_open_session(client, make_user, db_session):
    user = make_user("later@example.test")
    sign_in(client, user.email)
    assert client.get("/admin/workspaces").status_code == 200
    user.is_active_user = False
    db_session.flush()
    assert client.get("/admin/workspaces").status_code == 302


def test_post_without_csrf_token_is_refused(client, make_user):
    make_user("csrf@example.test")
    response = client.post("/login", data={"email": "csrf@example.test", "password": TEST_PASSWORD})
    assert response.status_code == 400
    assert "Reload the page" in response.get_data(as_text=True)
    assert client.get("/admin/workspaces").status_code == 302


def test_logout_without_csrf_token_is_refused(signed_in_client):
    assert signed_in_client.post("/logout").status_code == 400
    assert signed_in_client.get("/admin/workspaces").status_code == 200


def test_anonymous_visitor_is_sent_to_sign_in_and_comes_back(client, make_user):
    response = client.get("/admin/workspaces")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")
    make_user("back@example.test")
    response = sign_in(client, "back@example.test", next_url="/admin/workspaces")
    assert response.headers["Location"] == "/admin/workspaces"


@pytest.mark.parametrize(
    "next_url",
    [
        "https://evil.example/steal",
        "//evil.example/steal",
        "/\\evil.example",
        "javascript:alert(1)",
        "http:/evil.example",
        "/%0d%0aSet-Cookie:x=1",
    ],
)
def test_external_next_is_not_followed(client, make_user, next_url):
    make_user("careful@example.test")
    # The query string is sent as written: %0d%0a arrives as a real CR LF.
    response = sign_in(client, "careful@example.test", next_url=next_url)
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin"


def test_sign_in_clears_the_previous_session(client, make_user):
    make_user("fixation@example.test")
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
    sign_in(client, "fixation@example.test")
    with client.session_transaction() as session:
        assert "planted" not in session
        assert "_user_id" in session


def test_sign_out_clears_the_whole_session(signed_in_client):
    with signed_in_client.session_transaction() as session:
        session["current_workspace_id"] = 42
    token = csrf_token_from(signed_in_client.get("/admin/workspaces"))
    response = signed_in_client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 302
    with signed_in_client.session_transaction() as session:
        assert "current_workspace_id" not in session
        assert "_user_id" not in session
    assert signed_in_client.get("/admin/workspaces").status_code == 302


def test_logout_is_post_only(signed_in_client):
    assert signed_in_client.get("/logout").status_code == 405


def test_session_cookie_is_httponly_and_samesite_lax(client, make_user):
    make_user("cookie@example.test")
    response = sign_in(client, "cookie@example.test")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_outdated_argon2_hash_is_rehashed_at_sign_in(client, make_user, db_session):
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(TEST_PASSWORD)
    user = make_user("old@example.test", password_hash=weak)
    assert sign_in(client, user.email).status_code == 302
    db_session.refresh(user)
    assert user.password_hash != weak
    assert user.password_hash.startswith("$argon2id$")
    assert not PasswordHasher().check_needs_rehash(user.password_hash)


def test_legacy_pbkdf2_hash_is_accepted_once_and_replaced(client, make_user, db_session):
    legacy = generate_password_hash(TEST_PASSWORD, method="pbkdf2:sha256")
    user = make_user("legacy@example.test", password_hash=legacy)
    assert sign_in(client, user.email).status_code == 302
    db_session.refresh(user)
    assert user.password_hash.startswith("$argon2id$")


def test_sign_in_is_audited(client, make_user, db_session):
    user = make_user("audited@example.test")
    sign_in(client, user.email)
    actions = db_session.scalars(select(AuditLog.action).where(AuditLog.actor_user_id == user.id)).all()
    assert "auth.sign_in" in actions


@pytest.mark.parametrize(
    "form",
    [
        {"email": "", "password": ""},
        {"email": "x" * 5000 + "@example.test", "password": "p"},
        {"email": "a@b.c", "password": "p" * 5000},
    ],
)
def test_bad_sign_in_input_gets_a_form_error_not_a_500(client, form):
    token = csrf_token_from(client.get("/login"))
    response = client.post("/login", data={**form, "csrf_token": token})
    assert response.status_code == 200
    assert "Traceback" not in response.get_data(as_text=True)


def test_nul_bytes_in_a_form_are_a_400_with_a_message(client):
    token = csrf_token_from(client.get("/login"))
    response = client.post("/login", data={"email": "\x00\x01", "password": "\x00", "csrf_token": token})
    assert response.status_code == 400
    assert "NUL character" in response.get_data(as_text=True)


def test_nul_bytes_in_the_query_string_are_a_400(client):
    assert client.get("/login?next=/admin%00").status_code == 400


def test_signed_in_user_visiting_login_goes_to_the_shell(signed_in_client):
    assert signed_in_client.get("/login").headers["Location"] == "/admin"


def test_user_model_lowercases_nothing_by_itself_but_database_refuses_upper_case(db_session):
    from sqlalchemy.exc import IntegrityError

    db_session.add(User(email="Upper@Example.test", name="U", password_hash="x"))
    with pytest.raises(IntegrityError):
        db_session.flush()


def test_a_cookie_copied_before_sign_out_no_longer_works_after_it(client, make_user):
    user = make_user("copied@example.test")
    sign_in(client, user.email)
    stolen = client.get_cookie("tenantatlas_session").value
    token = csrf_token_from(client.get("/admin/workspaces"))
    client.post("/logout", data={"csrf_token": token})
    thief = client.application.test_client()
    thief.set_cookie("tenantatlas_session", stolen)
    response = thief.get("/admin/workspaces")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_password_change_ends_other_sessions_but_keeps_this_one(client, make_user, db_session):
    user = make_user("rotate@example.test")
    other = client.application.test_client()
    sign_in(other, user.email)
    sign_in(client, user.email)
    token = csrf_token_from(client.get("/admin/account/password"))
    response = client.post("/admin/account/password", data={
        "csrf_token": token, "current_password": TEST_PASSWORD, "new_password": "a brand new secret",
        "confirm_password": "a brand new secret"})
    assert response.status_code == 302
    assert client.get("/admin/workspaces").status_code == 200
    assert other.get("/admin/workspaces").status_code == 302
    db_session.refresh(user)
    from app.passwords import verify_password
    assert verify_password(user.password_hash, "a brand new secret")[0]


@pytest.mark.parametrize("form, message", [
    ({"current_password": "wrong one", "new_password": "a brand new secret", "confirm_password": "a brand new secret"},
     "not your current password"),
    ({"current_password": TEST_PASSWORD, "new_password": "short", "confirm_password": "short"}, "at least 10"),
    ({"current_password": TEST_PASSWORD, "new_password": "a brand new secret", "confirm_password": "different one"},
     "differ"),
])
def test_password_change_explains_what_is_wrong(signed_in_client, form, message):
    token = csrf_token_from(signed_in_client.get("/admin/account/password"))
    response = signed_in_client.post("/admin/account/password", data={**form, "csrf_token": token})
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)


def test_a_forged_session_identity_is_anonymous(client, make_user):
    user = make_user("forged@example.test")
    for identity in (str(user.id), f"{user.id}:", f"{user.id}:{'0' * 64}", "x:y", "9" * 40 + ":abc"):
        with client.session_transaction() as session:
            session["_user_id"] = identity
            session["_fresh"] = True
        assert client.get("/admin/workspaces").status_code == 302, identity


def test_a_wrong_current_password_is_audited_and_changes_nothing(signed_in_client, db_session):
    user = signed_in_client.user
    before = user.password_hash
    token = csrf_token_from(signed_in_client.get("/admin/account/password"))
    response = signed_in_client.post("/admin/account/password", data={
        "csrf_token": token, "current_password": "wrong one", "new_password": "a brand new secret",
        "confirm_password": "a brand new secret"})
    assert response.status_code == 400
    entry = db_session.scalar(select(AuditLog).where(AuditLog.action == "auth.password_change_failed"))
    assert entry is not None and entry.actor_user_id == user.id
    db_session.refresh(user)
    assert user.password_hash == before
