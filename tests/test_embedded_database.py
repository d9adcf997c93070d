"""With no DATABASE_URL, every `flask` command starts, or reuses, the embedded server in instance/pgdata."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from app.database import start_embedded_server

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FLASK = str(Path(sys.executable).with_name("flask"))


def flask(instance: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEST_DATABASE_URL", "SECRET_KEY")}
    env.update(TENANTATLAS_INSTANCE_PATH=str(instance), TENANTATLAS_ENV="development")
    return subprocess.run([FLASK, *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)


def postmaster_pid(instance: Path) -> int:
    return int((instance / "pgdata" / "postmaster.pid").read_text().splitlines()[0])


@pytest.fixture
def instance():
    """A fresh instance/ directory, outside pytest's tmp_path: under pytest-xdist another worker's first
    tmp_path makes /tmp/pytest-of-<user> private again (chmod 700), and the server, which runs as its
    own system user when the tests run as root, would lose its data directory mid-test."""
    workdir = Path(tempfile.mkdtemp(prefix="tenantatlas-instance-"))
    path = workdir / "instance"
    yield path
    if (path / "pgdata" / "PG_VERSION").exists():
        start_embedded_server(path / "pgdata", cleanup_mode="stop").cleanup()
    shutil.rmtree(workdir, ignore_errors=True)


def test_flask_commands_start_the_embedded_server_then_reuse_it(instance):
    first = flask(instance, "db", "upgrade")
    assert first.returncode == 0, first.stderr
    banner = [line for line in first.stderr.splitlines() if line.startswith("TenantAtlas database:")]
    assert len(banner) == 1 and "embedded PostgreSQL in instance/pgdata" in banner[0]
    pid = postmaster_pid(instance)

    second = flask(instance, "create-workspace", "embedded-check", "--name", "Embedded check")
    assert second.returncode == 0, second.stderr
    assert postmaster_pid(instance) == pid  # the running server was reused, not restarted
    assert (instance / "secret_key").exists()

    duplicate = flask(instance, "create-workspace", "embedded-check", "--name", "Again")
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr
    assert "Traceback" not in duplicate.stderr


def test_the_web_app_connects_as_its_own_role_and_commands_as_the_owner(instance):
    assert flask(instance, "db", "upgrade").returncode == 0
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TEST_DATABASE_URL", "SECRET_KEY")}
    env.update(TENANTATLAS_INSTANCE_PATH=str(instance), TENANTATLAS_ENV="development")
    web = subprocess.run([sys.executable, "-c", "from wsgi import app; print(app.config['SQLALCHEMY_DATABASE_URI'])"],
                         cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert web.returncode == 0, web.stderr
    assert "//tenantatlas_app@" in web.stdout
    assert "app role" in web.stderr
    command = flask(instance, "create-workspace", "owner-check", "--name", "Owner check")
    assert command.returncode == 0 and "owner role" in command.stderr


def test_make_stop_db_stops_the_embedded_server_and_the_next_command_starts_it_again(instance):
    assert flask(instance, "db", "upgrade").returncode == 0
    env = {**os.environ, "TENANTATLAS_INSTANCE_PATH": str(instance)}
    stop = subprocess.run([sys.executable, "-m", "app.stop_database"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert stop.returncode == 0, stop.stderr
    assert "Stopped the embedded PostgreSQL" in stop.stdout
    assert not (instance / "pgdata" / "postmaster.pid").exists()
    again = subprocess.run([sys.executable, "-m", "app.stop_database"], cwd=PROJECT_ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "No embedded PostgreSQL is running" in again.stdout
    assert flask(instance, "create-workspace", "after-stop", "--name", "After stop").returncode == 0


def test_the_makefile_has_a_stop_db_target_that_runs_it():
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    assert "\nstop-db:" in makefile and "-m app.stop_database" in makefile
