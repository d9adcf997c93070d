"""Starting, executing and cancelling restores: what the web and the commands call.

Every check a person could get around by forging a form is made here or by the database:
the items must belong to the source (a backup set's own items, or a version of a policy of
the source tenant), the target must be a tenant of the same workspace (the composite keys
of migration 0014 refuse anything else), connected, and granted the write permissions of
every family the restore would write.
"""
from __future__ import annotations

from sqlalchemy import select

from app.audit import record_audit
from app.extensions import db
from app.graph.families import FAMILIES_BY_KEY
from app.models import BackupItem, BackupPayload, BackupSet, Policy, PolicyVersion, RestoreItem, RestoreRun, Tenant
from app.sync.engine import utcnow
from app.sync.permissions import satisfied

MAX_ITEMS = 2000


class RestoreRefused(ValueError):
    """A restore that cannot start (or execute), with what to do about it."""


def restorable_items(backup_set: BackupSet, item_ids: list[int]) -> list[BackupItem]:
    """The set's own restorable items among `item_ids` (ids of other sets or tenants are not found)."""
    held = set(backup_set.item_ids)
    wanted = [item_id for item_id in dict.fromkeys(item_ids) if item_id in held]
    if not wanted:
        return []
    rows = db.session.scalars(select(BackupItem).where(BackupItem.tenant_id == backup_set.tenant_id,
                                                       BackupItem.id.in_(wanted))).all()
    return sorted((row for row in rows if FAMILIES_BY_KEY.get(row.family) and FAMILIES_BY_KEY[row.family].restorable
                   and not row.is_reference), key=lambda row: (row.family, row.display_name.lower(), row.id))


def missing_write_permissions(target: Tenant, families: set[str]) -> list[str]:
    granted = set(target.granted_permissions or [])
    needed = sorted({FAMILIES_BY_KEY[key].write_permission for key in families})
    return [name for name in needed if not satisfied(name, granted)]


def target_shortfall(target: Tenant, families: set[str]) -> str | None:
    """Why `target` cannot take a restore of `families`, in a few words (for the target list), or None."""
    if target.status != "active":
        return "archived"
    if not target.is_connected:
        return "not connected"
    missing = missing_write_permissions(target, families)
    return f"lacks {', '.join(missing)}" if missing else None


def check_target(target: Tenant, families: set[str]) -> None:
    if target.status != "active":
        raise RestoreRefused(f"{target.name} is archived: nothing is restored into an archived tenant.")
    if not target.is_connected:
        raise RestoreRefused(f"{target.name} is not connected to Microsoft Graph: connect it first.")
    missing = missing_write_permissions(target, families)
    if missing:
        raise RestoreRefused(
            f"{target.name} has not granted what restoring needs: {', '.join(missing)}. An administrator of the "
            "tenant grants them by consenting again (the tenant's Permissions page has the link).")


def _start(target: Tenant, source: Tenant, entries: list[tuple[str, str, str, int]], *, mode: str, user,
           backup_set: BackupSet | None = None, version: PolicyVersion | None = None) -> RestoreRun:
    from app.jobs import enqueue_restore_step

    if not entries:
        raise RestoreRefused("Choose at least one item to restore.")
    if len(entries) > MAX_ITEMS:
        raise RestoreRefused(f"A restore takes at most {MAX_ITEMS} items; choose fewer.")
    check_target(target, {family for family, *_ in entries})
    run = RestoreRun(tenant_id=target.id, workspace_id=target.workspace_id, source_tenant_id=source.id,
                     backup_set_id=backup_set.id if backup_set else None,
                     policy_version_id=version.id if version else None, requested_by_user_id=user.id,
                     status="planning", assignment_mode=mode)
    db.session.add(run)
    db.session.flush()
    db.session.add_all([RestoreItem(tenant_id=target.id, workspace_id=target.workspace_id, restore_run_id=run.id,
                                    source_tenant_id=source.id, position=position, family=family,
                                    source_graph_id=graph_id, display_name=name, payload_id=payload_id)
                        for position, (family, graph_id, name, payload_id) in enumerate(entries, start=1)])
    record_audit("restore.plan", actor=user, tenant=target, target_type="restore_run", target_id=run.id,
                 target_name=(backup_set.name if backup_set else f"version of {entries[0][2]}"),
                 details={"before": None, "after": {"status": "planning", "items": len(entries),
                                                    "source_tenant": source.name, "assignments": mode}})
    db.session.flush()
    enqueue_restore_step(run, "plan_restore")
    return run


def start_restore_from_backup(backup_set: BackupSet, item_ids: list[int], target: Tenant, *, mode: str,
                              user) -> RestoreRun:
    if not backup_set.is_usable:
        raise RestoreRefused("This backup holds nothing to restore from (it did not complete).")
    items = restorable_items(backup_set, item_ids)
    source = db.session.get(Tenant, backup_set.tenant_id)
    return _start(target, source, [(i.family, i.graph_id, i.display_name, i.payload_id) for i in items], mode=mode,
                  user=user, backup_set=backup_set)


def start_restore_from_version(version: PolicyVersion, policy: Policy, target: Tenant, *, mode: str,
                               user) -> RestoreRun:
    if version.payload_id is None:
        raise RestoreRefused("This version was captured before TenantAtlas kept restorable copies of versions; "
                             "restore it from a backup set instead.")
    payload = db.session.scalar(select(BackupPayload).where(BackupPayload.id == version.payload_id,
                                                            BackupPayload.tenant_id == version.tenant_id))
    family = FAMILIES_BY_KEY.get(payload.family) if payload else None
    if family is None or not family.restorable:
        raise RestoreRefused("This kind of policy cannot be restored.")
    source = db.session.get(Tenant, version.tenant_id)
    return _start(target, source, [(family.key, policy.graph_id, policy.display_name, payload.id)], mode=mode,
                  user=user, version=version)


def execute(run: RestoreRun, user) -> None:
    """Queue a planned run's writes (manager; the caller checked the role)."""
    from app.jobs import enqueue_restore_step

    if run.status != "planned":
        raise RestoreRefused(f"This restore is {run.status}; only a planned restore can be executed.")
    items = db.session.scalars(select(RestoreItem).where(RestoreItem.restore_run_id == run.id,
                                                         RestoreItem.tenant_id == run.tenant_id)).all()
    writes = [item for item in items if item.action in ("create", "update")]
    target = db.session.get(Tenant, run.tenant_id)
    check_target(target, {item.family for item in writes} or {item.family for item in items})
    run.status, run.executed_by_user_id = "queued", user.id
    record_audit("restore.execute", actor=user, tenant=target, target_type="restore_run", target_id=run.id,
                 target_name=f"Restore #{run.id}",
                 details={"before": {"status": "planned"}, "after": {"status": "queued", "writes": len(writes),
                                                                      "items": len(items)}})
    enqueue_restore_step(run, "execute_restore")


def cancel(run: RestoreRun, user) -> None:
    if run.status != "planned":
        raise RestoreRefused(f"This restore is {run.status}; only a planned restore can be discarded.")
    run.status, run.finished_at = "cancelled", utcnow()
    record_audit("restore.cancel", actor=user, tenant=db.session.get(Tenant, run.tenant_id),
                 target_type="restore_run", target_id=run.id, target_name=f"Restore #{run.id}",
                 details={"before": {"status": "planned"}, "after": {"status": "cancelled"}})
