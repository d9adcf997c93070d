"""The workspace-isolation rollout, end to end, from a legacy database.

Runs on the embedded PostgreSQL and, when it answers, on the machine's
PostgreSQL service too (TEST_SERVICE_DATABASE_URL, default 127.0.0.1:5432).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.isolation import WorkspaceMismatchError
from app.models import AuditLog, EntraGroup, Policy
from app.rollout import TENANT_OWNED_TABLES
from tests.conftest import PostgresCluster, make_test_app

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SERVICE_URL = os.environ.get("TEST_SERVICE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BEFORE_ROLLOUT = "0002_switcher_marks"


def service_cluster() -> PostgresCluster | None:
    try:
        psycopg.connect(SERVICE_URL, connect_timeout=2).close()
    except psycopg.Error:
        return None
    base = SERVICE_URL.rsplit("/", 1)[0]
    return PostgresCluster(SERVICE_URL, lambda name: base.replace("postgresql://", "postgresql+psycopg://") + "/" + name)


@pytest.fixture(params=["embedded", "service"])
def cluster(request, pg_cluster):
    if request.param == "embedded":
        return pg_cluster
    found = service_cluster()
    if found is None:
        pytest.skip(f"no PostgreSQL service answers at {SERVICE_URL}")
    return found


# --- a legacy database, written by SQL as the old product left it ------------------------------

LEGACY_ROWS = """
INSERT INTO policies (tenant_id, graph_id, policy_type, platform, display_name)
  SELECT :t, 'legacy-' || g, 'deviceConfiguration', 'windows10', 'Legacy policy ' || g FROM generate_series(1, :n) g;
INSERT INTO policy_versions (tenant_id, policy_id, version_number, snapshot, content_hash)
  SELECT tenant_id, id, 1, '{}', repeat('0', 64) FROM policies WHERE tenant_id = :t;
INSERT INTO backup_schedules (tenant_id, name, frequency) VALUES (:t, 'Nightly', 'daily');
INSERT INTO backup_sets (tenant_id, name, status, triggered_by)
  SELECT :t, 'Backup ' || g, 'completed', 'schedule' FROM generate_series(1, :n) g;
INSERT INTO backup_items (tenant_id, backup_set_id, item_type, display_name, payload, content_hash)
  SELECT tenant_id, id, 'deviceConfiguration', 'Item', '{}', repeat('0', 64) FROM backup_sets WHERE tenant_id = :t;
INSERT INTO restore_runs (tenant_id, backup_set_id, status)
  SELECT tenant_id, id, 'succeeded' FROM backup_sets WHERE tenant_id = :t;
INSERT INTO inventory_items (tenant_id, object_type, graph_id, display_name)
  SELECT :t, 'device', 'dev-' || g, 'Device ' || g FROM generate_series(1, :n) g;
INSERT INTO inventory_links (tenant_id, source_item_id, target_item_id, link_type)
  SELECT a.tenant_id, a.id, b.id, 'related' FROM inventory_items a JOIN inventory_items b
    ON b.tenant_id = a.tenant_id AND b.id = a.id + 1 WHERE a.tenant_id = :t;
INSERT INTO entra_groups (tenant_id, graph_id, display_name, group_type)
  SELECT :t, 'grp-' || g, 'Group ' || g, 'security' FROM generate_series(1, :n) g;
INSERT INTO findings (tenant_id, kind, severity, title)
  SELECT :t, 'drift', 'high', 'Finding ' || g FROM generate_series(1, :n) g;
INSERT INTO entra_role_definitions (tenant_id, graph_id, display_name)
  SELECT :t, 'role-' || g, 'Role ' || g FROM generate_series(1, :n) g;
INSERT INTO tenant_permissions (tenant_id, permission_name, status)
  SELECT :t, 'Perm' || g, 'granted' FROM generate_series(1, :n) g;
INSERT INTO audit_logs (tenant_id, action) SELECT :t, 'legacy.action' FROM generate_series(1, :n) g;
"""


def legacy_database(cluster, name: str, rows_per_table: int = 5):
    """A database at the baseline with two workspaces, two tenants, rows without workspace_id,
    and rows of a tenant that no longer exists (written with foreign keys off, as old imports did)."""
    app = make_test_app(cluster.create_database(name))
    with app.app_context():
        upgrade(revision=BEFORE_ROLLOUT)
        with db.engine.begin() as connection:
            w1 = connection.execute(text("INSERT INTO workspaces (slug, name) VALUES ('w-one', 'One') RETURNING id")).scalar()
            w2 = connection.execute(text("INSERT INTO workspaces (slug, name) VALUES ('w-two', 'Two') RETURNING id")).scalar()
            tenants = {}
            for key, workspace in (("t1", w1), ("t2", w2)):
                tenants[key] = connection.execute(text(
                    "INSERT INTO tenants (workspace_id, external_id, name) VALUES (:w, :e, :n) RETURNING id"),
                    {"w": workspace, "e": uuid.uuid4(), "n": key}).scalar()
                for statement in LEGACY_ROWS.strip().split(";\n"):
                    connection.execute(text(statement), {"t": tenants[key], "n": rows_per_table})
            connection.execute(text("SET LOCAL session_replication_role = replica"))
            connection.execute(text(
                "INSERT INTO policies (tenant_id, graph_id, policy_type, platform, display_name) "
                "VALUES (987654321, 'orphan', 'x', 'ios', 'Orphan of a deleted tenant')"))
            connection.execute(text(
                "INSERT INTO findings (tenant_id, kind, severity, title) VALUES (987654321, 'drift', 'low', 'Orphan')"))
        db.engine.dispose()
    return app, {"w1": w1, "w2": w2, **tenants}


def migrate_to(app, revision: str = "0003_workspace_id_phase1") -> None:
    """Upgrade `app`'s database to `revision` (phase 1 by default) and let its connections go."""
    with app.app_context():
        upgrade(revision=revision)
        db.engine.dispose()


def schema_snapshot(app) -> dict:
    with app.app_context():
        inspector = inspect(db.engine)
        snapshot = {}
        for table in inspector.get_table_names():
            snapshot[table] = (
                sorted((c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)),
                sorted(fk["name"] for fk in inspector.get_foreign_keys(table)),
                sorted(ix["name"] for ix in inspector.get_indexes(table)),
                sorted(ck["name"] for ck in inspector.get_check_constraints(table)),
            )
        db.engine.dispose()
        return snapshot


def table_contents(app) -> dict:
    """A digest of every row of every tenant-owned table and audit_logs."""
    with app.app_context(), db.engine.connect() as connection:
        return {table: connection.execute(text(
            f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY id), '')) FROM {table} t")).scalar()
            for table in (*TENANT_OWNED_TABLES, "audit_logs")}


def cli(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def raw(app, sql: str, **params):
    with app.app_context(), db.engine.begin() as connection:
        return connection.execute(text(sql), params)


def test_full_rollout_from_a_legacy_database(cluster):
    app, ids = legacy_database(cluster, "tenantatlas_rollout")
    baseline = schema_snapshot(app)

    # Phase 1.
    with app.app_context():
        upgrade(revision="0003_workspace_id_phase1")

    # Phase 1.5: app writes are bound; a mismatch is refused by the app and by the database.
    with app.app_context():
        # Groups: a model whose columns a 0003 schema has (policies and tenants gained columns in 0009).
        group = EntraGroup(tenant_id=ids["t1"], graph_id="new", display_name="New", group_type="security")
        db.session.add(group)
        db.session.commit()
        assert group.workspace_id == ids["w1"]
        db.session.add(EntraGroup(tenant_id=ids["t1"], workspace_id=ids["w2"], graph_id="bad", display_name="Bad",
                                  group_type="security"))
        with pytest.raises(WorkspaceMismatchError):
            db.session.commit()
        db.session.rollback()
        # (Audit entries get their tenant's workspace the same way; audit_logs gained a column
        # in 0012, so that is checked at head: test_an_audit_entry_about_a_tenant_is_bound_on_the_write_path.)
        db.session.remove()
        db.engine.dispose()
    with pytest.raises(IntegrityError):
        raw(app, "INSERT INTO findings (tenant_id, workspace_id, kind, severity, title) "
                 "VALUES (:t, :w, 'drift', 'low', 'mismatch')", t=ids["t1"], w=ids["w2"])

    # Phase 2: the dry run writes nothing, then the backfill binds what it can and lists the rest.
    before = table_contents(app)
    result = cli(app, "backfill-workspace-ids", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Dry run" in result.output and "tenant gone" in result.output
    assert table_contents(app) == before
    result = cli(app, "backfill-workspace-ids", "--batch-size", "100")
    assert result.exit_code == 1, result.output
    assert "rows whose tenant is gone" in result.output
    unbound = raw(app, "SELECT tenant_id, count(*) FROM policies WHERE workspace_id IS NULL GROUP BY 1").all()
    assert unbound == [(987654321, 1)]
    for table in TENANT_OWNED_TABLES:
        wrong = raw(app, f"SELECT count(*) FROM {table} t JOIN tenants tn ON tn.id = t.tenant_id "
                         f"WHERE t.workspace_id IS DISTINCT FROM tn.workspace_id").scalar()
        assert wrong == 0, table
    assert raw(app, "SELECT count(*) FROM audit_logs WHERE tenant_id IS NOT NULL AND workspace_id IS NULL").scalar() == 0

    # Phase 3 refuses, with a clear message and no change, while rows are unbound.
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 1
    assert "policies: 1 without workspace_id" in result.output and "flask backfill-workspace-ids" in result.output
    with app.app_context():
        db.engine.dispose()
    raw(app, "DELETE FROM policies WHERE tenant_id = 987654321")
    raw(app, "DELETE FROM findings WHERE tenant_id = 987654321")
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output

    # The database itself now refuses unbound and mismatched rows, and tenant entries without workspace.
    refused = [
        ("INSERT INTO findings (tenant_id, kind, severity, title) VALUES (:t, 'drift', 'low', 'null')", {}),
        ("INSERT INTO findings (tenant_id, workspace_id, kind, severity, title) VALUES (:t, :w, 'drift', 'low', 'x')",
         {"w": ids["w2"]}),
        ("UPDATE policies SET workspace_id = :w WHERE tenant_id = :t", {"w": ids["w2"]}),
        ("INSERT INTO audit_logs (tenant_id, action) VALUES (:t, 'no workspace')", {}),
    ]
    for statement, params in refused:
        with pytest.raises(IntegrityError):
            raw(app, statement, t=ids["t1"], **params)
    result = cli(app, "verify-workspace-isolation")
    assert result.exit_code == 0, result.output
    assert "verified" in result.output

    # Back down phase 3 and phase 1: the schema is the baseline's again.
    with app.app_context():
        downgrade(revision=BEFORE_ROLLOUT)
        db.engine.dispose()
    assert schema_snapshot(app) == baseline


def test_verify_fails_while_rows_are_unbound(cluster):
    app, ids = legacy_database(cluster, "tenantatlas_verify")
    migrate_to(app)
    result = cli(app, "verify-workspace-isolation")
    assert result.exit_code == 1
    assert "not complete" in result.output


def test_backfill_rejects_an_unknown_table_and_can_do_one_table(cluster):
    app, ids = legacy_database(cluster, "tenantatlas_one_table")
    migrate_to(app)
    result = cli(app, "backfill-workspace-ids", "--table", "users")
    assert result.exit_code == 1 and "Unknown table users" in result.output
    result = cli(app, "backfill-workspace-ids", "--table", "entra_groups")
    assert result.exit_code == 0, result.output
    assert raw(app, "SELECT count(*) FROM entra_groups WHERE workspace_id IS NULL").scalar() == 0
    assert raw(app, "SELECT count(*) FROM inventory_items WHERE workspace_id IS NULL").scalar() > 0
    entry = raw(app, "SELECT details FROM audit_logs WHERE action = 'rollout.backfill_workspace_ids'").scalar()
    assert entry["tables"]["entra_groups"]["bound"] == 10


def test_backfill_killed_mid_table_then_rerun_equals_an_uninterrupted_run(cluster):
    interrupted, _ = legacy_database(cluster, "tenantatlas_killed", rows_per_table=4000)
    reference, _ = legacy_database(cluster, "tenantatlas_reference", rows_per_table=4000)
    for app in (interrupted, reference):
        migrate_to(app)
    url = interrupted.config["SQLALCHEMY_DATABASE_URI"]
    env = {**os.environ, "DATABASE_URL": url, "TENANTATLAS_ENV": "test", "SECRET_KEY": "x"}
    flask = str(Path(sys.executable).with_name("flask"))
    process = subprocess.Popen([flask, "backfill-workspace-ids", "--batch-size", "200", "--sleep", "0.02"],
                               cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until it is inside a large table
        bound = raw(interrupted, "SELECT count(*) FROM policy_versions WHERE workspace_id IS NOT NULL").scalar()
        if bound > 0:
            break
        time.sleep(0.05)
    process.kill()  # SIGKILL: no cleanup of any kind
    process.wait()
    partial = raw(interrupted, "SELECT count(*) FROM policy_versions WHERE workspace_id IS NULL").scalar()
    assert partial > 0, "the kill came too late to interrupt the table"

    for app in (interrupted, reference):
        result = cli(app, "backfill-workspace-ids", "--batch-size", "500")
        assert result.exit_code == 1  # the orphan rows stay listed in both
    assert _same_bindings(interrupted, reference)


def _same_bindings(a, b) -> bool:
    """Same (id, tenant_id, workspace_id) everywhere (audit_logs differ by the run entries)."""
    for table in TENANT_OWNED_TABLES:
        query = f"SELECT md5(string_agg(id || ':' || tenant_id || ':' || coalesce(workspace_id, 0), ',' ORDER BY id)) FROM {table}"
        if raw(a, query).scalar() != raw(b, query).scalar():
            return False
    audit = ("SELECT md5(string_agg(id || ':' || coalesce(workspace_id, 0), ',' ORDER BY id)) FROM audit_logs "
             "WHERE action <> 'rollout.backfill_workspace_ids'")
    return raw(a, audit).scalar() == raw(b, audit).scalar()


def test_move_tenant_moves_every_row_and_isolation_stays_verified(cluster):
    app, ids = legacy_database(cluster, "tenantatlas_move")
    raw(app, "DELETE FROM policies WHERE tenant_id = 987654321")
    raw(app, "DELETE FROM findings WHERE tenant_id = 987654321")
    migrate_to(app)
    assert cli(app, "backfill-workspace-ids").exit_code == 0
    migrate_to(app, "head")
    external_id = raw(app, "SELECT external_id FROM tenants WHERE id = :t", t=ids["t1"]).scalar()
    result = cli(app, "move-tenant", str(external_id), "w-two")
    assert result.exit_code == 0, result.output
    for table in TENANT_OWNED_TABLES:
        workspaces = raw(app, f"SELECT DISTINCT workspace_id FROM {table} WHERE tenant_id = :t", t=ids["t1"]).all()
        assert workspaces == [(ids["w2"],)], table
    moves = raw(app, "SELECT workspace_id FROM audit_logs WHERE action = 'tenant.move' ORDER BY workspace_id").all()
    assert moves == [(ids["w1"],), (ids["w2"],)]
    assert cli(app, "verify-workspace-isolation").exit_code == 0
    assert cli(app, "move-tenant", str(external_id), "w-two").exit_code == 1  # already there
    assert cli(app, "move-tenant", "nope", "w-two").exit_code == 1
    assert cli(app, "move-tenant", str(uuid.uuid4()), "w-two").exit_code == 1


def test_a_mismatched_write_in_the_web_app_is_a_400_page(app, world, db_session):
    """The write path refuses it before the database does, with a page that says why."""
    web = make_test_app(app.config["SQLALCHEMY_DATABASE_URI"])

    @web.post("/test-only/mismatch")
    def write_into_the_wrong_workspace():
        db.session.add(Policy(tenant_id=world.tenant_a.id, workspace_id=world.b.id, graph_id="x",
                              policy_type="t", platform="ios", display_name="Wrong"))
        db.session.commit()
        return "written"

    web.config["WTF_CSRF_ENABLED"] = False
    response = web.test_client().post("/test-only/mismatch")
    assert response.status_code == 400
    assert "in a workspace other than its tenant" in response.get_data(as_text=True)
    assert db_session.scalar(text("SELECT count(*) FROM policies WHERE display_name = 'Wrong'")) == 0


def test_a_mismatched_write_in_a_command_is_a_message_and_exit_1(app, world, db_session):
    import click

    from cli import database_errors_as_messages

    @click.command()
    @database_errors_as_messages
    def write_into_the_wrong_workspace():
        db.session.add(Policy(tenant_id=world.tenant_a.id, workspace_id=world.b.id, graph_id="x",
                              policy_type="t", platform="ios", display_name="Wrong"))
        db.session.commit()

    result = app.test_cli_runner().invoke(write_into_the_wrong_workspace)
    assert result.exit_code == 1
    assert "its tenant belongs to workspace" in result.output


def test_backfill_meeting_a_lock_waits_its_timeout_retries_and_finishes(pg_cluster):
    import threading

    app, ids = legacy_database(pg_cluster, "tenantatlas_locked")
    migrate_to(app)
    url = app.config["SQLALCHEMY_DATABASE_URI"].replace("postgresql+psycopg://", "postgresql://", 1)
    locked = threading.Event()

    def hold_lock():
        with psycopg.connect(url) as connection:
            connection.execute("LOCK TABLE entra_groups IN EXCLUSIVE MODE")  # blocks its row updates
            locked.set()
            time.sleep(3.5)  # longer than the batch lock_timeout of 2 s
            connection.commit()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert locked.wait(10)
    started = time.monotonic()
    result = cli(app, "backfill-workspace-ids", "--table", "entra_groups")
    holder.join()
    assert result.exit_code == 0, result.output
    assert "LockNotAvailable; retrying" in result.output
    assert time.monotonic() - started >= 2
    assert raw(app, "SELECT count(*) FROM entra_groups WHERE workspace_id IS NULL").scalar() == 0


def test_an_audit_entry_about_a_tenant_is_bound_on_the_write_path(db_session, make_workspace, make_tenant):
    tenant = make_tenant(make_workspace())
    db_session.add(AuditLog(action="x", tenant_id=tenant.id))
    db_session.commit()
    assert db_session.scalar(text("SELECT workspace_id FROM audit_logs WHERE action = 'x'")) == tenant.workspace_id
