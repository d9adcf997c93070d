"""Sign-in is rate limited per address and per account; the answer is a clear 429 page."""
from __future__ import annotations

import uuid

import pytest
import redis

from tests.conftest import TEST_PASSWORD, csrf_token_from, make_test_app

REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_reachable() -> bool:
    try:
        return redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return False


@pytest.fixture(params=["memory", "redis"])
def limited_app(request, app):
    if request.param == "redis" and not redis_reachable():
        pytest.skip("no Redis answers at 127.0.0.1:6379")
    storage = "memory://" if request.param == "memory" else REDIS_URL
    return make_test_app(app.config["SQLALCHEMY_DATABASE_URI"], RATELIMIT_ENABLED=True,
                         RATELIMIT_STORAGE_URI=storage)


def attempt(client, email, address="198.51.100.7"):
    token = csrf_token_from(client.get("/login", environ_base={"REMOTE_ADDR": address}))
    return client.post("/login", data={"email": email, "password": "wrong password", "csrf_token": token},
                       environ_base={"REMOTE_ADDR": address})


def test_one_account_is_limited_whatever_the_address(limited_app):
    client = limited_app.test_client()
    email = f"target-{uuid.uuid4().hex[:8]}@example.test"
    for i in range(5):
        assert attempt(client, email, address=f"203.0.113.{i + 1}").status_code == 200
    response = attempt(client, email, address="203.0.113.99")
    assert response.status_code == 429
    body = response.get_data(as_text=True)
    assert "Too many sign-in attempts" in body and "Traceback" not in body
    assert "Retry-After" in response.headers
    assert attempt(client, f"other-{uuid.uuid4().hex[:8]}@example.test", address="203.0.113.99").status_code == 200


def test_one_address_is_limited_whatever_the_account(limited_app):
    client = limited_app.test_client()
    address = f"192.0.2.{uuid.uuid4().int % 250 + 1}"
    statuses = [attempt(client, f"spray-{uuid.uuid4().hex[:8]}@example.test", address=address).status_code
                for _ in range(21)]
    assert statuses[:20] == [200] * 20 and statuses[20] == 429


def test_viewing_the_sign_in_page_is_not_limited(limited_app):
    client = limited_app.test_client()
    assert all(client.get("/login").status_code == 200 for _ in range(40))


# --- password change: the same limits, per account and per address; failures are audited ---------


@pytest.fixture
def limited_users(limited_app):
    """Users committed in the limited app's database (it has no rolled-back test transaction); removed after."""
    from sqlalchemy import delete

    from app.extensions import db
    from app.models import AuditLog, User
    from tests.conftest import _PASSWORD_HASH

    made = []

    def factory() -> User:
        with limited_app.app_context():
            user = User(email=f"changer-{uuid.uuid4().hex[:10]}@example.test", name="Changer",
                        password_hash=_PASSWORD_HASH)
            db.session.add(user)
            db.session.commit()
            made.append(user.id)
            db.session.expunge(user)
            return user

    yield factory
    with limited_app.app_context():
        db.session.execute(delete(AuditLog).where(AuditLog.actor_user_id.in_(made)))
        db.session.execute(delete(User).where(User.id.in_(made)))
        db.session.commit()


def signed_in(limited_app, user):
    client = limited_app.test_client()
    token = csrf_token_from(client.get("/login", environ_base={"REMOTE_ADDR": "198.51.100.200"}))
    response = client.post("/login", data={"email": user.email, "password": TEST_PASSWORD, "csrf_token": token},
                           environ_base={"REMOTE_ADDR": f"198.51.100.{uuid.uuid4().int % 200 + 1}"})
    assert response.status_code == 302
    return client


def change_attempt(client, address):
    token = csrf_token_from(client.get("/admin/account/password", environ_base={"REMOTE_ADDR": address}))
    return client.post("/admin/account/password", environ_base={"REMOTE_ADDR": address}, data={
        "current_password": "not my password", "new_password": "a brand new secret",
        "confirm_password": "a brand new secret", "csrf_token": token})


def test_password_change_is_limited_per_account_and_failures_are_audited(limited_app, limited_users):
    from sqlalchemy import func, select

    from app.extensions import db
    from app.models import AuditLog

    user = limited_users()
    client = signed_in(limited_app, user)
    statuses = [change_attempt(client, f"203.0.113.{i + 1}").status_code for i in range(5)]
    assert statuses == [400] * 5
    response = change_attempt(client, "203.0.113.99")
    assert response.status_code == 429
    body = response.get_data(as_text=True)
    assert "Too many password change attempts" in body and "Retry-After" in response.headers
    with limited_app.app_context():
        failures = db.session.scalar(select(func.count()).select_from(AuditLog).where(
            AuditLog.action == "auth.password_change_failed", AuditLog.actor_user_id == user.id))
    assert failures == 5


def test_password_change_is_limited_per_address_whatever_the_account(limited_app, limited_users):
    address = f"192.0.2.{uuid.uuid4().int % 250 + 1}"
    statuses = []
    for _ in range(5):
        client = signed_in(limited_app, limited_users())
        statuses += [change_attempt(client, address).status_code for _ in range(4)]
    assert statuses == [400] * 20
    fresh = signed_in(limited_app, limited_users())
    assert change_attempt(fresh, address).status_code == 429
    assert change_attempt(fresh, "192.0.2.251").status_code == 400
