"""TenantAtlas: the portfolio console for MSPs running many Entra/Intune tenants."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click
from flask import Flask
from sqlalchemy.exc import DBAPIError
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from .config import build_config
from .database import describe_database_url, embedded_database_url
from .extensions import csrf, db, login_manager, migrate

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class DatabaseIdConverter(IntegerConverter):
    """`<int:...>` limited to what a PostgreSQL bigint identity can hold."""

    def __init__(self, map, fixed_digits=0, min=1, max=2**63 - 1, signed=False):
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def default_database_role() -> str:
    """The owner for `flask` commands (migrations, seed, backfill…), the app role otherwise.

    A command line invocation loads the app inside a click context; gunicorn and the
    WSGI server of `flask run` serve requests, which must go through row-level security.
    """
    context = click.get_current_context(silent=True)
    if context is None or context.info_name in ("run", "worker"):
        return "app"
    return "owner"


def close_database_session(exc: BaseException | None) -> None:
    """End the request's session; if its connection died under it (a database restart), drop it.

    Closing rolls back on the connection; when the server has just terminated it, that
    rollback fails after the response was made, which would turn a served page into a 500.
    """
    try:
        db.session.remove()
    except DBAPIError as error:
        db.session.registry().invalidate()  # discards the connection without talking to it
        db.session.registry.clear()
        logging.getLogger(__name__).warning("Dropped a dead database connection at request end: %s", error.orig)


def create_app(config: dict | None = None, database_role: str | None = None) -> Flask:
    app = Flask(
        __name__,
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
        # TENANTATLAS_INSTANCE_PATH relocates instance/ (secret key, embedded pgdata).
        instance_path=os.environ.get("TENANTATLAS_INSTANCE_PATH") or str(PROJECT_ROOT / "instance"),
    )
    role = database_role or default_database_role()
    app.config.update(build_config(Path(app.instance_path), config, database_role=role))

    if not app.config["SQLALCHEMY_DATABASE_URI"]:
        app.config["SQLALCHEMY_DATABASE_URI"] = embedded_database_url(Path(app.instance_path), role=role)
        source = f"embedded PostgreSQL in instance/pgdata, {role} role"
    else:
        source = f"{'MIGRATION_DATABASE_URL' if role == 'owner' and os.environ.get('MIGRATION_DATABASE_URL') else 'DATABASE_URL'}, {role} role"
    if not app.config.get("TESTING"):
        print(
            f"TenantAtlas database: {describe_database_url(app.config['SQLALCHEMY_DATABASE_URI'])}"
            f" ({source})",
            file=sys.stderr,
        )

    if app.config["TRUSTED_PROXIES"]:
        # Behind N reverse proxies: take the client address and scheme from their headers,
        # so that rate limits, audit IPs and Secure cookies see the real client.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["TRUSTED_PROXIES"],
                                x_proto=app.config["TRUSTED_PROXIES"])

    db.init_app(app)
    app.teardown_appcontext(close_database_session)  # runs before Flask-SQLAlchemy's own (a no-op then)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"))
    csrf.init_app(app)
    login_manager.init_app(app)

    # Every <int:...> in a URL is a database id: bounded so that a huge number is a 404, not an overflow.
    app.url_map.converters["int"] = DatabaseIdConverter

    from . import isolation, row_security  # noqa: F401  (register their session listeners)
    from . import logsafe, web
    from .graph.settings import GraphSettings

    # Where Graph lives and the app's credentials (app/graph/settings.py); tests pass their own.
    app.extensions["graph_settings"] = app.config.get("GRAPH_SETTINGS") or GraphSettings.from_environ()

    logsafe.init_app(app)
    web.init_app(app)  # the blueprints, sign-in, error pages and security headers (app/web/__init__.py)

    from cli import register_commands

    register_commands(app)
    return app
