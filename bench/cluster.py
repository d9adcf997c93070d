"""The PostgreSQL a benchmark runs on: BENCH_ADMIN_URL when given, else a throwaway embedded server."""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.database import server_socket_dir, start_embedded_server  # noqa: E402


class Cluster:
    """A superuser conninfo for the server, and the addresses of its databases."""

    def __init__(self, admin: str, conninfo_for, url_for):
        self.admin = admin
        self.conninfo = conninfo_for  # database -> psycopg conninfo
        self.url_for = url_for  # database -> SQLAlchemy URL (for DATABASE_URL)

    def conn(self, database: str) -> psycopg.Connection:
        return psycopg.connect(self.conninfo(database), autocommit=True)

    def create(self, database: str, template: str | None = None) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database))
            if template:
                statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            conn.execute(statement)


@contextlib.contextmanager
def bench_cluster(prefix: str) -> Iterator[Cluster]:
    admin = os.environ.get("BENCH_ADMIN_URL")
    if admin:
        base = admin.rsplit("/", 1)[0]
        yield Cluster(admin, lambda db: f"{base}/{db}",
                      lambda db: f"{base}/{db}".replace("postgresql://", "postgresql+psycopg://", 1))
        return
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    server = start_embedded_server(workdir / "pgdata", cleanup_mode="delete")
    socket = server_socket_dir(server)
    try:
        yield Cluster(f"host={socket} user=postgres dbname=postgres",
                      lambda db: f"host={socket} user=postgres dbname={db}",
                      lambda db: f"postgresql+psycopg://postgres@/{db}?host={socket}")
    finally:
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
