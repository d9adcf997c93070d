"""Backup schedules that run, and the retention they set.

- A schedule runs when it is enabled, due, and its tenant is active and connected
  (`backup_schedules_due`, migration 0014). An archived tenant's schedules never run; a
  disconnected tenant's wait, and the schedules page says why.
- Missed runs run once: when a schedule is taken, its next run is the next slot after
  *now*, not after the slot it missed, so a worker that was down for three days starts one
  backup, not three.
- Two schedulers never take one schedule twice: the row is locked (SKIP LOCKED) and the
  due time checked again under the lock.
- Retention: after a scheduled backup, the schedule's sets older than `retention_days` are
  deleted, except the newest `keep_last` complete ones (a tenant whose backups fail, or only
  partly succeed, for a month keeps its last complete ones). Then items no set lists and payloads nothing refers to
  are pruned; a payload a policy version or a restore refers to stays.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, select, text

from app.extensions import db
from app.models import BackupSchedule, BackupSet, Tenant

from .payloads import lock_for_pruning

log = logging.getLogger(__name__)

BACKUP_HOUR_UTC = 2  # scheduled backups run in the quiet hours
# The backups retention always keeps: complete ones (a partial one may lack whole families).
GOOD = ("completed",)


def next_run_after(moment: datetime, frequency: str) -> datetime:
    """The next slot of a schedule: the next full hour, or 02:00 UTC tomorrow, next Monday, next month's 1st."""
    if frequency == "hourly":
        return moment.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    slot = moment.replace(hour=BACKUP_HOUR_UTC, minute=0, second=0, microsecond=0)
    if frequency == "daily":
        return slot if slot > moment else slot + timedelta(days=1)
    if frequency == "weekly":
        slot += timedelta(days=(7 - slot.weekday()) % 7)
        return slot if slot > moment else slot + timedelta(days=7)
    slot = slot.replace(day=1)  # monthly
    if slot > moment:
        return slot
    return slot.replace(year=slot.year + 1, month=1) if slot.month == 12 else slot.replace(month=slot.month + 1)


def _not_backed_up_because(tenant: Tenant) -> str | None:
    """Why nothing of this tenant can be backed up now (one rule for schedules and Back up now)."""
    if tenant.status == "archived":
        return "archived"
    if tenant.connection_status == "consent_revoked":
        return "consent_revoked"
    return None if tenant.is_connected else "not_connected"


SCHEDULE_BLOCKERS = {
    "archived": "This tenant is archived: its schedules never run. Restore the tenant to resume them.",
    "consent_revoked": "Consent to TenantAtlas was revoked in this tenant: schedules wait until it is connected again.",
    "not_connected": "This tenant is not connected to Microsoft Graph: schedules run once it is connected.",
}
BACKUP_BLOCKERS = {
    "archived": "This tenant is archived: it cannot be backed up. Restore the tenant first.",
    "consent_revoked": "Consent to TenantAtlas was revoked in this tenant: nothing can be read until it is "
                       "connected again.",
    "not_connected": "This tenant is not connected to Microsoft Graph: a backup can run once it is connected.",
}


def schedule_blocker(tenant: Tenant) -> str | None:
    """Why this tenant's schedules do not run now, in words for the schedules page; None when they do."""
    return SCHEDULE_BLOCKERS.get(_not_backed_up_because(tenant))


def backup_blocker(tenant: Tenant) -> str | None:
    """Why Back up now cannot run for this tenant, in words for the backups page; None when it can."""
    return BACKUP_BLOCKERS.get(_not_backed_up_because(tenant))


def take_due_schedule(schedule_id: int, now: datetime):
    """Lock a due schedule and start its backup (caller's workspace and transaction). Returns the set, or None."""
    from .engine import BackupAlreadyActive, create_backup

    schedule = db.session.scalar(select(BackupSchedule).where(BackupSchedule.id == schedule_id)
                                 .with_for_update(skip_locked=True))
    if schedule is None or not schedule.is_enabled or schedule.next_run_at is None or schedule.next_run_at > now:
        return None  # taken by another scheduler, disabled or edited meanwhile
    tenant = db.session.get(Tenant, schedule.tenant_id)
    if tenant is None or tenant.status != "active" or not tenant.is_connected:
        return None
    schedule.next_run_at = next_run_after(now, schedule.frequency)  # once, however many slots were missed
    schedule.last_run_at = now
    try:
        return create_backup(tenant, "schedule", schedule=schedule, now=now)
    except BackupAlreadyActive:
        log.info("schedule %s: a backup of tenant %s is already running; this slot is skipped", schedule.id, tenant.id)
        return None


def queue_due_backups(limit: int, now: datetime) -> int:
    """Start a backup for each due schedule, each inside its own workspace."""
    from app.jobs import enqueue_backup
    from app.row_security import working_in_workspace

    due = db.session.execute(text("SELECT schedule_id, workspace_id FROM backup_schedules_due(:n)"), {"n": limit}).all()
    db.session.rollback()
    started = 0
    for schedule_id, workspace_id in due:
        with working_in_workspace(workspace_id):
            backup_set = take_due_schedule(schedule_id, now)
            if backup_set is not None:
                enqueue_backup(backup_set)
                started += 1
            db.session.commit()
    return started


def apply_retention(schedule: BackupSchedule, now: datetime) -> int:
    """Delete the schedule's sets past retention (never its newest `keep_last` good ones); returns how many."""
    kept = select(BackupSet.id).where(BackupSet.tenant_id == schedule.tenant_id, BackupSet.schedule_id == schedule.id,
                                      BackupSet.status.in_(GOOD)) \
        .order_by(BackupSet.started_at.desc(), BackupSet.id.desc()).limit(schedule.keep_last)
    expired = db.session.scalars(
        delete(BackupSet).where(BackupSet.tenant_id == schedule.tenant_id, BackupSet.schedule_id == schedule.id,
                                BackupSet.status.in_(("completed", "partial", "failed")),
                                BackupSet.started_at < now - timedelta(days=schedule.retention_days),
                                BackupSet.id.not_in(kept))
        .returning(BackupSet.id)).all()
    if expired:
        prune_unreferenced(schedule.tenant_id)
    return len(expired)


def prune_unreferenced(tenant_id: int) -> tuple[int, int]:
    """Delete the tenant's items no backup set lists, then payloads no item, version or restore refers to.

    Never while a backup of the tenant is pending or running: it lists its items only when it ends
    (written once, so an unchanged tenant's backup adds one array, not one per family). Checked under
    the exclusive lock, which waits for any payload writer, so no backup's items are taken under it.
    """
    lock_for_pruning(tenant_id)
    if db.session.scalar(select(BackupSet.id).where(BackupSet.tenant_id == tenant_id,
                                                    BackupSet.status.in_(("pending", "running"))).limit(1)):
        return 0, 0
    items = db.session.execute(text("""
        DELETE FROM backup_items AS i
         WHERE i.tenant_id = :t
           AND NOT EXISTS (SELECT 1 FROM backup_sets AS s
                            WHERE s.tenant_id = :t AND s.item_ids @> ARRAY[i.id])"""), {"t": tenant_id}).rowcount
    payloads = db.session.execute(text("""
        DELETE FROM backup_payloads AS p
         WHERE p.tenant_id = :t
           AND NOT EXISTS (SELECT 1 FROM backup_items AS i WHERE i.payload_id = p.id)
           AND NOT EXISTS (SELECT 1 FROM policy_versions AS v WHERE v.payload_id = p.id)
           AND NOT EXISTS (SELECT 1 FROM restore_items AS r WHERE r.payload_id = p.id)"""), {"t": tenant_id}).rowcount
    return items, payloads
