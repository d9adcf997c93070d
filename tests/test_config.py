"""Configuration from the environment."""
from __future__ import annotations

import pytest

from app.config import ConfigError, build_config, normalize_database_url

DB = {"SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://u@h/d"}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("TENANTATLAS_ENV", "SECRET_KEY", "DATABASE_URL", "TENANTATLAS_TRUSTED_PROXIES"):
        monkeypatch.delenv(name, raising=False)


def test_secret_key_is_required_outside_development(tmp_path):
    for env in ("production", "test"):
        with pytest.raises(ConfigError, match="SECRET_KEY"):
            build_config(tmp_path, {"TENANTATLAS_ENV": env, **DB})


def test_development_secret_key_is_created_once_and_kept(tmp_path):
    first = build_config(tmp_path, DB)["SECRET_KEY"]
    second = build_config(tmp_path, DB)["SECRET_KEY"]
    assert first == second and len(first) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_cookies_are_secure_outside_development(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "s")
    production = build_config(tmp_path, {"TENANTATLAS_ENV": "production", **DB})
    development = build_config(tmp_path, DB)
    assert production["SESSION_COOKIE_SECURE"] is True
    assert development["SESSION_COOKIE_SECURE"] is False
    for config in (production, development):
        assert config["SESSION_COOKIE_HTTPONLY"] is True
        assert config["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_unknown_environment_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="TENANTATLAS_ENV"):
        build_config(tmp_path, {"TENANTATLAS_ENV": "staging", **DB})


def test_database_url_always_uses_psycopg3():
    assert normalize_database_url("postgres://u:p@h/d") == "postgresql+psycopg://u:p@h/d"
    assert normalize_database_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    with pytest.raises(ConfigError):
        normalize_database_url("sqlite:///x.db")


def test_database_url_is_read_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db.internal/tenantatlas")
    assert build_config(tmp_path)["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://app@db.internal/tenantatlas"


def test_trusted_proxies_must_be_a_number(tmp_path, monkeypatch):
    monkeypatch.setenv("TENANTATLAS_TRUSTED_PROXIES", "yes")
    with pytest.raises(ConfigError, match="TRUSTED_PROXIES"):
        build_config(tmp_path, DB)
    monkeypatch.setenv("TENANTATLAS_TRUSTED_PROXIES", "1")
    assert build_config(tmp_path, DB)["TRUSTED_PROXIES"] == 1


def test_behind_a_trusted_proxy_the_client_address_comes_from_x_forwarded_for(app):
    from tests.conftest import make_test_app

    proxied = make_test_app(app.config["SQLALCHEMY_DATABASE_URI"], TRUSTED_PROXIES=1)

    @proxied.get("/test-only/address")
    def address():
        from flask import request
        return request.remote_addr

    response = proxied.test_client().get("/test-only/address", headers={"X-Forwarded-For": "203.0.113.9"})
    assert response.get_data(as_text=True) == "203.0.113.9"
