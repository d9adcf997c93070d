"""Helpers shared by the workspace-isolation rollout revisions (0003, 0004).

Kept beside the migrations, not in app/, so that the revisions keep meaning
what they meant when they were written.
"""
from __future__ import annotations

import os

from alembic import op

TENANT_OWNED_TABLES = (
    "policies", "policy_versions", "backup_sets", "backup_items", "restore_runs", "backup_schedules",
    "inventory_items", "inventory_links", "entra_groups", "findings", "entra_role_definitions",
    "tenant_permissions",
)

# The same setting env.py applies to every migration session.
STATEMENT_TIMEOUT = os.environ.get("MIGRATION_STATEMENT_TIMEOUT", "60s")


def run_outside_transaction(*statements: str, lift_statement_timeout: bool = False) -> None:
    """Run each statement in autocommit mode, so its lock is released as soon as it finishes.

    With lift_statement_timeout, these statements may run as long as they need:
    for work that does not block writes (VALIDATE CONSTRAINT, CREATE INDEX CONCURRENTLY).
    The short lock_timeout still holds, so none of them waits long for its lock.
    """
    with op.get_context().autocommit_block():
        if lift_statement_timeout:
            op.execute("SET statement_timeout = 0")
        try:
            for statement in statements:
                op.execute(statement)
        finally:
            if lift_statement_timeout:
                op.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'")


def build_index_concurrently(name: str, table: str, columns: str) -> None:
    """CREATE INDEX CONCURRENTLY, first dropping an INVALID leftover of an earlier failed build."""
    bind = op.get_bind()
    invalid = False
    if not op.get_context().as_sql:
        invalid = bool(bind.exec_driver_sql(
            "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = %(name)s AND NOT i.indisvalid", {"name": name}).scalar())
    statements = []
    if invalid:
        statements.append(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    statements.append(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} ({columns})")
    run_outside_transaction(*statements, lift_statement_timeout=True)


def constraint_exists(table: str, name: str) -> bool:
    if op.get_context().as_sql:
        return False  # offline SQL shows every step
    return bool(op.get_bind().exec_driver_sql(
        "SELECT 1 FROM pg_constraint WHERE conrelid = %(table)s::regclass AND conname = %(name)s",
        {"table": table, "name": name}).scalar())


def add_constraint_not_valid(table: str, name: str, definition: str) -> None:
    """ADD CONSTRAINT ... NOT VALID (no scan, a brief lock), unless an earlier run added it already."""
    if not constraint_exists(table, name):
        run_outside_transaction(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition} NOT VALID")


def validate_constraint(table: str, name: str) -> None:
    """VALIDATE scans under SHARE UPDATE EXCLUSIVE: reads and writes go on meanwhile."""
    run_outside_transaction(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}", lift_statement_timeout=True)
