"""The rollout migrations' SQL, as Alembic writes it offline, passes squawk (PyPI squawk-cli).

Rules left out, and why:
- prefer-robust-stmts: the rollout runs each DDL statement outside a transaction on
  purpose (autocommit), so that its lock is released the moment it finishes instead of
  being held until the whole revision commits. Re-running after a failure is safe
  because the revisions check the catalog first (an existing constraint is not added
  again, an INVALID index is dropped and rebuilt) and use IF [NOT] EXISTS elsewhere;
  squawk reads only the SQL and cannot see those checks.
- ban-drop-constraint: phase 3 drops only its own temporary CHECK (workspace_id IS NOT
  NULL), right after SET NOT NULL has taken over that guarantee; nothing is weakened.
"""
from __future__ import annotations

import os
import subprocess

import pytest
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
IGNORED_RULES = "prefer-robust-stmts,ban-drop-constraint"


def offline_sql(app, revisions: str) -> str:
    env = {**os.environ, "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"], "TENANTATLAS_ENV": "test",
           "SECRET_KEY": "lint"}
    result = subprocess.run([str(BIN / "flask"), "db", "upgrade", revisions, "--sql"], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_rollout_migrations_pass_squawk(app, tmp_path):
    sql = offline_sql(app, "0002_switcher_marks:0004_workspace_id_phase3")
    assert "CREATE INDEX CONCURRENTLY" in sql and "VALIDATE CONSTRAINT" in sql
    path = tmp_path / "rollout.sql"
    path.write_text(sql)
    result = subprocess.run([str(BIN / "squawk"), "--pg-version", "15", "--exclude", IGNORED_RULES, str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_squawk_would_catch_a_blocking_index_build(tmp_path):
    path = tmp_path / "bad.sql"
    path.write_text("CREATE INDEX ix_policies_bad ON policies (display_name);\n")
    result = subprocess.run([str(BIN / "squawk"), "--exclude", IGNORED_RULES, str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "require-concurrent-index-creation" in result.stdout + result.stderr


# The project's own column style (varchar with limits, integer counters) as in its earlier
# revisions; the lock rules stay on. 0010 is procrastinate's schema, not ours to lint.
STYLE_RULES = "prefer-text-field,prefer-bigint-over-int,prefer-identity"


@pytest.mark.parametrize("revisions", ["0008_definer_search_path:0009_graph_connection_and_sync",
                                       "0010_job_queue:0011_tenant_ids_per_workspace",
                                       "0014_backups_that_run:0016e_alerts"])
def test_the_graph_connection_migrations_pass_squawks_lock_rules(app, tmp_path, revisions):
    sql = offline_sql(app, revisions)
    path = tmp_path / "graph.sql"
    path.write_text(sql)
    result = subprocess.run([str(BIN / "squawk"), "--pg-version", "15", "--exclude",
                             f"{IGNORED_RULES},{STYLE_RULES}", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_backup_migration_passes_squawks_lock_rules(app, tmp_path):
    """0014 rebuilds backup_items (the demo-era per-set table, copied into its content-addressed
    successor and dropped) and makes restore_runs.backup_set_id nullable (a restore may come from a
    policy version): both on purpose, so those two compatibility rules are left out; every lock rule holds."""
    path = tmp_path / "backups.sql"
    path.write_text(offline_sql(app, "0013_orphaned_sync_runs:0014_backups_that_run"))
    result = subprocess.run([str(BIN / "squawk"), "--pg-version", "15", "--exclude",
                             f"{IGNORED_RULES},{STYLE_RULES},ban-drop-table,ban-drop-not-null", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
