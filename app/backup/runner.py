"""Starting and carrying out backups: what the web, the commands and the worker call."""
from __future__ import annotations

import logging

from sqlalchemy import select

from app.extensions import db
from app.models import BackupSchedule, BackupSet, Tenant
from app.sync.runner import GraphNotConfigured, graph_settings, token_provider

from .engine import BackupAlreadyActive, BackupContext, create_backup, run_backup, utcnow
from .schedules import apply_retention

log = logging.getLogger(__name__)


def backup_context(progress=None) -> BackupContext:
    from app.graph.client import GraphClient

    settings = graph_settings()
    return BackupContext(
        token_provider=token_provider(),
        client_factory=lambda tenant_id, provider: GraphClient(settings, tenant_id, token_provider=provider),
        progress=progress,
    )


def request_backup(tenant: Tenant, trigger: str, user_id: int | None = None,
                   families: list[str] | None = None) -> tuple[BackupSet, bool]:
    """Queue a backup of `tenant` (set and job in the caller's transaction, which commits).

    Returns (set, created): a backup already pending or running is returned instead of a second one.
    """
    from app.jobs import enqueue_backup

    try:
        backup_set = create_backup(tenant, trigger, user_id=user_id, families=families)
    except BackupAlreadyActive as active:
        return active.backup_set, False
    enqueue_backup(backup_set)
    return backup_set, True


def carry_out_backup(backup_set_id: int, progress=None) -> str:
    """Run the engine on a set, then the retention of its schedule, then the tenant's findings (a
    backup resolves "no successful backup", a failed one may alert); an unexpected error fails the set."""
    status = _carry_out(backup_set_id, progress)
    tenant_id = db.session.scalar(select(BackupSet.tenant_id).where(BackupSet.id == backup_set_id))
    if tenant_id is not None and status != "running":
        from app.drift import evaluate_after

        evaluate_after(tenant_id, f"backup set {backup_set_id}")
    else:
        db.session.rollback()
    return status


def _carry_out(backup_set_id: int, progress) -> str:
    try:
        backup_set = run_backup(backup_set_id, backup_context(progress))
    except GraphNotConfigured as error:
        db.session.rollback()
        return _fail(backup_set_id, str(error))
    except Exception as error:  # recorded on the set for the user; the traceback goes to the log
        log.exception("backup set %s failed unexpectedly", backup_set_id)
        db.session.rollback()
        return _fail(backup_set_id, f"Internal error ({type(error).__name__}); the worker log has the details.")
    if backup_set is None:
        return "missing"
    if backup_set.schedule_id is not None and backup_set.status in ("completed", "partial"):
        schedule = db.session.get(BackupSchedule, backup_set.schedule_id)
        if schedule is not None:
            try:  # the backup is done either way; a retention that fails is logged and tried next time
                apply_retention(schedule, utcnow())
                db.session.commit()
            except Exception:
                log.exception("retention of schedule %s failed; the backup itself completed", schedule.id)
                db.session.rollback()
    return backup_set.status


def _fail(backup_set_id: int, message: str) -> str:
    backup_set = db.session.get(BackupSet, backup_set_id)
    if backup_set is not None and backup_set.is_active:
        backup_set.status, backup_set.finished_at, backup_set.error = "failed", utcnow(), message[:1000]
        backup_set.item_ids, backup_set.item_count = [], 0
        db.session.commit()
    return "failed"
