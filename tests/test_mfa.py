"""TOTP second factor: enrolment, wrong and replayed codes, recovery codes once, the lost-device path, limits."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from html import unescape

import pyotp
import pytest
import segno
from sqlalchemy import select

from app.models import AuditLog, RecoveryCode, UserSession
from tests.conftest import TEST_PASSWORD, csrf_token_from, make_test_app, post_form, sign_in

SECRET_RE = re.compile(r'<code class="totp-secret">([A-Z2-7]+)</code>')
CODES_RE = re.compile(r"<li>([a-z2-9]{5}-[a-z2-9]{5})</li>")


def step_now() -> int:
    return pyotp.TOTP(pyotp.random_base32()).timecode(datetime.now(timezone.utc))


def code(secret: str, offset: int = 0) -> str:
    return pyotp.TOTP(secret).generate_otp(step_now() + offset)


def enrol(client):
    """Set up an authenticator through the pages; returns (secret, recovery codes)."""
    page = client.get("/admin/account/security/totp")
    body = page.get_data(as_text=True)
    secret = SECRET_RE.search(body).group(1)
    response = client.post("/admin/account/security/totp", data={"csrf_token": csrf_token_from(page),
                                                                  "code": code(secret)})
    assert response.status_code == 200, response.get_data(as_text=True)[:600]
    codes = CODES_RE.findall(response.get_data(as_text=True))
    assert len(codes) == 10
    return secret, codes


def password_step(client, email):
    """The password part of a sign-in; returns the verify page."""
    response = sign_in(client, email)
    assert response.status_code == 302 and response.headers["Location"] == "/login/verify"
    return client.get("/login/verify")


def signed_in(client) -> bool:
    return client.get("/admin/workspaces").status_code == 200


def test_enrolment_shows_a_locally_drawn_qr_code_and_needs_a_right_code(signed_in_client, db_session):
    page = signed_in_client.get("/admin/account/security/totp").get_data(as_text=True)
    qr = re.search(r'<img class="totp-qr[^"]*" src="(data:image/svg\+xml[^"]+)"', page).group(1)
    secret = SECRET_RE.search(page).group(1)
    # Drawn here (no external service) from the otpauth URI of this secret and account.
    uri = pyotp.TOTP(secret).provisioning_uri(name=signed_in_client.user.email, issuer_name="TenantAtlas")
    assert qr == segno.make(uri, error="m").svg_data_uri(scale=5, border=2).replace("&", "&amp;").replace("'", "&#39;") \
        or unescape(qr) == segno.make(uri, error="m").svg_data_uri(scale=5, border=2)
    wrong = post_form(signed_in_client, "/admin/account/security/totp", {"code": "000000"})
    assert wrong.status_code == 400 and "That code is not right" in wrong.get_data(as_text=True)
    _, codes = enrol(signed_in_client)
    user = signed_in_client.user
    db_session.refresh(user)
    assert user.totp_enabled_at is not None
    assert db_session.scalar(select(AuditLog.action).where(AuditLog.action == "auth.mfa_enrolled"))
    assert len(db_session.scalars(select(RecoveryCode.code_hash).where(RecoveryCode.user_id == user.id)).all()) == 10
    assert all(c not in (h for h in db_session.scalars(select(RecoveryCode.code_hash))) for c in codes)  # hashed


def test_after_enrolment_a_password_alone_does_not_sign_in(app, signed_in_client):
    secret, _ = enrol(signed_in_client)
    other = app.test_client()
    page = password_step(other, signed_in_client.user.email)
    assert "Confirm it is you" in page.get_data(as_text=True)
    assert not signed_in(other)
    response = other.post("/login/verify", data={"csrf_token": csrf_token_from(page), "code": code(secret, 1)})
    assert response.status_code == 302 and signed_in(other)


def test_a_wrong_code_is_refused_and_audited(app, signed_in_client, db_session):
    enrol(signed_in_client)
    other = app.test_client()
    page = password_step(other, signed_in_client.user.email)
    response = other.post("/login/verify", data={"csrf_token": csrf_token_from(page), "code": "123456"})
    assert response.status_code == 400 and "That code is not right" in response.get_data(as_text=True)
    assert not signed_in(other)
    entry = db_session.scalar(select(AuditLog).where(AuditLog.action == "auth.mfa_failed"))
    assert entry.details == {"reason": "wrong code"} and entry.actor_user_id == signed_in_client.user.id


def test_a_code_works_once_even_within_its_window(app, signed_in_client, db_session):
    secret, _ = enrol(signed_in_client)  # used the current step
    first = app.test_client()
    page = password_step(first, signed_in_client.user.email)
    replay = first.post("/login/verify", data={"csrf_token": csrf_token_from(page), "code": code(secret)})
    assert replay.status_code == 400 and "This code was used already" in replay.get_data(as_text=True)
    next_code = code(secret, 1)
    assert first.post("/login/verify", data={"csrf_token": csrf_token_from(page), "code": next_code}).status_code == 302
    second = app.test_client()
    page = password_step(second, signed_in_client.user.email)
    again = second.post("/login/verify", data={"csrf_token": csrf_token_from(page), "code": next_code})
    assert again.status_code == 400 and not signed_in(second)
    reasons = [d["reason"] for d in db_session.scalars(
        select(AuditLog.details).where(AuditLog.action == "auth.mfa_failed").order_by(AuditLog.id))]
    assert reasons == ["replayed code", "replayed code"]


def test_a_recovery_code_signs_in_once(app, signed_in_client):
    _, codes = enrol(signed_in_client)
    first = app.test_client()
    page = password_step(first, signed_in_client.user.email)
    response = first.post("/login/recover", data={"csrf_token": csrf_token_from(page),
                                                  "recovery_code": codes[0].upper()})
    assert response.status_code == 302 and response.headers["Location"] == "/admin/account/security"
    second = app.test_client()
    page = password_step(second, signed_in_client.user.email)
    again = second.post("/login/recover", data={"csrf_token": csrf_token_from(page), "recovery_code": codes[0]})
    assert again.status_code == 400 and "used already" in again.get_data(as_text=True)
    assert not signed_in(second)


def test_lost_device_a_recovery_code_then_a_new_authenticator(app, signed_in_client, db_session):
    old_secret, codes = enrol(signed_in_client)
    phone_lost = app.test_client()
    page = password_step(phone_lost, signed_in_client.user.email)
    response = phone_lost.post("/login/recover", data={"csrf_token": csrf_token_from(page),
                                                       "recovery_code": codes[3]}, follow_redirects=True)
    body = response.get_data(as_text=True)
    assert "You signed in with a recovery code; 9 left" in body and 'class="recovery-left">9<' in body
    wrong = post_form(phone_lost, "/admin/account/security/totp/remove", {"password": "not it"},
                      follow_redirects=True)
    assert "the authenticator app stays" in wrong.get_data(as_text=True)
    removed = post_form(phone_lost, "/admin/account/security/totp/remove", {"password": TEST_PASSWORD},
                        follow_redirects=True)
    assert "The authenticator app was removed" in removed.get_data(as_text=True)
    new_secret, _ = enrol(phone_lost)
    assert new_secret != old_secret
    later = app.test_client()
    page = password_step(later, signed_in_client.user.email)
    assert later.post("/login/verify", data={"csrf_token": csrf_token_from(page),
                                             "code": code(old_secret, 1)}).status_code == 400
    assert later.post("/login/verify", data={"csrf_token": csrf_token_from(page),
                                             "code": code(new_secret, 1)}).status_code == 302
    actions = db_session.scalars(select(AuditLog.action).where(AuditLog.action.startswith("auth.mfa"))
                                 .order_by(AuditLog.id)).all()
    assert actions == ["auth.mfa_enrolled", "auth.mfa_remove_failed", "auth.mfa_removed", "auth.mfa_enrolled",
                       "auth.mfa_failed"]


def test_sessions_proved_with_a_code_are_strong(app, signed_in_client, db_session):
    secret, _ = enrol(signed_in_client)
    other = app.test_client()
    page = password_step(other, signed_in_client.user.email)
    other.post("/login/verify", data={"csrf_token": csrf_token_from(page), "code": code(secret, 1)})
    newest = db_session.scalars(select(UserSession).order_by(UserSession.id.desc())).first()
    assert newest.strong and newest.auth_method == "password+totp"


def test_the_pending_sign_in_is_not_a_session(app, signed_in_client):
    enrol(signed_in_client)
    other = app.test_client()
    password_step(other, signed_in_client.user.email)
    assert other.get("/admin/account/security").status_code == 302  # to /login
    fresh = app.test_client()
    assert fresh.get("/login/verify").status_code == 302  # nothing pending: back to sign-in


@pytest.mark.parametrize("value", ["", "12345", "1234567", "abcdef", "x" * 5000, "１２３４５６"])
def test_malformed_codes_are_a_clear_400(app, signed_in_client, value):
    enrol(signed_in_client)
    other = app.test_client()
    page = password_step(other, signed_in_client.user.email)
    response = other.post("/login/verify", data={"csrf_token": csrf_token_from(page), "code": value})
    assert response.status_code == 400


def test_second_factor_attempts_are_rate_limited_like_passwords(app):
    limited = make_test_app(app.config["SQLALCHEMY_DATABASE_URI"], RATELIMIT_ENABLED=True,
                            RATELIMIT_STORAGE_URI="memory://")
    client = limited.test_client()
    token = csrf_token_from(client.get("/login"))
    statuses = [client.post("/login/verify", data={"csrf_token": token, "code": "000000"},
                            environ_base={"REMOTE_ADDR": "198.51.100.77"}).status_code for _ in range(6)]
    assert statuses[:5] == [302] * 5 and statuses[5] == 429


def test_a_password_only_session_cannot_add_a_factor_beside_an_existing_one(app, signed_in_client, db_session):
    enrol(signed_in_client)
    # A session that never proved the factor (say, opened before it was set up, or stolen).
    db_session.execute(UserSession.__table__.update().values(strong=False))
    db_session.commit()
    response = signed_in_client.get("/admin/account/security/totp")
    assert response.status_code == 302  # set up already: to the Security page
    token = csrf_token_from(signed_in_client.get("/admin/account/security"))
    options = signed_in_client.post("/admin/account/passkeys/options", data="{}", content_type="application/json",
                                    headers={"X-CSRFToken": token, "Accept": "application/json"})
    assert options.status_code == 403 and "Confirm it is you" in options.get_json()["error"]
