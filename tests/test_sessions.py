"""Sessions: a person sees and ends their sessions; administrators end all of someone's; idle and lifetime limits."""
from __future__ import annotations

import pytest
from sqlalchemy import select, text

from app.config import ConfigError, build_config
from app.models import AuditLog, UserSession
from tests.conftest import post_form, sign_in

CHROME_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                 "Version/17.0 Mobile/15E148 Safari/604.1")


def signed_in(app, user, agent=CHROME_WINDOWS, address="198.51.100.20"):
    client = app.test_client()
    client.environ_base.update({"HTTP_USER_AGENT": agent, "REMOTE_ADDR": address})
    assert sign_in(client, user.email).status_code == 302
    return client


def is_signed_in(client) -> bool:
    return client.get("/admin/workspaces").status_code == 200


def test_a_person_sees_their_sessions_with_device_address_and_last_seen(app, world):
    laptop = signed_in(app, world.ada)
    signed_in(app, world.ada, SAFARI_IPHONE, "203.0.113.9")
    signed_in(app, world.bob)  # someone else's: not listed
    page = laptop.get("/admin/account/sessions").get_data(as_text=True)
    assert "Chrome on Windows" in page and "this session" in page and "198.51.100.20" in page
    assert "Safari on iPhone" in page and "203.0.113.9" in page
    table = page.split("user-sessions")[1]
    assert table.count("End session") == 1 and table.count(">Sign out</button>") == 1


def test_ending_another_session_signs_that_browser_out_audited(app, world, db_session):
    laptop = signed_in(app, world.ada)
    phone = signed_in(app, world.ada, SAFARI_IPHONE)
    phone_session = db_session.scalars(select(UserSession).where(UserSession.user_agent == SAFARI_IPHONE)).one()
    assert post_form(laptop, f"/admin/account/sessions/{phone_session.id}/end").status_code == 302
    assert not is_signed_in(phone) and is_signed_in(laptop)
    entry = db_session.scalar(select(AuditLog).where(AuditLog.action == "auth.session_end"))
    assert entry.actor_user_id == world.ada.id and entry.target_name == "Safari on iPhone"


def test_someone_elses_session_cannot_be_ended(app, world, db_session):
    ada = signed_in(app, world.ada)
    bob = signed_in(app, world.bob)
    bobs = db_session.scalars(select(UserSession.id).where(UserSession.user_id == world.bob.id)).one()
    assert post_form(ada, f"/admin/account/sessions/{bobs}/end").status_code == 404
    assert is_signed_in(bob)


def test_signing_out_ends_only_this_session(app, world):
    laptop = signed_in(app, world.ada)
    phone = signed_in(app, world.ada, SAFARI_IPHONE)
    post_form(laptop, "/logout")
    assert not is_signed_in(laptop) and is_signed_in(phone)


def test_an_administrator_ends_all_sessions_of_a_user(app, world, db_session):
    world.olivia.is_admin = True
    db_session.commit()
    admin = signed_in(app, world.olivia)
    ada_laptop, ada_phone = signed_in(app, world.ada), signed_in(app, world.ada, SAFARI_IPHONE)
    response = post_form(admin, f"/admin/users/{world.ada.id}/sessions/end", follow_redirects=True)
    assert "2 sessions of Ada ended" in response.get_data(as_text=True)
    assert not is_signed_in(ada_laptop) and not is_signed_in(ada_phone) and is_signed_in(admin)
    assert db_session.scalar(select(AuditLog.details).where(AuditLog.action == "auth.sessions_ended")) == {
        "before": {"sessions": 2}, "after": {"sessions": 0}}


def test_a_non_administrator_cannot_end_others_sessions(app, world):
    ada = signed_in(app, world.ada)
    olivia = signed_in(app, world.olivia)
    assert post_form(olivia, f"/admin/users/{world.ada.id}/sessions/end").status_code == 403
    assert is_signed_in(ada)


def test_an_idle_session_ends(app, world, db_session):
    client = signed_in(app, world.ada)
    db_session.execute(text("UPDATE user_sessions SET last_seen_at = now() - interval '8 hours 1 minute'"))
    db_session.commit()
    assert not is_signed_in(client)
    assert db_session.scalar(select(UserSession.end_reason)) == "idle"


def test_a_session_older_than_its_lifetime_ends_even_when_busy(app, world, db_session):
    client = signed_in(app, world.ada)
    db_session.execute(text("UPDATE user_sessions SET created_at = now() - interval '7 days 1 minute'"))
    db_session.commit()
    assert not is_signed_in(client)
    assert db_session.scalar(select(UserSession.end_reason)) == "lifetime"


def test_a_session_in_use_stays_and_its_last_seen_moves(app, world, db_session):
    client = signed_in(app, world.ada)
    db_session.execute(text("UPDATE user_sessions SET last_seen_at = now() - interval '7 hours'"))
    db_session.commit()
    assert is_signed_in(client)
    db_session.expire_all()
    assert db_session.scalar(text("SELECT now() - last_seen_at < interval '1 minute' FROM user_sessions"))


def test_a_password_change_ends_the_other_sessions(app, world):
    laptop = signed_in(app, world.ada)
    phone = signed_in(app, world.ada, SAFARI_IPHONE)
    response = post_form(laptop, "/admin/account/password", {
        "current_password": "correct horse battery", "new_password": "another long secret",
        "confirm_password": "another long secret"})
    assert response.status_code == 302
    assert is_signed_in(laptop) and not is_signed_in(phone)


@pytest.mark.parametrize("name,value", [
    ("TENANTATLAS_SESSION_IDLE_MINUTES", "0"), ("TENANTATLAS_SESSION_IDLE_MINUTES", "soon"),
    ("TENANTATLAS_SESSION_LIFETIME_HOURS", "99999"), ("TENANTATLAS_SESSION_LIFETIME_HOURS", "-1"),
])
def test_session_limits_must_be_sensible_numbers(tmp_path, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        build_config(tmp_path, {"TENANTATLAS_ENV": "test", "SECRET_KEY": "x"})


def test_session_limits_default_to_8_hours_idle_and_7_days(tmp_path, monkeypatch):
    monkeypatch.delenv("TENANTATLAS_SESSION_IDLE_MINUTES", raising=False)
    monkeypatch.delenv("TENANTATLAS_SESSION_LIFETIME_HOURS", raising=False)
    config = build_config(tmp_path, {"TENANTATLAS_ENV": "test", "SECRET_KEY": "x"})
    assert config["SESSION_IDLE_MINUTES"] == 480 and config["SESSION_LIFETIME_HOURS"] == 168
    assert config["PERMANENT_SESSION_LIFETIME"] == 7 * 24 * 3600
