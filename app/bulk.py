"""Bulk actions on many tenants: one visible bulk run, one job per tenant.

    run = start_bulk_run(workspace, "sync", tenants, {}, user)   # in the request; the caller commits

A selection names tenants by their Entra tenant ids. `resolve_selection` accepts it only
when every id is well formed (else BadSelection: a 400) and every tenant is one of this
workspace's (else ForeignSelection: a 404, the same as any tenant page): a forged selection
queues nothing at all, not even for the tenants that were this workspace's.

Each tenant's outcome (succeeded, skipped with why, failed) is written by its job
(`carry_out_item`, inside the workspace), never in the request.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from app.extensions import db
from app.models import Tenant
from app.operations_models import Baseline, BaselineAssignment, BulkRun, BulkRunItem, Tag, TenantTag
from app.validation import parse_guid

log = logging.getLogger(__name__)

MAX_TENANTS = 10_000


class BadSelection(ValueError):
    """Malformed or oversized: the message says what to fix."""


class ForeignSelection(LookupError):
    """A tenant that is not this workspace's (or does not exist)."""


def resolve_selection(workspace_id: int, external_ids: list[str]) -> list[Tenant]:
    if not external_ids:
        raise BadSelection("Select at least one tenant (or choose “every tenant this filter matches”).")
    if len(external_ids) > MAX_TENANTS:
        raise BadSelection(f"A bulk action takes at most {MAX_TENANTS:,} tenants; this one has {len(external_ids):,}.")
    parsed = set()
    for value in external_ids:
        guid = parse_guid(value[:100])
        if guid is None:
            raise BadSelection(f"{value[:60]!r} is not a tenant id.")
        parsed.add(guid)
    tenants = list(db.session.scalars(select(Tenant).where(Tenant.workspace_id == workspace_id,
                                                           Tenant.external_id.in_(parsed))))
    if len(tenants) != len(parsed):
        raise ForeignSelection("a selected tenant is not in this workspace")
    return tenants


def describe(action: str, parameters: dict) -> str:
    if action == "sync":
        return "Sync now"
    if action == "backup":
        return "Back up now"
    if action in ("add_tag", "remove_tag"):
        tag = db.session.get(Tag, parameters["tag_id"])
        return f"{'Add' if action == 'add_tag' else 'Remove'} tag {tag.name if tag else '?'}"
    baseline = db.session.get(Baseline, parameters["baseline_id"])
    return f"Assign baseline {baseline.name if baseline else '?'}"


def start_bulk_run(workspace_id: int, action: str, tenants: list[Tenant], parameters: dict,
                   user_id: int | None) -> BulkRun:
    """The run, one item per tenant, and one job per item, in the caller's transaction."""
    from app.jobs import enqueue_bulk_item

    run = BulkRun(workspace_id=workspace_id, action=action, parameters=parameters,
                  label=describe(action, parameters), requested_by_user_id=user_id)
    db.session.add(run)
    db.session.flush()
    items = [BulkRunItem(bulk_run_id=run.id, tenant_id=tenant.id, workspace_id=workspace_id)
             for tenant in sorted(tenants, key=lambda t: t.id)]
    db.session.add_all(items)
    db.session.flush()
    for item in items:
        enqueue_bulk_item(item)
    return run


def carry_out_item(item_id: int) -> str:
    """One tenant's part of a bulk run (in the run's workspace); records its outcome and commits."""
    item = db.session.get(BulkRunItem, item_id)
    if item is None:
        db.session.rollback()
        return "missing"
    if item.status != "queued":
        return item.status  # a duplicate delivery of the job
    run = db.session.get(BulkRun, item.bulk_run_id)
    tenant = db.session.get(Tenant, item.tenant_id)
    try:
        status, message = ACTIONS[run.action](tenant, run)
    except Exception as error:  # the item says it failed; the traceback goes to the log
        db.session.rollback()
        log.exception("bulk run %s item %s failed", item.bulk_run_id, item_id)
        item = db.session.get(BulkRunItem, item_id)
        status, message = "failed", f"Internal error ({type(error).__name__})."
    item.status, item.message, item.finished_at = status, message[:500], datetime.now(timezone.utc)
    db.session.commit()
    return status


def _sync(tenant: Tenant, run: BulkRun) -> tuple[str, str]:
    from app.sync.runner import request_sync

    if tenant.status == "archived":
        return "skipped", "Archived: unarchive it to sync."
    if not tenant.is_connected:
        return "skipped", "Not connected: a manager connects it first."
    sync_run, created = request_sync(tenant, "user", run.requested_by_user_id)
    return "succeeded", (f"Sync run {sync_run.id} queued." if created
                         else f"A sync is already {sync_run.status} (run {sync_run.id}).")


def _backup(tenant: Tenant, run: BulkRun) -> tuple[str, str]:
    from app.backup.runner import request_backup
    from app.backup.schedules import backup_blocker

    if backup_blocker(tenant):
        return "skipped", ("Archived: unarchive it to back it up." if tenant.status == "archived"
                           else "Not connected: a manager connects it first.")
    backup_set, created = request_backup(tenant, "user", run.requested_by_user_id)
    return "succeeded", (f"Backup {backup_set.id} queued." if created
                         else f"A backup is already {backup_set.status} (set {backup_set.id}).")


def _add_tag(tenant: Tenant, run: BulkRun) -> tuple[str, str]:
    inserted = db.session.execute(insert(TenantTag).values(
        tenant_id=tenant.id, tag_id=run.parameters["tag_id"], workspace_id=tenant.workspace_id)
        .on_conflict_do_nothing(index_elements=["tenant_id", "tag_id"])).rowcount
    _reevaluate(tenant)
    return "succeeded", "Tagged." if inserted else "Had the tag already."


def _remove_tag(tenant: Tenant, run: BulkRun) -> tuple[str, str]:
    removed = db.session.execute(TenantTag.__table__.delete().where(
        TenantTag.tenant_id == tenant.id, TenantTag.tag_id == run.parameters["tag_id"])).rowcount
    _reevaluate(tenant)
    return "succeeded", "Tag removed." if removed else "Did not have the tag."


def _assign_baseline(tenant: Tenant, run: BulkRun) -> tuple[str, str]:
    inserted = db.session.execute(insert(BaselineAssignment).values(
        baseline_id=run.parameters["baseline_id"], tenant_id=tenant.id, workspace_id=tenant.workspace_id)
        .on_conflict_do_nothing(index_elements=["baseline_id", "tenant_id"],
                                index_where=BaselineAssignment.tenant_id.is_not(None))).rowcount
    changes = _reevaluate(tenant)
    found = len(changes.detected) + len(changes.reopened) if changes else 0
    return "succeeded", ("Assigned" if inserted else "Assigned already") + f"; {found} new finding(s)."


def _reevaluate(tenant: Tenant):
    """Tags and assignments decide which baselines apply: the tenant's findings follow at once."""
    from app.drift import evaluate_tenant

    return evaluate_tenant(tenant)


ACTIONS = {"sync": _sync, "backup": _backup, "add_tag": _add_tag, "remove_tag": _remove_tag, "assign_baseline": _assign_baseline}
