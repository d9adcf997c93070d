"""Operator side of the tenant health summary (migration 0007).

Triggers keep `tenant_health` exact on every write. `refresh_all` recomputes
every row from the source tables anyway: after a restore from backup, a bulk
load with triggers disabled, or simply to check. Each tenant is refreshed in its
own transaction by the database function `refresh_tenant_health`, which waits
for that tenant's writers in flight (and holds later ones back) for the moment
of one recount, so it runs safely on a live database.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

ID_PAGE = 1000
ATTEMPTS = 5
# A writer holding a tenant longer than this is waited out by a retry, not by queueing
# every later writer of that tenant behind this refresh.
LOCK_TIMEOUT = "2s"
RETRYABLE = {"55P03", "40P01"}  # lock_not_available, deadlock_detected
OLDER_TRANSACTIONS_WAIT = 60.0


@dataclass
class RefreshReport:
    checked: int = 0
    corrected: list[int] = field(default_factory=list)  # tenant ids whose row was wrong or missing
    failed: list[int] = field(default_factory=list)  # tenant ids still locked after every attempt
    created: list[int] = field(default_factory=list)  # tenant ids whose row was missing
    older_transactions_open: bool = False  # some writer from before they existed outlived the wait
    totals_corrected: int = 0  # (workspace, status) rows of workspace_tenant_totals that were wrong (0018)
    totals_failed: bool = False  # the totals' recount stayed locked out by tenant writers


def create_missing_rows(connection: Connection, wait: float = OLDER_TRANSACTIONS_WAIT) -> tuple[list[int], bool]:
    """Zero rows for tenants without one, then wait for the transactions that began before them.

    A writer whose trigger found no row counted nothing and holds no lock a recount would
    wait for; once every such transaction has ended, each writer's trigger updates (and
    locks) an existing row. Returns (their tenant ids, whether older transactions were still open).
    """
    created = list(connection.execute(text(
        "INSERT INTO tenant_health (tenant_id, workspace_id) SELECT id, workspace_id FROM tenants "
        "ON CONFLICT (tenant_id) DO NOTHING RETURNING tenant_id")).scalars())
    if not created:
        return [], False
    horizon = connection.execute(text("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")).scalar()
    deadline = time.monotonic() + wait
    while connection.execute(text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint < :h"),
                             {"h": horizon}).scalar():
        if time.monotonic() > deadline:
            return created, True
        time.sleep(0.2)
    return created, False


def refresh_totals(connection: Connection, attempts: int = ATTEMPTS) -> int | None:
    """Recount the workspaces' tenant totals, retried like a tenant's row (its table lock waits for
    open tenant writers); the rows corrected, or None if writers kept it out every time."""
    for attempt in range(1, attempts + 1):
        try:
            return int(connection.execute(text("SELECT refresh_workspace_tenant_totals()")).scalar_one())
        except DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) not in RETRYABLE:
                raise
            time.sleep(0.2 * attempt)
    return None


def refresh_tenant(connection: Connection, tenant_id: int, attempts: int = ATTEMPTS) -> bool | None:
    """Refresh one tenant in its own transaction; True if corrected, None if it stayed locked."""
    for attempt in range(1, attempts + 1):
        try:
            return bool(connection.execute(text("SELECT refresh_tenant_health(:t)"), {"t": tenant_id}).scalar_one())
        except DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) not in RETRYABLE:
                raise
            time.sleep(0.2 * attempt)
    return None


def refresh_all(engine: Engine, on_progress: Callable[[int, int], None] | None = None) -> RefreshReport:
    report = RefreshReport()
    with engine.connect() as connection:
        total = connection.execute(text("SELECT count(*) FROM tenants")).scalar_one()
        connection.rollback()
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        # Each statement its own transaction, in READ COMMITTED whatever the server's default.
        connection.exec_driver_sql("SET default_transaction_isolation = 'read committed'")
        connection.exec_driver_sql(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        try:
            report.created, report.older_transactions_open = create_missing_rows(connection)
            missing = set(report.created)
            after = 0
            while True:
                ids = connection.execute(text("SELECT id FROM tenants WHERE id > :after ORDER BY id LIMIT :n"),
                                         {"after": after, "n": ID_PAGE}).scalars().all()
                if not ids:
                    # The portfolio's kept tenant totals, recounted in one short transaction.
                    corrected = refresh_totals(connection)
                    report.totals_failed = corrected is None
                    report.totals_corrected = corrected or 0
                    return report
                for tenant_id in ids:
                    corrected = refresh_tenant(connection, tenant_id)
                    if corrected is None:
                        report.failed.append(tenant_id)
                    elif corrected or tenant_id in missing:
                        report.corrected.append(tenant_id)
                    report.checked += 1
                after = ids[-1]
                if on_progress:
                    on_progress(report.checked, max(total, report.checked))
        finally:
            connection.exec_driver_sql("RESET lock_timeout")
            connection.exec_driver_sql("RESET default_transaction_isolation")
