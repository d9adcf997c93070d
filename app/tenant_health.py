"""Operator side of the tenant health summary (migration 0007).

Triggers keep `tenant_health` exact on every write. `refresh_all` recomputes
every row from the source tables anyway: after a restore from backup, a bulk
load with triggers disabled, or simply to check. Each tenant is refreshed in its
own transaction by the database function `refresh_tenant_health`, which waits
for that tenant's writers in flight (and holds later ones back) for the moment
of one recount, so it runs safely on a live database.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.engine import Engine

ID_PAGE = 1000


@dataclass
class RefreshReport:
    checked: int = 0
    corrected: list[int] = field(default_factory=list)  # tenant ids whose row was wrong or missing


def refresh_all(engine: Engine, on_progress: Callable[[int, int], None] | None = None) -> RefreshReport:
    report = RefreshReport()
    with engine.connect() as connection:
        total = connection.execute(text("SELECT count(*) FROM tenants")).scalar_one()
        connection.rollback()
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        after = 0
        while True:
            ids = connection.execute(text("SELECT id FROM tenants WHERE id > :after ORDER BY id LIMIT :n"),
                                     {"after": after, "n": ID_PAGE}).scalars().all()
            if not ids:
                return report
            for tenant_id in ids:
                if connection.execute(text("SELECT refresh_tenant_health(:t)"), {"t": tenant_id}).scalar_one():
                    report.corrected.append(tenant_id)
                report.checked += 1
            after = ids[-1]
            if on_progress:
                on_progress(report.checked, max(total, report.checked))
