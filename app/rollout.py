"""Workspace-isolation rollout, phase 2 and operations: backfill, verification, moving a tenant.

The backfill binds unbound tenant-owned rows to their tenant's workspace in
keyset batches by primary key, one short transaction per batch, set-based
(UPDATE ... FROM tenants): rows never travel to Python, memory stays flat, and a
batch that meets its lock or statement timeout is retried smaller. It is
idempotent (only rows still NULL are touched) and so resumable at any point.
"""
from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from typing import Callable

from psycopg import errors as pg_errors
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

TENANT_OWNED_TABLES = (
    "policies", "policy_versions", "backup_sets", "backup_items", "restore_runs", "backup_schedules",
    "inventory_items", "inventory_links", "entra_groups", "findings", "entra_role_definitions",
    "tenant_permissions",
)
AUDIT_TABLE = "audit_logs"
ALL_TABLES = TENANT_OWNED_TABLES + (AUDIT_TABLE,)

# Measured with bench/backfill.py (docs/benchmarks.md): large enough that per-batch
# overhead is small, small enough that one batch transaction stays well under 250 ms.
DEFAULT_BATCH_SIZE = 2500
# A batch slower than this (wide rows, a checkpoint, a busy disk) makes the next ones
# smaller, so that row locks are held only briefly; fast batches grow back to the size asked for.
TARGET_BATCH_SECONDS = 0.1
SLOW_BATCH_SECONDS = 0.25
MIN_BATCH_SIZE = 100
BATCH_LOCK_TIMEOUT = "2s"
BATCH_STATEMENT_TIMEOUT = "30s"
MAX_RETRIES_PER_BATCH = 8

# Which rows of a table the backfill binds.
_UNBOUND = {table: "workspace_id IS NULL" for table in TENANT_OWNED_TABLES}
_UNBOUND[AUDIT_TABLE] = "workspace_id IS NULL AND tenant_id IS NOT NULL"


@dataclass
class TableReport:
    table: str
    unbound: int = 0       # rows without workspace_id (audit: with a tenant but no workspace)
    bindable: int = 0      # of those, rows whose tenant exists
    unbindable: int = 0    # of those, rows whose tenant is gone
    mismatched: int = 0    # rows whose workspace_id disagrees with their tenant's
    bound_now: int = 0     # rows this run bound
    seconds: float = 0.0
    longest_batch: float = 0.0
    batches: int = 0
    slow_batches: int = 0  # batches over SLOW_BATCH_SECONDS
    retries: int = 0

    @property
    def clean(self) -> bool:
        return self.unbound == 0 and self.mismatched == 0


def table_report(connection: Connection, table: str) -> TableReport:
    """Counts for one table, in one statement (read-only)."""
    mismatch = "t.workspace_id IS NOT NULL AND tn.id IS NOT NULL AND t.workspace_id <> tn.workspace_id"
    if table == AUDIT_TABLE:
        mismatch = "false"  # an entry keeps the workspace it happened in, even after its tenant moved
    unbound = " AND ".join(f"t.{part.strip()}" for part in _UNBOUND[table].split(" AND "))
    row = connection.execute(text(
        f"SELECT count(*) FILTER (WHERE {unbound}),"
        f"       count(*) FILTER (WHERE {unbound} AND tn.id IS NOT NULL),"
        f"       count(*) FILTER (WHERE {mismatch})"
        f"  FROM {table} t LEFT JOIN tenants tn ON tn.id = t.tenant_id"
    )).one()
    return TableReport(table=table, unbound=row[0], bindable=row[1], unbindable=row[0] - row[1],
                       mismatched=row[2])


def isolation_report(connection: Connection, tables=ALL_TABLES) -> list[TableReport]:
    return [table_report(connection, table) for table in tables]


def unbindable_samples(connection: Connection, table: str, limit: int = 10) -> list[tuple[int, int]]:
    """(id, tenant_id) of some rows whose tenant is gone, for the operator to look at."""
    return [tuple(row) for row in connection.execute(text(
        f"SELECT t.id, t.tenant_id FROM {table} t WHERE {_UNBOUND[table]} "
        f"AND NOT EXISTS (SELECT 1 FROM tenants tn WHERE tn.id = t.tenant_id) ORDER BY t.id LIMIT :limit"
    ), {"limit": limit})]


def _batch_statement(table: str):
    """One round trip per batch.

    Find where the next keyset batch of the primary key ends; read that id range once
    (a range scan of the primary key index) with each row's tenant; bind its unbound
    rows from their tenant; and count, from the same read, the rows that stay unbound
    (tenant gone) and those whose workspace disagrees with their tenant's. So a run
    needs no extra scan of the table to report what it could not do.
    """
    unbound = _UNBOUND[table].replace("workspace_id", "r.workspace_id").replace("tenant_id", "r.tenant_id")
    mismatched = "false" if table == AUDIT_TABLE else "r.workspace_id <> r.tenant_workspace_id"
    in_range = "t.id > :after AND t.id <= (SELECT last_id FROM batch)"
    return text(
        f"WITH batch AS (SELECT max(id) AS last_id, count(*) AS size FROM "
        f"               (SELECT id FROM {table} WHERE id > :after ORDER BY id LIMIT :size) ids), "
        f"rows_in AS MATERIALIZED (SELECT t.id, t.tenant_id, t.workspace_id, tn.id AS known_tenant_id, "
        f"                                tn.workspace_id AS tenant_workspace_id "
        f"           FROM {table} t LEFT JOIN tenants tn ON tn.id = t.tenant_id WHERE {in_range}), "
        f"bound AS (UPDATE {table} t SET workspace_id = r.tenant_workspace_id FROM rows_in r "
        f"           WHERE {in_range} AND t.id = r.id AND {unbound} AND r.known_tenant_id IS NOT NULL "
        f"          RETURNING 1) "
        f"SELECT batch.last_id, batch.size, (SELECT count(*) FROM bound), "
        f"       (SELECT count(*) FROM rows_in r WHERE {unbound} AND r.known_tenant_id IS NULL), "
        f"       (SELECT count(*) FROM rows_in r WHERE {mismatched}) "
        f"FROM batch"
    )


class StopRequested:
    """Ctrl-C (SIGINT) or SIGTERM asks the run to stop after the current batch."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread (tests): no handler, nothing to restore
                pass
        return self

    def _handle(self, signum, frame):
        if self.requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _is_timeout(error: DBAPIError) -> bool:
    return isinstance(error.orig, (pg_errors.LockNotAvailable, pg_errors.QueryCanceled))


@dataclass
class BackfillRun:
    engine: Engine
    batch_size: int = DEFAULT_BATCH_SIZE
    sleep: float = 0.0
    on_progress: Callable[[TableReport, int, int], None] = lambda report, done, total: None
    on_retry: Callable[[str, int, str], None] = lambda table, size, reason: None
    stop: StopRequested = field(default_factory=StopRequested)

    def backfill_table(self, table: str) -> TableReport:
        report = TableReport(table=table)
        with self.engine.connect() as connection:
            # The planner's row estimate is enough for a progress bar, and costs no scan.
            total = int(connection.execute(text(
                "SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = CAST(:t AS regclass)"), {"t": table}).scalar())
            connection.rollback()
        started = time.monotonic()
        statement = _batch_statement(table)
        after, size, scanned, consecutive_failures = 0, self.batch_size, 0, 0
        while not self.stop.requested:
            batch_started = time.monotonic()
            try:
                with self.engine.begin() as connection:
                    connection.execute(text(f"SET LOCAL lock_timeout = '{BATCH_LOCK_TIMEOUT}'"))
                    connection.execute(text(f"SET LOCAL statement_timeout = '{BATCH_STATEMENT_TIMEOUT}'"))
                    last_id, in_batch, bound, unbindable, mismatched = connection.execute(
                        statement, {"after": after, "size": size}).one()
            except DBAPIError as error:
                if not _is_timeout(error) or consecutive_failures >= MAX_RETRIES_PER_BATCH:
                    raise
                consecutive_failures += 1
                report.retries += 1
                size = max(MIN_BATCH_SIZE, size // 2)
                self.on_retry(table, size, type(error.orig).__name__)
                time.sleep(min(5.0, 0.2 * consecutive_failures))
                continue
            consecutive_failures = 0
            elapsed = time.monotonic() - batch_started
            report.longest_batch = max(report.longest_batch, elapsed)
            report.batches += 1
            report.slow_batches += elapsed > SLOW_BATCH_SECONDS
            if last_id is None:
                break
            after = last_id
            scanned += in_batch
            report.bound_now += bound
            report.unbindable += unbindable
            report.mismatched += mismatched
            self.on_progress(report, scanned, total)
            if elapsed > TARGET_BATCH_SECONDS:
                size = max(MIN_BATCH_SIZE, int(size * TARGET_BATCH_SECONDS / elapsed))
            elif elapsed < TARGET_BATCH_SECONDS / 2 and size < self.batch_size:
                size = min(self.batch_size, size * 2)
            if self.sleep:
                time.sleep(self.sleep)
        report.seconds = time.monotonic() - started
        if not self.stop.requested:
            with self.engine.connect() as connection:
                # Fresh statistics now, so that phase 3 and the planner do not wait for autovacuum.
                connection.execution_options(isolation_level="AUTOCOMMIT").execute(text(f"ANALYZE {table}"))
        # What stays unbound is what the batches found no tenant for: rows written since
        # phase 1 carry their workspace already (the app sets it, the composite key checks it).
        report.unbound = report.unbindable
        if self.stop.requested:
            with self.engine.connect() as connection:  # an interrupted table: count what is left
                left = table_report(connection, table)
            report.unbound, report.unbindable, report.mismatched = left.unbound, left.unbindable, left.mismatched
        return report


WORKSPACE_LINKS_OF_A_TENANT = (
    "DELETE FROM tenant_tags WHERE tenant_id = :t",
    "DELETE FROM baseline_assignments WHERE tenant_id = :t",
    "DELETE FROM findings WHERE tenant_id = :t AND baseline_id IS NOT NULL",
    "DELETE FROM bulk_run_items WHERE tenant_id = :t",
    "DELETE FROM alert_events WHERE tenant_id = :t",
    "DELETE FROM alert_snoozes WHERE tenant_id = :t",
)


def move_tenant(connection: Connection, tenant_id: int, target_workspace_id: int) -> dict[str, int]:
    """Move a tenant and every row of it to another workspace, in the caller's transaction.

    The composite keys cascade the tenant's new workspace to its bound rows
    (ON UPDATE CASCADE); the explicit updates after it bind rows a partial
    rollout left unbound, so the move is complete at any phase.
    """
    # Links to the old workspace's own objects (tags, baselines, bulk runs, alert rules) cannot
    # follow the tenant: they are removed first (their composite keys would refuse the move).
    for statement in WORKSPACE_LINKS_OF_A_TENANT:
        connection.execute(text(statement), {"t": tenant_id})
    connection.execute(text("UPDATE tenants SET workspace_id = :w, updated_at = now() WHERE id = :t"),
                       {"w": target_workspace_id, "t": tenant_id})
    moved = {}
    for table in TENANT_OWNED_TABLES:
        moved[table] = connection.execute(text(
            f"SELECT count(*) FROM {table} WHERE tenant_id = :t"), {"t": tenant_id}).scalar()
        connection.execute(text(
            f"UPDATE {table} SET workspace_id = :w WHERE tenant_id = :t AND workspace_id IS DISTINCT FROM :w"),
            {"w": target_workspace_id, "t": tenant_id})
    return moved


def record_rollout_audit(connection: Connection, action: str, details: dict) -> None:
    """An audit entry of the rollout commands, in columns every revision since 0001 has: they
    run against a database in the middle of the rollout (0003), older than today's models."""
    import json

    connection.execute(text("INSERT INTO audit_logs (action, details) VALUES (:action, CAST(:details AS jsonb))"),
                       {"action": action, "details": json.dumps(details)})
