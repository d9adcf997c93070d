"""workspace_tenant_totals with committed data and real connections: concurrent writers, the
migration going down and up, and the operator's repair beside an open writer."""
from __future__ import annotations

import random
import threading
import uuid

import psycopg
import pytest

from tests.conftest import migrated_database


@pytest.fixture(scope="module")
def live(pg_cluster):
    owner, owner_url, app_url = migrated_database(pg_cluster, "review3_totals")
    from app.extensions import db
    with owner.app_context():
        db.engine.dispose()
    plain = owner_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True) as conn:
        ids = [conn.execute("INSERT INTO workspaces (slug, name) VALUES (%s, %s) RETURNING id",
                            (f"live-{i}", f"Live {i}")).fetchone()[0] for i in range(3)]
    return owner, plain, ids


def mismatches(conn):
    return conn.execute("""
        SELECT coalesce(k.workspace_id, c.workspace_id), coalesce(k.status, c.status), k.tenants, c.n
        FROM (SELECT * FROM workspace_tenant_totals WHERE tenants <> 0) k
        FULL JOIN (SELECT workspace_id, status, count(*) n FROM tenants GROUP BY 1, 2) c
          ON c.workspace_id = k.workspace_id AND c.status = k.status
        WHERE k.tenants IS DISTINCT FROM c.n""").fetchall()


def test_concurrent_writers_keep_exact_totals(live):
    _owner, url, ws = live
    errors, deadlocks = [], []

    def worker(seed):
        rnd = random.Random(seed)
        with psycopg.connect(url) as conn:
            for _ in range(40):  # 4 x 40 transactions: enough to interleave, cheap on 2 cores
                try:
                    with conn.transaction():
                        for _ in range(rnd.randint(1, 3)):
                            op = rnd.random()
                            w = rnd.choice(ws)
                            if op < 0.35:
                                conn.execute("INSERT INTO tenants (workspace_id, external_id, name, status) "
                                             "SELECT %s, gen_random_uuid(), 'L', %s FROM generate_series(1, %s)",
                                             (w, rnd.choice(["active", "archived"]), rnd.randint(1, 3)))
                            elif op < 0.55:
                                conn.execute("DELETE FROM tenants WHERE id IN (SELECT id FROM tenants WHERE "
                                             "workspace_id = %s ORDER BY random() LIMIT 2)", (w,))
                            elif op < 0.8:
                                conn.execute("UPDATE tenants SET status = CASE status WHEN 'active' THEN 'archived' "
                                             "ELSE 'active' END WHERE id IN (SELECT id FROM tenants WHERE "
                                             "workspace_id = %s ORDER BY random() LIMIT 3)", (w,))
                            elif op < 0.9:
                                conn.execute("UPDATE tenants SET workspace_id = %s WHERE id IN (SELECT id FROM "
                                             "tenants WHERE workspace_id = %s ORDER BY random() LIMIT 1)",
                                             (rnd.choice(ws), w))
                            else:
                                conn.execute("INSERT INTO tenants (workspace_id, external_id, name) VALUES "
                                             "(%s, %s, 'U') ON CONFLICT (workspace_id, external_id) DO UPDATE "
                                             "SET status = 'archived'", (w, str(uuid.UUID(int=rnd.randint(0, 20)))))
                        if rnd.random() < 0.2:
                            raise RuntimeError("rollback")
                except RuntimeError:
                    pass
                except psycopg.errors.UniqueViolation:
                    pass
                except psycopg.errors.DeadlockDetected:
                    deadlocks.append(1)
                except Exception as error:  # noqa: BLE001
                    errors.append(repr(error))

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    with psycopg.connect(url) as conn:
        assert mismatches(conn) == []



def test_downgrade_then_upgrade_recounts(live):
    owner, url, ws = live
    from flask_migrate import downgrade, upgrade
    from app.extensions import db
    with owner.app_context():
        downgrade(revision="0018_portfolio_sort_indexes")
        db.engine.dispose()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO tenants (workspace_id, external_id, name, status) SELECT %s, gen_random_uuid(), "
                     "'D', 'archived' FROM generate_series(1, 5)", (ws[0],))
        conn.execute("DELETE FROM tenants WHERE id IN (SELECT id FROM tenants WHERE workspace_id = %s LIMIT 2)",
                     (ws[1],))
    with owner.app_context():
        upgrade()
        db.engine.dispose()
    with psycopg.connect(url) as conn:
        assert mismatches(conn) == []
        assert conn.execute("SELECT relforcerowsecurity FROM pg_class WHERE relname = 'workspace_tenant_totals'"
                            ).fetchone()[0]


def test_refresh_beside_an_open_tenant_writer_reports_instead_of_failing_and_recounts_later(live):
    """`flask refresh-tenant-health` beside a transaction that has written a tenant row (a sync
    stamping last_sync_at): the totals' table lock is retried like a tenant's row, then reported
    as not recounted (the command says to run it again), never lost in an exception."""
    owner, url, ws = live
    from app.extensions import db
    from app.tenant_health import refresh_all
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO tenants (workspace_id, external_id, name) VALUES (%s, %s, 'Open writer')",
                     (ws[0], uuid.uuid4()))
    blocker = psycopg.connect(url)
    try:
        blocker.execute("UPDATE tenants SET last_sync_at = now() WHERE id = (SELECT min(id) FROM tenants)")
        with owner.app_context():
            report = refresh_all(db.engine)
            db.engine.dispose()
        assert report.checked > 0 and report.totals_failed
    finally:
        blocker.rollback()
        blocker.close()
    with owner.app_context():
        report = refresh_all(db.engine)
        db.engine.dispose()
    assert not report.totals_failed and not report.failed
