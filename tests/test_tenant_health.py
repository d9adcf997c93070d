"""The tenant health summary (migration 0007): triggers keep it exact, refreshes never race
writers, the app can only read it, and the portfolio's health columns come from it."""
from __future__ import annotations

import re
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from flask_migrate import upgrade
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from app.database import APP_ROLE
from app.extensions import db
from app.models import Tenant, Workspace
from app.rollout import move_tenant
from tests.conftest import enter, make_test_app, migrated_database, post_form, sign_in

HEALTH = """
SELECT tenant_id, workspace_id, policy_count, open_critical, open_high, open_medium, open_low,
       missing_permissions, last_backup_at, last_backup_status
  FROM tenant_health ORDER BY tenant_id"""

# The same figures computed from the source rows, independently of the triggers and functions.
EXPECTED = """
SELECT t.id, t.workspace_id,
       (SELECT count(*) FROM policies WHERE tenant_id = t.id),
       (SELECT count(*) FROM findings WHERE tenant_id = t.id AND status = 'open' AND severity = 'critical'),
       (SELECT count(*) FROM findings WHERE tenant_id = t.id AND status = 'open' AND severity = 'high'),
       (SELECT count(*) FROM findings WHERE tenant_id = t.id AND status = 'open' AND severity = 'medium'),
       (SELECT count(*) FROM findings WHERE tenant_id = t.id AND status = 'open' AND severity = 'low'),
       (SELECT count(*) FROM tenant_permissions WHERE tenant_id = t.id AND status = 'missing'),
       (SELECT started_at FROM backup_sets WHERE tenant_id = t.id ORDER BY started_at DESC NULLS LAST, id DESC LIMIT 1),
       (SELECT status FROM backup_sets WHERE tenant_id = t.id ORDER BY started_at DESC NULLS LAST, id DESC LIMIT 1)
  FROM tenants t ORDER BY t.id"""


def assert_health_exact(connection) -> None:
    assert [tuple(r) for r in connection.execute(text(HEALTH))] == \
        [tuple(r) for r in connection.execute(text(EXPECTED))]


def health_of(connection, tenant_id: int) -> dict:
    return dict(connection.execute(text(HEALTH.replace("ORDER BY", "WHERE tenant_id = :t ORDER BY")),
                                   {"t": tenant_id}).mappings().one())


def assert_live_health_exact(owner) -> None:
    """assert_health_exact on the live database (committed rows), through the owner app."""
    with owner.app_context(), db.engine.connect() as connection:
        assert_health_exact(connection)


# --- triggers ---------------------------------------------------------------------------------


def test_a_new_tenant_gets_a_zero_health_row(db_session, make_workspace, make_tenant):
    tenant = make_tenant(make_workspace())
    assert health_of(db_session, tenant.id) == {
        "tenant_id": tenant.id, "workspace_id": tenant.workspace_id, "policy_count": 0, "open_critical": 0,
        "open_high": 0, "open_medium": 0, "open_low": 0, "missing_permissions": 0, "last_backup_at": None,
        "last_backup_status": None}


def test_counters_follow_inserts_updates_and_deletes(db_session, world):
    tenant = world.tenant_a
    before = health_of(db_session, tenant.id)
    assert (before["policy_count"], before["open_high"], before["missing_permissions"],
            before["last_backup_status"]) == (1, 1, 1, "completed")

    db_session.execute(text("UPDATE findings SET status = 'resolved' WHERE id = :f"), {"f": world.ids_a["finding_id"]})
    assert health_of(db_session, tenant.id)["open_high"] == 0
    db_session.execute(text("UPDATE findings SET status = 'open', severity = 'critical' WHERE id = :f"),
                       {"f": world.ids_a["finding_id"]})
    assert (health_of(db_session, tenant.id)["open_critical"], health_of(db_session, tenant.id)["open_high"]) == (1, 0)
    db_session.execute(text("UPDATE tenant_permissions SET status = 'granted' WHERE tenant_id = :t"), {"t": tenant.id})
    assert health_of(db_session, tenant.id)["missing_permissions"] == 0

    newer = datetime.now(timezone.utc) + timedelta(minutes=5)
    backup_id = db_session.execute(text(
        "INSERT INTO backup_sets (tenant_id, workspace_id, name, status, started_at, triggered_by) "
        "VALUES (:t, :w, 'manual', 'failed', :at, 'user') RETURNING id"),
        {"t": tenant.id, "w": tenant.workspace_id, "at": newer}).scalar()
    assert (health_of(db_session, tenant.id)["last_backup_at"], health_of(db_session, tenant.id)["last_backup_status"]) \
        == (newer, "failed")
    db_session.execute(text("UPDATE backup_sets SET status = 'completed' WHERE id = :b"), {"b": backup_id})
    assert health_of(db_session, tenant.id)["last_backup_status"] == "completed"
    db_session.execute(text("DELETE FROM backup_sets WHERE id = :b"), {"b": backup_id})
    assert health_of(db_session, tenant.id)["last_backup_at"] == before["last_backup_at"]

    db_session.execute(text(
        "INSERT INTO policies (tenant_id, workspace_id, graph_id, policy_type, platform, display_name) "
        "SELECT :t, :w, 'bulk-' || g, 'x', 'ios', 'Bulk ' || g FROM generate_series(1, 300) g"),
        {"t": tenant.id, "w": tenant.workspace_id})
    assert health_of(db_session, tenant.id)["policy_count"] == 301
    db_session.execute(text("DELETE FROM policies WHERE graph_id LIKE 'bulk-%'"))
    assert health_of(db_session, tenant.id)["policy_count"] == 1
    assert_health_exact(db_session)


def test_a_bulk_insert_across_tenants_counts_each_tenant(db_session, world):
    db_session.execute(text(
        "INSERT INTO findings (tenant_id, workspace_id, kind, severity, title, status) "
        "SELECT t.id, t.workspace_id, 'drift', s.severity, 'Bulk', s.status FROM tenants t "
        "CROSS JOIN (VALUES ('low', 'open'), ('low', 'open'), ('medium', 'resolved'), ('critical', 'open')) "
        "AS s(severity, status)"))
    assert health_of(db_session, world.tenant_b.id)["open_low"] == 2
    assert health_of(db_session, world.tenant_a2.id)["open_critical"] == 1
    assert_health_exact(db_session)


operation = st.one_of(
    st.tuples(st.just("add policies"), st.integers(0, 2), st.integers(1, 20)),
    st.tuples(st.just("delete policies"), st.integers(0, 2), st.integers(1, 10)),
    st.tuples(st.just("move a policy"), st.integers(0, 2), st.integers(0, 2)),
    st.tuples(st.just("add findings"), st.integers(0, 2), st.sampled_from(["low", "medium", "high", "critical"]),
              st.sampled_from(["open", "acknowledged", "resolved"]), st.integers(1, 5)),
    st.tuples(st.just("triage a finding"), st.integers(0, 2), st.sampled_from(["open", "acknowledged", "resolved"]),
              st.sampled_from(["low", "medium", "high", "critical"])),
    st.tuples(st.just("delete findings"), st.integers(0, 2)),
    st.tuples(st.just("add permission"), st.integers(0, 2), st.sampled_from(["granted", "missing"])),
    st.tuples(st.just("flip permissions"), st.integers(0, 2)),
    # Finished backups only: a tenant has at most one pending or running backup (a unique index).
    st.tuples(st.just("add backup"), st.integers(0, 2), st.one_of(st.none(), st.integers(-1000, 1000)),
              st.sampled_from(["completed", "failed", "partial"])),
    st.tuples(st.just("shift backups"), st.integers(0, 2), st.integers(-2000, 2000)),
    st.tuples(st.just("delete a backup"), st.integers(0, 2)),
)

OPERATIONS = {
    "add policies": ("INSERT INTO policies (tenant_id, workspace_id, graph_id, policy_type, platform, display_name) "
                     "SELECT :t, :w, 'prop-' || gen_random_uuid(), 'x', 'ios', 'P' FROM generate_series(1, :a)"),
    "delete policies": ("DELETE FROM policies WHERE id IN (SELECT id FROM policies WHERE tenant_id = :t "
                        "AND graph_id LIKE 'prop-%' ORDER BY id LIMIT :a)"),
    "move a policy": ("UPDATE policies SET tenant_id = :t2, workspace_id = :w2 WHERE id = (SELECT min(id) FROM "
                      "policies WHERE tenant_id = :t AND graph_id LIKE 'prop-%')"),
    "add findings": ("INSERT INTO findings (tenant_id, workspace_id, kind, severity, status, title) "
                     "SELECT :t, :w, 'drift', :a, :b, 'F' FROM generate_series(1, :c)"),
    "triage a finding": ("UPDATE findings SET status = :a, severity = :b WHERE id = (SELECT max(id) FROM findings "
                         "WHERE tenant_id = :t)"),
    "delete findings": ("DELETE FROM findings WHERE tenant_id = :t AND title = 'F' AND id % 2 = 0"),
    "add permission": ("INSERT INTO tenant_permissions (tenant_id, workspace_id, permission_name, status) "
                       "VALUES (:t, :w, 'Perm.' || gen_random_uuid(), :a)"),
    "flip permissions": ("UPDATE tenant_permissions SET status = CASE status WHEN 'missing' THEN 'granted' "
                         "ELSE 'missing' END WHERE tenant_id = :t"),
    "add backup": ("INSERT INTO backup_sets (tenant_id, workspace_id, name, status, started_at, triggered_by) "
                   "VALUES (:t, :w, 'B', :b, now() + make_interval(mins => :a), 'user')"),
    "shift backups": ("UPDATE backup_sets SET started_at = started_at + make_interval(mins => :a) "
                      "WHERE tenant_id = :t AND name = 'B'"),
    "delete a backup": ("DELETE FROM backup_sets WHERE id = (SELECT max(id) FROM backup_sets WHERE tenant_id = :t "
                        "AND name = 'B')"),
}


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(operations=st.lists(operation, min_size=1, max_size=25))
def test_any_sequence_of_writes_leaves_every_health_row_exact(db_session, world, operations):
    tenants = [world.tenant_a, world.tenant_a2, world.tenant_b]
    for name, index, *args in operations:
        tenant = tenants[index]
        params = {"t": tenant.id, "w": tenant.workspace_id, "a": None, "b": None, "c": None}
        sql = OPERATIONS[name]
        if name == "add backup" and args[0] is None:  # a backup that never started
            sql = sql.replace("now() + make_interval(mins => :a)", "NULL")
        if name == "move a policy":
            target = tenants[args[0]]
            params.update(t2=target.id, w2=target.workspace_id)
        else:
            params.update(dict(zip("abc", args)))
        db_session.execute(text(sql), params)
    assert_health_exact(db_session)


def test_truncating_a_counted_table_zeroes_its_counters(db_session, world):
    db_session.execute(text("TRUNCATE backup_sets, tenant_permissions CASCADE"))
    db_session.execute(text("TRUNCATE policies CASCADE"))  # with the findings that reference them
    assert_health_exact(db_session)
    assert health_of(db_session, world.tenant_a.id)["policy_count"] == 0


def test_moving_a_tenant_moves_its_health_row(db_session, world):
    move_tenant(db_session.connection(), world.tenant_a.id, world.b.id)
    assert health_of(db_session, world.tenant_a.id)["workspace_id"] == world.b.id
    assert_health_exact(db_session)


def test_deleting_a_tenant_deletes_its_health_row(db_session, make_workspace, make_tenant):
    tenant = make_tenant(make_workspace())
    db_session.execute(text("DELETE FROM tenants WHERE id = :t"), {"t": tenant.id})
    assert db_session.execute(text("SELECT count(*) FROM tenant_health WHERE tenant_id = :t"),
                              {"t": tenant.id}).scalar() == 0


# --- the app role: reads its workspace's rows, writes none ---------------------------------------


def test_the_app_role_reads_only_its_workspace_and_cannot_write(db_session, world):
    a, a_tenants, tenant_a = world.a.id, {world.tenant_a.id, world.tenant_a2.id}, world.tenant_a.id
    tenant_b, b = world.tenant_b.id, world.b.id
    connection = db_session.connection()
    connection.exec_driver_sql(f"SET ROLE {APP_ROLE}")
    connection.exec_driver_sql("SELECT set_config('app.current_workspace_id', %s, true)", (str(a),))
    try:
        visible = {r[0] for r in connection.execute(text("SELECT tenant_id FROM tenant_health"))}
        assert visible == a_tenants
        # Its writes to the source tables still count (the trigger functions are SECURITY DEFINER).
        connection.execute(text(
            "INSERT INTO policies (tenant_id, workspace_id, graph_id, policy_type, platform, display_name) "
            "VALUES (:t, :w, 'by-app', 'x', 'ios', 'By the app')"), {"t": tenant_a, "w": a})
        assert health_of(connection, tenant_a)["policy_count"] == 2
        for statement in ("UPDATE tenant_health SET policy_count = 0",
                          "DELETE FROM tenant_health",
                          f"INSERT INTO tenant_health (tenant_id, workspace_id) VALUES ({tenant_b}, {b})",
                          f"SELECT refresh_tenant_health({tenant_a})"):
            savepoint = connection.begin_nested()
            with pytest.raises(ProgrammingError, match="permission denied"):
                connection.execute(text(statement))
            savepoint.rollback()
    finally:
        connection.exec_driver_sql("RESET ROLE")


def test_triaging_a_finding_in_the_app_updates_the_portfolio(client, world, db_session):
    sign_in(client, world.ada.email)
    enter(client, world.a)
    page = client.get("/admin/w/alpha-msp/managed-tenants?sort=findings&dir=desc").get_data(as_text=True)
    assert '<span class="visually-hidden">1 high</span>' in page
    response = post_form(client, f"/admin/t/{world.tenant_a.external_id}/findings/{world.ids_a['finding_id']}/resolve")
    assert response.status_code == 302
    page = client.get("/admin/w/alpha-msp/managed-tenants?sort=findings&dir=desc").get_data(as_text=True)
    assert "severity-high severity-count" not in page
    assert health_of(db_session, world.tenant_a.id)["open_high"] == 0


def test_a_tenant_without_a_health_row_is_listed_as_not_counted(client, world, db_session):
    db_session.execute(text("DELETE FROM tenant_health WHERE tenant_id = :t"), {"t": world.tenant_a2.id})
    db_session.commit()
    sign_in(client, world.ada.email)
    page = enter(client, world.a).get_data(as_text=True)
    assert "Alpha Customer Two" in page and "Health not counted yet" in page
    assert re.search(r"2 shown ·\s+2 active tenants", page)
    for sort in ("policies", "last_backup", "findings", "missing_permissions"):  # listed last, in every health sort
        for direction in ("asc", "desc"):
            page = client.get(f"/admin/w/{world.a.slug}/managed-tenants?sort={sort}&dir={direction}").get_data(as_text=True)
            assert page.index("Alpha Customer One") < page.index("Alpha Customer Two"), (sort, direction)


def test_definer_functions_resolve_names_in_pg_catalog_only(db_session):
    rows = db_session.execute(text(
        "SELECT p.proname, p.proconfig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'public' AND p.prosecdef")).all()
    assert len(rows) >= 7
    for name, config in rows:
        assert config == ["search_path=pg_catalog, pg_temp"], name
    assert db_session.execute(text(
        f"SELECT has_schema_privilege('{APP_ROLE}', 'public', 'CREATE')")).scalar() is False


def test_workspace_counts_answer_only_for_the_signed_in_user(db_session, world):
    ada, bob = world.ada.id, world.bob.id
    connection = db_session.connection()
    connection.exec_driver_sql(f"SET ROLE {APP_ROLE}")
    connection.exec_driver_sql("SELECT set_config('app.current_user_id', %s, true)", (str(ada),))
    try:
        counts = lambda user: connection.execute(  # noqa: E731
            text("SELECT workspace_id, active FROM workspace_tenant_counts(:u)"), {"u": user}).all()
        assert counts(ada) == [(world.a.id, 2)]
        assert counts(bob) == []  # another user's workspaces: nothing
    finally:
        connection.exec_driver_sql("RESET ROLE")


# --- refresh: never races a writer, repairs what is wrong ----------------------------------------


@pytest.fixture(scope="module")
def live_database(pg_cluster):
    """A database of its own with committed rows: two workspaces, three tenants."""
    owner, owner_url, _ = migrated_database(pg_cluster, "tenantatlas_health")
    with owner.app_context():
        workspaces = [Workspace(slug=f"health-{i}", name=f"Health {i}") for i in range(2)]
        db.session.add_all(workspaces)
        db.session.flush()
        tenants = [Tenant(workspace_id=workspaces[i % 2].id, external_id=uuid.uuid4(), name=f"T{i}") for i in range(3)]
        db.session.add_all(tenants)
        db.session.commit()
        refs = [(t.id, t.workspace_id) for t in tenants]
        db.session.remove()
        db.engine.dispose()
    return owner, owner_url.replace("postgresql+psycopg://", "postgresql://", 1), refs


def insert_policy(connection, tenant) -> None:
    connection.execute(
        "INSERT INTO policies (tenant_id, workspace_id, graph_id, policy_type, platform, display_name) "
        "VALUES (%s, %s, %s, 'x', 'ios', 'Live')", (tenant[0], tenant[1], str(uuid.uuid4())))


def wait_until_blocked(url: str, pid: int) -> None:
    with psycopg.connect(url, autocommit=True) as watcher:
        for _ in range(200):
            if watcher.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                               (pid,)).fetchone()[0] == "Lock":
                return
            time.sleep(0.025)
    raise AssertionError("the session never waited for a lock")


def run_in_thread(url: str, work):
    """Start `work(connection)` on a new connection in a thread; return (thread, its backend pid)."""
    started, pid = threading.Event(), []
    errors = []

    def target():
        try:
            with psycopg.connect(url) as connection:
                pid.append(connection.info.backend_pid)
                started.set()
                work(connection)
                connection.commit()
        except Exception as error:  # surfaced by the test after join
            errors.append(error)
            started.set()

    thread = threading.Thread(target=target)
    thread.start()
    assert started.wait(10)
    thread.errors = errors
    return thread, pid[0] if pid else None


def test_a_refresh_waits_for_a_writer_in_flight(live_database):
    owner, url, tenants = live_database
    tenant = tenants[0]
    with psycopg.connect(url) as writer:
        insert_policy(writer, tenant)  # in flight: its trigger holds the tenant's health row
        refresh, pid = run_in_thread(url, lambda c: c.execute("SELECT refresh_tenant_health(%s)", (tenant[0],)))
        wait_until_blocked(url, pid)
        writer.commit()
    refresh.join(10)
    assert not refresh.errors
    assert_live_health_exact(owner)


def test_refreshing_a_missing_row_waits_for_writers_that_found_none(live_database):
    """A writer whose trigger ran before the row existed counted nothing and holds no lock:
    the refresh creates the missing rows first and waits for such older transactions."""
    owner, url, tenants = live_database
    tenant = tenants[0]
    with psycopg.connect(url) as writer:
        writer.execute("DELETE FROM tenant_health WHERE tenant_id = %s", (tenant[0],))  # as if restored
        writer.commit()
        insert_policy(writer, tenant)  # in flight; its trigger found no row
        result = []
        refresh, _ = run_in_thread(url, lambda c: result.append(
            owner.test_cli_runner().invoke(args=["refresh-tenant-health"])))
        time.sleep(0.5)
        assert refresh.is_alive()  # waiting for the writer's transaction to end
        writer.commit()
    refresh.join(20)
    assert not refresh.errors and result[0].exit_code == 0, result[0].output
    assert f"(tenant ids {tenant[0]})" in result[0].output
    assert_live_health_exact(owner)


def test_a_writer_waits_for_a_refresh_in_flight(live_database):
    owner, url, tenants = live_database
    tenant = tenants[1]
    with psycopg.connect(url) as refresher:
        refresher.execute("SELECT refresh_tenant_health(%s)", (tenant[0],))  # holds the tenant's lock
        writer, pid = run_in_thread(url, lambda c: insert_policy(c, tenant))
        wait_until_blocked(url, pid)
        other, _ = run_in_thread(url, lambda c: insert_policy(c, tenants[2]))  # another tenant: not held back
        other.join(10)
        assert not other.is_alive() and not other.errors
        refresher.commit()
    writer.join(10)
    assert not writer.errors
    assert_live_health_exact(owner)


def test_concurrent_backup_writes_keep_the_latest_backup(live_database):
    """Found in review: the second writer recomputed the latest backup from a snapshot
    taken before the first one committed, and wrote back an older backup."""
    _, url, tenants = live_database
    tenant = tenants[0]
    insert = ("INSERT INTO backup_sets (tenant_id, workspace_id, name, status, started_at, triggered_by) "
              "VALUES (%s, %s, 'concurrent', %s, now() + make_interval(hours => %s), 'user')")
    with psycopg.connect(url) as first:
        first.execute(insert, (*tenant, "running", 1))
        second, pid = run_in_thread(url, lambda c: c.execute(insert, (*tenant, "failed", -24)))
        wait_until_blocked(url, pid)
        first.commit()
    second.join(10)
    assert not second.errors
    with psycopg.connect(url) as check:
        assert check.execute("SELECT last_backup_status FROM tenant_health WHERE tenant_id = %s",
                             (tenant[0],)).fetchone()[0] == "running"


def test_a_refresh_skips_a_tenant_deleted_meanwhile(live_database):
    """Found in review: the refresh deadlocked with, or hit a foreign key error from, a tenant's deletion."""
    _, url, tenants = live_database
    with psycopg.connect(url) as deleter:
        doomed = deleter.execute("INSERT INTO tenants (workspace_id, external_id, name) VALUES (%s, %s, 'Doomed') "
                                 "RETURNING id", (tenants[0][1], uuid.uuid4())).fetchone()[0]
        insert_policy(deleter, (doomed, tenants[0][1]))
        deleter.commit()
        deleter.execute("DELETE FROM tenants WHERE id = %s", (doomed,))  # in flight, cascades done
        results = []
        refresh, pid = run_in_thread(url, lambda c: results.append(
            c.execute("SELECT refresh_tenant_health(%s)", (doomed,)).fetchone()[0]))
        wait_until_blocked(url, pid)
        deleter.commit()
    refresh.join(10)
    assert not refresh.errors and results == [False]


def test_a_refresh_refuses_repeatable_read(live_database):
    _, url, tenants = live_database
    with psycopg.connect(url) as connection:
        connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        with pytest.raises(psycopg.errors.RaiseException, match="needs READ COMMITTED"):
            connection.execute("SELECT refresh_tenant_health(%s)", (tenants[0][0],))


def test_an_update_of_no_counted_column_locks_no_health_row(live_database):
    """Like the workspace backfill: it must not hold back the tenant's other writers."""
    _, url, tenants = live_database
    tenant = tenants[2]
    with psycopg.connect(url) as writer, psycopg.connect(url) as other:
        writer.execute("INSERT INTO findings (tenant_id, workspace_id, kind, severity, title) "
                       "SELECT %s, %s, 'drift', 'low', 'F' || g FROM generate_series(1, 50) g", tenant)
        writer.commit()
        writer.execute("UPDATE findings SET title = title || '!' WHERE tenant_id = %s", (tenant[0],))
        other.execute("SET lock_timeout = '100ms'")
        other.commit()  # a SET in a transaction that is rolled back is undone with it
        other.execute("SELECT 1 FROM tenant_health WHERE tenant_id = %s FOR UPDATE", (tenant[0],))
        other.rollback()
        writer.execute("UPDATE findings SET status = 'resolved' WHERE tenant_id = %s", (tenant[0],))
        with pytest.raises(psycopg.errors.LockNotAvailable):
            other.execute("SELECT 1 FROM tenant_health WHERE tenant_id = %s FOR UPDATE", (tenant[0],))
        writer.commit()
    with psycopg.connect(url) as check:
        assert check.execute("SELECT open_low FROM tenant_health WHERE tenant_id = %s",
                             (tenant[0],)).fetchone()[0] == 0


def test_moving_a_tenant_while_a_writer_is_mid_statement_waits_instead_of_deadlocking(live_database):
    """Found in review: the counting trigger locked the tenant row after the writer's rows,
    so a move (tenant first, then its rows) deadlocked with it."""
    owner, url, tenants = live_database
    tenant, other_workspace = tenants[1], tenants[0][1] if tenants[0][1] != tenants[1][1] else tenants[2][1]
    with psycopg.connect(url) as setup:
        setup.execute("INSERT INTO findings (tenant_id, workspace_id, kind, severity, title) "
                      "SELECT %s, %s, 'drift', 'high', 'Slow ' || g FROM generate_series(1, 4) g", tenant)
    writer, _ = run_in_thread(url, lambda c: c.execute(
        "UPDATE findings SET status = 'resolved' WHERE tenant_id = %s AND title LIKE 'Slow%%' "
        "RETURNING pg_sleep(0.2)", (tenant[0],)).fetchall())
    time.sleep(0.3)  # the writer holds some of its rows and is still sleeping through the rest
    with psycopg.connect(url) as mover:
        mover.execute("UPDATE tenants SET workspace_id = %s WHERE id = %s", (other_workspace, tenant[0]))
        mover.execute("UPDATE tenants SET workspace_id = %s WHERE id = %s", (tenant[1], tenant[0]))
    writer.join(10)
    assert not writer.errors
    assert_live_health_exact(owner)


def test_a_refresh_holds_back_no_writer_of_uncounted_rows(live_database):
    _, url, tenants = live_database
    tenant = tenants[0]
    with psycopg.connect(url) as refresher:
        refresher.execute("SELECT refresh_tenant_health(%s)", (tenant[0],))  # holds the health row
        inventory, _ = run_in_thread(url, lambda c: c.execute(
            "INSERT INTO inventory_items (tenant_id, workspace_id, object_type, graph_id, display_name) "
            "VALUES (%s, %s, 'device', %s, 'Laptop')", (*tenant, str(uuid.uuid4()))))
        inventory.join(10)
        assert not inventory.is_alive() and not inventory.errors
        refresher.commit()


def test_changing_only_a_backup_id_recomputes_the_latest_backup(db_session, world):
    """Found in review: equal start times are broken by id, which the change detection ignored."""
    tenant = world.tenant_a2
    for status in ("completed", "failed"):
        db_session.execute(text(
            "INSERT INTO backup_sets (tenant_id, workspace_id, name, status, started_at, triggered_by) "
            "VALUES (:t, :w, 'same time', :s, '2026-11-01T00:00:00Z', 'user')"),
            {"t": tenant.id, "w": tenant.workspace_id, "s": status})
    db_session.execute(text("UPDATE backup_sets SET id = id + 5000 WHERE tenant_id = :t AND status = 'completed'"),
                       {"t": tenant.id})
    assert health_of(db_session, tenant.id)["last_backup_status"] == "completed"
    assert_health_exact(db_session)


def test_refresh_command_repairs_and_reports_wrong_rows(live_database):
    owner, url, tenants = live_database
    with psycopg.connect(url) as connection:
        connection.execute("UPDATE tenant_health SET policy_count = 99, last_backup_status = 'failed' "
                           "WHERE tenant_id = %s", (tenants[2][0],))
        connection.execute("DELETE FROM tenant_health WHERE tenant_id = %s", (tenants[0][0],))
    result = owner.test_cli_runner().invoke(args=["refresh-tenant-health"])
    assert result.exit_code == 0, result.output
    assert f"Corrected the health row of 2 of 3 tenants (tenant ids {tenants[0][0]}, {tenants[2][0]})" in result.output
    assert_live_health_exact(owner)
    result = owner.test_cli_runner().invoke(args=["refresh-tenant-health"])
    assert "Checked 3 tenants: every health row was exact." in result.output


def test_the_migration_populates_an_existing_database(pg_cluster):
    app = make_test_app(pg_cluster.create_database("tenantatlas_health_migration"))
    with app.app_context():
        upgrade(revision="0006_row_level_security")
        with db.engine.begin() as connection:
            workspace = connection.execute(text(
                "INSERT INTO workspaces (slug, name) VALUES ('pop', 'Pop') RETURNING id")).scalar()
            for n in range(3):
                tenant = connection.execute(text(
                    "INSERT INTO tenants (workspace_id, external_id, name) VALUES (:w, :e, :n) RETURNING id"),
                    {"w": workspace, "e": uuid.uuid4(), "n": f"Pop {n}"}).scalar()
                for name, a, b, c in (("add policies", 5 + n, None, None), ("add findings", "high", "open", n),
                                      ("add findings", "low", "resolved", 2), ("add backup", -n, "failed", None),
                                      ("add permission", "missing", None, None)):
                    connection.execute(text(OPERATIONS[name]), {"t": tenant, "w": workspace, "a": a, "b": b, "c": c})
        upgrade()
        with db.engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM tenant_health")).scalar() == 3
            assert_health_exact(connection)
        db.engine.dispose()
