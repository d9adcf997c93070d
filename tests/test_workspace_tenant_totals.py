"""Adversarial checks of workspace_tenant_totals (migration 0018_portfolio_tenant_totals)."""
from __future__ import annotations

import io

import pytest
from sqlalchemy import text


def check(db_session):
    kept = dict(((w, s), n) for w, s, n in db_session.execute(text(
        "SELECT workspace_id, status, tenants FROM workspace_tenant_totals WHERE tenants <> 0")).all())
    counted = dict(((w, s), n) for w, s, n in db_session.execute(text(
        "SELECT workspace_id, status, count(*) FROM tenants GROUP BY 1, 2")).all())
    assert kept == counted
    neg = db_session.scalar(text("SELECT count(*) FROM workspace_tenant_totals WHERE tenants < 0"))
    assert neg == 0
    return kept


def ins(db_session, w, n, prefix="T", status="active"):
    db_session.execute(text(
        "INSERT INTO tenants (workspace_id, external_id, name, status) SELECT :w, gen_random_uuid(), :p || g, :s "
        "FROM generate_series(1, :n) g"), {"w": w.id, "n": n, "p": prefix, "s": status})


def test_on_conflict_upsert(db_session, make_workspace):
    a = make_workspace("tot-upsert")
    ins(db_session, a, 3)
    ext = db_session.scalar(text("SELECT external_id FROM tenants WHERE workspace_id = :w AND name = 'T1'"), {"w": a.id})
    db_session.execute(text(
        "INSERT INTO tenants (workspace_id, external_id, name, status) VALUES (:w, :e, 'T1', 'archived'), "
        "(:w, gen_random_uuid(), 'NEW', 'archived') "
        "ON CONFLICT (workspace_id, external_id) DO UPDATE SET status = excluded.status"), {"w": a.id, "e": ext})
    check(db_session)
    db_session.execute(text(
        "INSERT INTO tenants (workspace_id, external_id, name) VALUES (:w, :e, 'T1') "
        "ON CONFLICT (workspace_id, external_id) DO NOTHING"), {"w": a.id, "e": ext})
    check(db_session)


def test_copy_truncate_insert_then_delete(db_session, make_workspace):
    a, b = make_workspace("tot-copy-a"), make_workspace("tot-copy-b")
    import os, uuid
    path = f"/tmp/review3/copy-{a.id}.csv"
    with open(path, "w") as f:
        for i in range(7):
            f.write(f"{a.id},{uuid.uuid4()},C{i},{'archived' if i % 2 else 'active'}\n")
    os.chmod(path, 0o644)
    db_session.execute(text(f"COPY tenants (workspace_id, external_id, name, status) FROM '{path}' (FORMAT csv)"))
    check(db_session)
    db_session.execute(text("SAVEPOINT s"))
    ins(db_session, b, 4, "X")
    db_session.execute(text("DELETE FROM tenants WHERE workspace_id = :w AND name LIKE 'X%'"), {"w": b.id})
    check(db_session)
    db_session.execute(text("ROLLBACK TO SAVEPOINT s"))
    check(db_session)
    # swap statuses in one statement
    db_session.execute(text("UPDATE tenants SET status = CASE status WHEN 'active' THEN 'archived' ELSE 'active' END "
                            "WHERE workspace_id = :w"), {"w": a.id})
    check(db_session)
    # a writable CTE: delete + insert in one statement
    db_session.execute(text(
        "WITH d AS (DELETE FROM tenants WHERE workspace_id = :a AND name = 'C1' RETURNING 1) "
        "INSERT INTO tenants (workspace_id, external_id, name) SELECT :b, gen_random_uuid(), 'moved' FROM d"),
        {"a": a.id, "b": b.id})
    check(db_session)


def test_truncate(db_session, make_workspace):
    a = make_workspace("tot-trunc")
    ins(db_session, a, 3)
    db_session.execute(text("TRUNCATE tenants CASCADE"))
    assert check(db_session) == {}
    ins(db_session, a, 2)
    assert check(db_session) == {(a.id, "active"): 2}


def test_app_role_reads_only_its_workspace_totals_and_cannot_write(db_session, make_workspace):
    a, b = make_workspace("tot-rls-a"), make_workspace("tot-rls-b")
    ins(db_session, a, 2)
    ins(db_session, b, 3)
    db_session.execute(text("SET LOCAL ROLE tenantatlas_app"))
    db_session.execute(text("SELECT set_config('app.current_workspace_id', :w, true)"), {"w": str(a.id)})
    rows = db_session.execute(text("SELECT workspace_id, tenants FROM workspace_tenant_totals")).all()
    assert {r[0] for r in rows} == {a.id}
    for stmt in ("UPDATE workspace_tenant_totals SET tenants = 0",
                 "DELETE FROM workspace_tenant_totals",
                 "TRUNCATE workspace_tenant_totals",
                 f"INSERT INTO workspace_tenant_totals VALUES ({a.id}, 'x', 1)",
                 "SELECT refresh_workspace_tenant_totals()"):
        db_session.execute(text("SAVEPOINT p"))
        with pytest.raises(Exception):
            db_session.execute(text(stmt))
        db_session.execute(text("ROLLBACK TO SAVEPOINT p"))
    db_session.execute(text("SELECT set_config('app.current_workspace_id', '', true)"))
    assert db_session.execute(text("SELECT * FROM workspace_tenant_totals")).all() == []


def test_merge_inserting_updating_and_deleting_in_one_statement(db_session, make_workspace):
    a = make_workspace("tot-merge")
    ins(db_session, a, 6)
    db_session.execute(text("""
        MERGE INTO tenants t
        USING (SELECT id, name FROM tenants WHERE workspace_id = :w
               UNION ALL SELECT NULL, 'NEW' || g FROM generate_series(1, 4) g) s ON t.id = s.id
        WHEN MATCHED AND s.name IN ('T1', 'T2') THEN DELETE
        WHEN MATCHED AND s.name IN ('T3', 'T4') THEN UPDATE SET status = 'archived'
        WHEN NOT MATCHED THEN INSERT (workspace_id, external_id, name, status)
             VALUES (:w, gen_random_uuid(), s.name, 'archived')"""), {"w": a.id})
    assert check(db_session)[(a.id, "archived")] == 6
