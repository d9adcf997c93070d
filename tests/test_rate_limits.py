"""Sign-in is rate limited per address and per account; the answer is a clear 429 page."""
from __future__ import annotations

import uuid

import pytest
import redis

from tests.conftest import csrf_token_from, make_test_app

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
