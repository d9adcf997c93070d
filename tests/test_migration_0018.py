"""Migration 0018 (the drift matrix's findings index) builds and drops its indexes CONCURRENTLY:
squawk's lock rules pass on its offline SQL, and it goes down and up again."""
from __future__ import annotations

import subprocess

from tests.test_migration_lint import BIN, IGNORED_RULES, STYLE_RULES, offline_sql


def test_0018_passes_squawks_lock_rules(app, tmp_path):
    sql = offline_sql(app, "0017_microsoft_identities:0018_drift_matrix_findings_index")
    assert "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_findings_baseline_id_tenant_id_workspace_id" in sql
    assert "DROP INDEX CONCURRENTLY IF EXISTS ix_findings_baseline_id_tenant_id" in sql
    path = tmp_path / "drift.sql"
    path.write_text(sql)
    result = subprocess.run([str(BIN / "squawk"), "--pg-version", "15", "--exclude", f"{IGNORED_RULES},{STYLE_RULES}",
                             str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_0018_goes_down_and_up_again(pg_cluster):
    import psycopg
    from flask_migrate import downgrade, upgrade

    from tests.conftest import make_test_app

    url = pg_cluster.create_database("review_0018_round_trip")
    app = make_test_app(url)

    def indexes() -> set[str]:
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            return {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'findings'")}

    with app.app_context():
        upgrade(revision="0018_drift_matrix_findings_index")
        assert {"ix_findings_baseline_id_tenant_id_workspace_id"} <= indexes()
        assert "ix_findings_baseline_id_tenant_id" not in indexes()
        downgrade(revision="0017_microsoft_identities")
        assert "ix_findings_baseline_id_tenant_id" in indexes()
        assert "ix_findings_baseline_id_tenant_id_workspace_id" not in indexes()
        upgrade(revision="0018_drift_matrix_findings_index")
        from app.extensions import db

        db.engine.dispose()
