"""The findings engine: findings computed from real data, never seeded.

    changes = evaluate_tenant(tenant, now)   # in the tenant's workspace; the caller commits

One evaluation of a tenant computes every computed finding it has — hygiene
(app.drift.hygiene) and drift against each baseline assigned to it
(app.drift.baselines) — and reconciles them with what is stored
(app.drift.findings: detected, resolved, reopened, acceptance respected). It runs after
every sync (app.sync.runner), periodically (app.jobs `evaluate_findings`), on demand (a
baseline's "Evaluate now", a bulk assignment), and in the demo seed, always through
this one function.

Its cost is one pass over one tenant's rows; nothing reads another tenant.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from sqlalchemy import select, text

from app.extensions import db
from app.models import Tenant

from .baselines import drift_findings
from .findings import Changes, lock_tenant_findings, reconcile
from .hygiene import hygiene_facts, hygiene_findings

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def evaluate_tenant(tenant: Tenant, now: datetime | None = None) -> Changes:
    """Recompute and reconcile the tenant's computed findings (flushes; the caller commits).

    An archived tenant is left as it is: nothing about it is read any more, so nothing new is known.
    """
    now = now or utcnow()
    if tenant.status == "archived":
        return Changes()
    lock_tenant_findings(tenant.id)
    facts = hygiene_facts(tenant.id)
    desired = hygiene_findings(tenant, now, facts) + drift_findings(tenant)
    changes = reconcile(tenant, desired, now)
    from app.alerts.rules import queue_finding_alerts

    queue_finding_alerts(tenant, changes.detected + changes.reopened, changes.holding, now, facts)
    return changes


def evaluate_tenant_by_id(tenant_id: int, now: datetime | None = None) -> Changes | None:
    """For jobs: evaluate and commit (inside the job's workspace)."""
    tenant = db.session.scalar(select(Tenant).where(Tenant.id == tenant_id))
    if tenant is None:
        db.session.rollback()
        return None
    changes = evaluate_tenant(tenant, now)
    db.session.commit()
    return changes


def evaluate_after(tenant_id: int, what: str) -> None:
    """The tenant's findings after `what` (a sync, a backup) changed the rows they read, so the
    pages never show a finding the run just made untrue; a failure here is logged, never the run's."""
    try:
        evaluate_tenant_by_id(tenant_id)
    except Exception:
        db.session.rollback()
        log.exception("evaluating the findings of tenant %s after %s failed", tenant_id, what)


EVALUATION_PAGE = 500


def evaluate_everywhere(now: datetime | None = None, page: int = EVALUATION_PAGE) -> int:
    """Every active tenant of every workspace, each inside its own workspace and transaction
    (the periodic task). The ids come from a SECURITY DEFINER function (migration 0016c)."""
    from app.row_security import working_in_workspace

    evaluated, after = 0, 0
    while True:
        rows = db.session.execute(text("SELECT tenant_id, workspace_id FROM active_tenants_after(:after, :n)"),
                                  {"after": after, "n": page}).all()
        db.session.rollback()
        if not rows:
            return evaluated
        for tenant_id, workspace_id in rows:
            with working_in_workspace(workspace_id):
                try:
                    evaluate_tenant_by_id(tenant_id, now)
                    evaluated += 1
                except Exception:  # one tenant's failure must not stop the others; the log has it
                    db.session.rollback()
                    log.exception("evaluating the findings of tenant %s failed", tenant_id)
        after = rows[-1][0]
