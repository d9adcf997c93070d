"""Hygiene findings, from the tenant's own rows: what the tenant's pages show, never a fixture.

- no successful backup in N days: no backup set `completed` or `partial` finished within
  the last N days (BACKUP_MAX_AGE_DAYS, config FINDINGS_BACKUP_MAX_AGE_DAYS); asked only of
  a tenant that is connected or has ever had a backup (a tenant just registered is not
  "failing" its backups);
- sync failing: the last sync failed (N in a row);
- a Microsoft Graph permission missing: one finding per missing permission, for a connected
  tenant (only a token says what is granted);
- consent revoked: the customer's admin consent is gone (or the app was removed).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app, has_app_context
from sqlalchemy import exists, func, or_, select

from app.extensions import db
from app.models import BackupSchedule, BackupSet, Tenant, TenantPermission

from .findings import Desired, subject_key

BACKUP_MAX_AGE_DAYS = 7
SUCCESSFUL_BACKUP_STATUSES = ("completed", "partial")
HYGIENE = "hygiene"


def backup_max_age_days() -> int:
    if has_app_context():
        return int(current_app.config.get("FINDINGS_BACKUP_MAX_AGE_DAYS", BACKUP_MAX_AGE_DAYS))
    return BACKUP_MAX_AGE_DAYS


def hygiene_facts(tenant_id: int) -> dict:
    """The rows hygiene reads, in one statement: the last successful backup, the latest finished
    backup (its id and status: alert rules tell a failed one), whether any backup or schedule
    exists, and the missing permissions."""
    last_success = (select(func.max(BackupSet.finished_at))
                    .where(BackupSet.tenant_id == tenant_id, BackupSet.status.in_(SUCCESSFUL_BACKUP_STATUSES),
                           BackupSet.finished_at.is_not(None)).scalar_subquery())
    has_backups = or_(exists().where(BackupSet.tenant_id == tenant_id),
                      exists().where(BackupSchedule.tenant_id == tenant_id))
    missing = (select(func.coalesce(func.array_agg(TenantPermission.permission_name), []))
               .where(TenantPermission.tenant_id == tenant_id, TenantPermission.status == "missing")
               .scalar_subquery())
    # The latest by finished_at: a set that failed before it started (archived while queued,
    # Graph not configured) has no started_at, and must not stay "latest" for ever.
    latest = (select(func.json_build_array(BackupSet.id, BackupSet.status, BackupSet.error))
              .where(BackupSet.tenant_id == tenant_id, BackupSet.finished_at.is_not(None))
              .order_by(BackupSet.finished_at.desc(), BackupSet.id.desc()).limit(1).scalar_subquery())
    row = db.session.execute(select(last_success.label("last_success"), has_backups.label("has_backups"),
                                    missing.label("missing"), latest.label("latest"))).one()
    latest_id, latest_status, latest_error = row.latest or (None, None, None)
    return {"last_success": row.last_success, "has_backups": row.has_backups, "missing": sorted(row.missing or []),
            "latest_backup": {"id": latest_id, "status": latest_status, "error": latest_error} if latest_id else None}


def hygiene_findings(tenant: Tenant, now: datetime, facts: dict | None = None) -> list[Desired]:
    facts = facts if facts is not None else hygiene_facts(tenant.id)
    found: list[Desired] = []
    days = backup_max_age_days()
    last_success = facts["last_success"]
    if (tenant.is_connected or facts["has_backups"]) and (last_success is None
                                                           or last_success < now - timedelta(days=days)):
        found.append(Desired(
            key=subject_key(HYGIENE, "backup_missing"), kind="backup",
            severity="high" if last_success is None else "medium",
            title=f"No successful backup in the last {days} days",
            detail={"maxAgeDays": days,
                    "lastSuccessfulBackupAt": last_success.isoformat() if last_success else None,
                    "lastSuccessfulBackupDaysAgo": (now - last_success).days if last_success else None}))
    if tenant.connection_status == "consent_revoked":
        found.append(Desired(
            key=subject_key(HYGIENE, "consent_revoked"), kind="connection", severity="critical",
            title="Admin consent was revoked (or the app removed) in this tenant",
            detail={"error": tenant.connection_error}))
    elif tenant.last_sync_status == "failed" and tenant.consecutive_failures > 0:
        paused = tenant.sync_paused_at is not None
        found.append(Desired(
            key=subject_key(HYGIENE, "sync_failing"), kind="sync",
            severity="high" if paused or tenant.consecutive_failures >= 3 else "medium",
            title=f"Sync failing: {tenant.consecutive_failures} failed sync(s) in a row"
                  + (" (periodic syncing paused)" if paused else ""),
            detail={"consecutiveFailures": tenant.consecutive_failures, "error": tenant.connection_error,
                    "paused": paused}))
    # What a tenant grants is known only from a token: a tenant never connected (or whose consent
    # is gone) shows no permission as missing, as its Permissions column says (a dash).
    for permission in (facts["missing"] if tenant.is_connected else ()):
        found.append(Desired(
            key=subject_key(HYGIENE, "permission_missing", permission), kind="permission", severity="high",
            title=f"Microsoft Graph permission {permission} is not granted",
            detail={"permission": permission}))
    return found
