"""Migration 0014 runs again after failing part way (a lock timeout in its last phase), as env.py says to."""
from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import event


def test_0014_can_be_run_again_after_its_validate_step_timed_out(pg_cluster):
    from flask_migrate import upgrade

    from tests.conftest import make_test_app

    url = pg_cluster.create_database("review_0014_rerun")
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    app = make_test_app(url)
    with app.app_context():
        upgrade(revision="0013_orphaned_sync_runs")
    blocker = psycopg.connect(plain)  # e.g. a manual VACUUM/ANALYZE, or any SHARE UPDATE EXCLUSIVE holder
    with app.app_context():
        from app.extensions import db

        def spy(conn, cursor, statement, parameters, context, executemany):
            if "VALIDATE CONSTRAINT ck_backup_sets_triggered_by_known" in statement:
                blocker.execute("LOCK TABLE backup_sets IN SHARE UPDATE EXCLUSIVE MODE")

        event.listen(db.engine, "before_cursor_execute", spy)
        with pytest.raises(Exception) as first:
            upgrade()
        event.remove(db.engine, "before_cursor_execute", spy)
    blocker.rollback()
    blocker.close()
    with psycopg.connect(plain) as conn:
        print("alembic_version now:", conn.execute("SELECT version_num FROM alembic_version").fetchall(),
              "backup_payloads exists:", conn.execute("SELECT to_regclass('backup_payloads')").fetchone())
    with app.app_context():
        upgrade()  # the operator retries, as env.py's docstring says to
