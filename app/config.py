"""Configuration from the environment.

TENANTATLAS_ENV: development (default), production or test.
DATABASE_URL: the web app's database role (postgresql+psycopg://...); unset means the
embedded server under instance/.
MIGRATION_DATABASE_URL: the owner role, for migrations and operator commands (default: DATABASE_URL).
SECRET_KEY: required outside development.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

ENVIRONMENTS = ("development", "production", "test")


class ConfigError(RuntimeError):
    """The environment does not describe a runnable app."""


def _development_secret_key(instance_path: Path) -> str:
    # Created once and kept, so sessions survive restarts of the dev server.
    key_file = instance_path / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


def normalize_database_url(url: str) -> str:
    """Accept postgres://, postgresql:// and postgresql+psycopg:// alike; always use psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    if url.startswith("postgresql+psycopg://"):
        return url
    raise ConfigError(
        "DATABASE_URL must be a PostgreSQL URL (postgresql+psycopg://user:password@host/dbname)"
    )


def build_config(instance_path: Path, overrides: dict | None = None, database_role: str = "app") -> dict:
    overrides = dict(overrides or {})
    env = overrides.get("TENANTATLAS_ENV") or os.environ.get("TENANTATLAS_ENV") or "development"
    if env not in ENVIRONMENTS:
        raise ConfigError(f"TENANTATLAS_ENV must be one of {', '.join(ENVIRONMENTS)}, not {env!r}")

    secret_key = overrides.get("SECRET_KEY") or os.environ.get("SECRET_KEY")
    if not secret_key:
        if env != "development":
            raise ConfigError(f"SECRET_KEY must be set when TENANTATLAS_ENV={env}")
        secret_key = _development_secret_key(instance_path)

    sync_interval = str(overrides.get("SYNC_INTERVAL_MINUTES", os.environ.get("TENANTATLAS_SYNC_INTERVAL_MINUTES", "360")))
    if not (sync_interval.isascii() and sync_interval.isdigit() and 5 <= int(sync_interval) <= 10080):
        raise ConfigError("TENANTATLAS_SYNC_INTERVAL_MINUTES must be a number of minutes from 5 to 10080 (a week)")

    trusted_proxies = overrides.get("TRUSTED_PROXIES", os.environ.get("TENANTATLAS_TRUSTED_PROXIES", "0"))
    if not (str(trusted_proxies).isascii() and str(trusted_proxies).isdigit()):
        raise ConfigError("TENANTATLAS_TRUSTED_PROXIES must be a number of proxies (0 when none)")

    session_idle = str(overrides.get("SESSION_IDLE_MINUTES", os.environ.get("TENANTATLAS_SESSION_IDLE_MINUTES", "480")))
    if not (session_idle.isascii() and session_idle.isdigit() and 5 <= int(session_idle) <= 43200):
        raise ConfigError("TENANTATLAS_SESSION_IDLE_MINUTES must be a number of minutes from 5 to 43200 (30 days)")
    session_lifetime = str(overrides.get("SESSION_LIFETIME_HOURS",
                                         os.environ.get("TENANTATLAS_SESSION_LIFETIME_HOURS", "168")))
    if not (session_lifetime.isascii() and session_lifetime.isdigit() and 1 <= int(session_lifetime) <= 2160):
        raise ConfigError("TENANTATLAS_SESSION_LIFETIME_HOURS must be a number of hours from 1 to 2160 (90 days)")

    # The web app connects as its own role (RLS applies to it); migrations and the
    # cross-workspace operator commands connect as the owner.
    database_url = overrides.get("SQLALCHEMY_DATABASE_URI")
    if not database_url:
        database_url = os.environ.get("DATABASE_URL")
        if database_role == "owner":
            database_url = os.environ.get("MIGRATION_DATABASE_URL") or database_url
    config = {
        "TENANTATLAS_ENV": env,
        "SECRET_KEY": secret_key,
        "SQLALCHEMY_DATABASE_URI": normalize_database_url(database_url) if database_url else None,
        "DATABASE_ROLE": database_role,
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "SESSION_COOKIE_NAME": "tenantatlas_session",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": env != "development",
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": env != "development",
        # The cookie lives as long as a session may (app/web/account/sessions.py ends it sooner when idle).
        "PERMANENT_SESSION_LIFETIME": int(session_lifetime) * 3600,
        "SESSION_IDLE_MINUTES": int(session_idle),
        "SESSION_LIFETIME_HOURS": int(session_lifetime),
        "WTF_CSRF_TIME_LIMIT": 8 * 3600,
        "MAX_CONTENT_LENGTH": 1 * 1024 * 1024,
        "RATELIMIT_STORAGE_URI": os.environ.get("RATELIMIT_STORAGE_URI", "memory://"),
        "RATELIMIT_ENABLED": True,
        "TESTING": env == "test",
        "TRUSTED_PROXIES": int(trusted_proxies),
        "SYNC_INTERVAL_MINUTES": int(sync_interval),
        # Alert webhooks to loopback or private addresses (a receiver inside the network): off by default.
        "ALERT_WEBHOOK_ALLOW_PRIVATE": os.environ.get("ALERT_WEBHOOK_ALLOW_PRIVATE", "").lower() in ("1", "true", "yes"),
        "ALERT_WEBHOOK_ALLOW_HTTP": os.environ.get("ALERT_WEBHOOK_ALLOW_HTTP", "").lower() in ("1", "true", "yes"),
        "FINDINGS_BACKUP_MAX_AGE_DAYS": int(os.environ.get("FINDINGS_BACKUP_MAX_AGE_DAYS", "7") or 7),
    }
    config.update(overrides)
    return config
