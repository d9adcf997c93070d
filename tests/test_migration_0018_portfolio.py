"""Migrations 0018_portfolio_*: lock-safe SQL, and the tenant totals their triggers keep."""
from __future__ import annotations

import subprocess

from sqlalchemy import text

from tests.test_migration_lint import BIN, IGNORED_RULES, STYLE_RULES, offline_sql


def test_the_portfolio_migrations_pass_squawks_lock_rules(app, tmp_path):
    sql = offline_sql(app, "0018_drift_matrix_findings_index:0018_portfolio_tenant_totals")
    assert sql.count("CREATE INDEX CONCURRENTLY") == 9
    path = tmp_path / "portfolio.sql"
    path.write_text(sql)
    result = subprocess.run([str(BIN / "squawk"), "--pg-version", "15", "--exclude",
                             f"{IGNORED_RULES},{STYLE_RULES}", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def totals(db_session, *workspaces) -> dict:
    ids = [w.id for w in workspaces]
    kept = dict(((w, s), n) for w, s, n in db_session.execute(text(
        "SELECT workspace_id, status, tenants FROM workspace_tenant_totals WHERE workspace_id = ANY(:w) AND tenants <> 0"),
        {"w": ids}).all())
    counted = dict(((w, s), n) for w, s, n in db_session.execute(text(
        "SELECT workspace_id, status, count(*) FROM tenants WHERE workspace_id = ANY(:w) GROUP BY 1, 2"),
        {"w": ids}).all())
    assert kept == counted
    return kept


def test_the_totals_follow_every_write_to_tenants(db_session, make_workspace):
    a, b = make_workspace("totals-a"), make_workspace("totals-b")
    db_session.execute(text(
        "INSERT INTO tenants (workspace_id, external_id, name, status) SELECT :w, gen_random_uuid(), 'T' || g, "
        "CASE WHEN g % 3 = 0 THEN 'archived' ELSE 'active' END FROM generate_series(1, 30) g"), {"w": a.id})
    assert totals(db_session, a, b) == {(a.id, "active"): 20, (a.id, "archived"): 10}
    db_session.execute(text("UPDATE tenants SET status = 'active' WHERE workspace_id = :w AND name IN ('T3', 'T6')"),
                       {"w": a.id})
    db_session.execute(text("UPDATE tenants SET last_sync_at = now() WHERE workspace_id = :w"), {"w": a.id})
    assert totals(db_session, a, b)[(a.id, "archived")] == 8
    # A move to another workspace, and a status change, in one statement.
    db_session.execute(text("UPDATE tenants SET workspace_id = :b, status = 'archived' "
                            "WHERE workspace_id = :a AND name IN ('T1', 'T2', 'T3')"), {"a": a.id, "b": b.id})
    assert totals(db_session, a, b)[(b.id, "archived")] == 3
    db_session.execute(text("DELETE FROM tenants WHERE workspace_id = :w AND name LIKE 'T1%'"), {"w": a.id})
    kept = totals(db_session, a, b)
    assert sum(n for (w, _s), n in kept.items() if w == a.id) == 27 - 10


def test_the_app_role_may_read_the_totals_but_not_write_them(db_session, make_workspace):
    a = make_workspace("totals-role")
    db_session.execute(text("SET LOCAL ROLE tenantatlas_app"))
    db_session.execute(text("SELECT set_config('app.current_workspace_id', :w, true)"), {"w": str(a.id)})
    db_session.execute(text("SELECT * FROM workspace_tenant_totals")).all()
    privileges = db_session.execute(text(
        "SELECT has_table_privilege('tenantatlas_app', 'workspace_tenant_totals', 'INSERT'), "
        "has_table_privilege('tenantatlas_app', 'workspace_tenant_totals', 'UPDATE')")).one()
    assert tuple(privileges) == (False, False)


def test_refresh_tenant_health_also_repairs_the_totals(app, db_session, make_workspace):
    """After a write with triggers off (a restore), the operator's refresh recounts the totals too."""
    a = make_workspace("totals-repair")
    db_session.execute(text("SET LOCAL session_replication_role = replica"))  # triggers off, as a restore
    db_session.execute(text(
        "INSERT INTO tenants (workspace_id, external_id, name) SELECT :w, gen_random_uuid(), 'R' || g "
        "FROM generate_series(1, 4) g"), {"w": a.id})
    db_session.execute(text("SET LOCAL session_replication_role = origin"))
    assert db_session.scalar(text("SELECT count(*) FROM workspace_tenant_totals WHERE workspace_id = :w"),
                             {"w": a.id}) == 0
    changed = db_session.scalar(text("SELECT refresh_workspace_tenant_totals()"))
    assert changed >= 1
    assert totals(db_session, a) == {(a.id, "active"): 4}
    assert db_session.scalar(text("SELECT refresh_workspace_tenant_totals()")) == 0
