"""Carry out a planned restore: objects first, then assignments, then a re-read that verifies.

- Only the plan's create and update items are written; skips and conflicts are not, and
  nothing is deleted.
- Settings Catalog policies are written whole (PUT with their settings); other families
  are patched (app.graph.writable strips what Graph refuses).
- Each item is marked "writing" and committed before its write, and its result committed
  after: a worker killed in between resumes the item instead of repeating it. A create is
  the one write that cannot be sent twice blindly, so every create first looks for the object
  by name: one with the content asked for (a resumed create, or one Graph did not confirm) is
  adopted; one with other content (someone took the name since the plan) stops that item.
- Graph refusing an item fails that item with Graph's message; the others go on.
- After the writes, each written object is read again and compared (normalized) with what
  was asked: `verified` says whether the target now holds it.
- Every item is audited with the person who executed the restore.
"""
from __future__ import annotations

import logging

from sqlalchemy import select

from app.audit import record_audit
from app.extensions import db
from app.graph.errors import AmbiguousWriteError, ConsentError, ForeignLinkError, GraphError
from app.graph.families import FAMILIES_BY_KEY, Family
from app.graph.normalize import NormalizeError
from app.graph.writable import WritableError, writable_body
from app.models import BackupPayload, RestoreItem, RestoreRun, Tenant, User

from .planner import (RestoreContext, comparable, final_assignments, named_exactly, object_name, same_assignments,
                      scope_tags_for, target_fingerprint)

log = logging.getLogger(__name__)

WRITES = ("create", "update")
DONE = ("created", "updated", "skipped", "failed", "not_run")


def execute_restore(run_id: int, context: RestoreContext) -> RestoreRun | None:
    """Execute run `run_id` (in the caller's workspace context); resumes a run a killed worker left."""
    run = db.session.get(RestoreRun, run_id)
    if run is None or run.status not in ("queued", "running"):
        return run
    target = db.session.get(Tenant, run.tenant_id)
    actor = db.session.get(User, run.executed_by_user_id) if run.executed_by_user_id else None
    if target.status == "archived":
        return _finish(run, "failed", "The target tenant was archived; nothing was written.", context)
    run.status, run.attempts = "running", run.attempts + 1
    run.started_at = run.started_at or context.now()
    db.session.commit()
    items = list(db.session.scalars(select(RestoreItem).where(RestoreItem.restore_run_id == run.id,
                                                              RestoreItem.tenant_id == run.tenant_id)
                                    .order_by(RestoreItem.position)))
    bodies = dict(db.session.execute(select(BackupPayload.id, BackupPayload.body).where(
        BackupPayload.tenant_id == run.source_tenant_id,
        BackupPayload.id.in_({item.payload_id for item in items}))).all())
    same_tenant = run.source_tenant_id == run.tenant_id
    client = None
    try:
        client = context.client_factory(str(target.external_id), context.token_provider)
        for item in items:  # objects first
            if item.status in ("planned", "writing"):
                _write_object(client, run, item, bodies[item.payload_id], same_tenant, target, actor, context)
        for item in items:  # then assignments, on what was written
            if item.status in ("created", "updated") and "assigned" not in item.plan:
                _write_assignments(client, run, item)
        for item in items:
            if item.status in ("created", "updated") and item.verified is None:
                _verify(client, item, bodies[item.payload_id], same_tenant)
        failed = sum(1 for item in items if item.status == "failed" or item.verified is False)
        written = sum(1 for item in items if item.status in ("created", "updated"))
        status = "succeeded" if not failed else ("partial" if written else "failed")
        return _finish(run, status, None if not failed else f"{failed} item(s) failed or could not be verified.",
                       context, items)
    except (ConsentError, ForeignLinkError) as error:
        db.session.rollback()
        return _finish(run, "failed", f"The restore stopped: {error.message}", context, items)
    finally:
        if client is not None:
            client.close()


def _finish(run: RestoreRun, status: str, error: str | None, context: RestoreContext,
            items: list[RestoreItem] | None = None) -> RestoreRun:
    for item in items or []:
        if item.status in ("planned", "writing") and item.action in WRITES:
            item.status, item.error = "not_run", item.error or "The restore stopped before this item."
    run.status, run.finished_at, run.error = status, context.now(), error[:1000] if error else None
    if items is not None:
        counts: dict[str, int] = {}
        for item in items:
            counts[item.status] = counts.get(item.status, 0) + 1
        run.summary = {**run.summary, "results": counts,
                       "verified": sum(1 for item in items if item.verified),
                       "unverified": sum(1 for item in items if item.verified is False)}
    db.session.commit()
    return run


def _write_object(client, run: RestoreRun, item: RestoreItem, body: dict, same_tenant: bool, target: Tenant, actor,
                  context) -> None:
    family = FAMILIES_BY_KEY[item.family]
    if item.action not in WRITES:
        item.status = "skipped"
        item.finished_at = context.now()
        db.session.commit()
        return
    item.status = "writing"
    db.session.commit()  # from here, a killed worker resumes this item instead of repeating it
    try:
        if item.action == "create":
            # Looked for first, every time: a create this run already made (resumed, or one Graph did
            # not confirm) is adopted, and an object that took the name since the plan stops it.
            body = scope_tags_for(body, same_tenant)
            state, found = _named_in_target(client, family, body)
            if state == "different":
                raise StalePlan(f"An object named {item.display_name!r} appeared in the target after the plan; "
                                "nothing was written. Plan the restore again.")
            if state == "same":
                item.target_graph_id = found
            else:
                try:
                    created = client.create_object(family, writable_body(family, body, for_update=False))
                    item.target_graph_id = created["id"]
                except AmbiguousWriteError:
                    state, found = _named_in_target(client, family, body)
                    if state != "same":
                        raise StalePlan("Microsoft Graph did not confirm the create and nothing with its name and "
                                        "content is in the target; it was not sent again. Plan the restore again.")
                    item.target_graph_id = found
            item.status = "created"
        else:
            current = client.get_object(family, item.target_graph_id)
            if current is None:
                raise StalePlan("The object was deleted from the target after the plan; nothing was written. "
                                "Plan the restore again.")
            # A write this run started (then the worker died) may have changed it: that is no stale plan.
            resumed_write = bool(item.plan.get("write_started"))
            if target_fingerprint(family, current) != item.plan.get("target_fingerprint") and not resumed_write:
                raise StalePlan("The object changed in the target after the plan; nothing was written, so that "
                                "change is not overwritten unseen. Plan the restore again.")
            if item.plan.get("diff"):  # an assignments-only change leaves the object as it is
                item.plan = {**item.plan, "write_started": True}
                db.session.commit()
                client.update_object(family, item.target_graph_id,
                                     writable_body(family, scope_tags_for(body, same_tenant, current), for_update=True))
            item.status = "updated"
        item.error = None
    except (ConsentError, ForeignLinkError):
        raise
    except StalePlan as error:
        item.status, item.error = "failed", str(error)[:1000]
    except (GraphError, WritableError) as error:
        item.status = "failed"
        item.error = f"Refused by Microsoft Graph: {getattr(error, 'message', str(error))}"[:1000]
    item.finished_at = context.now()
    record_audit(f"restore.item.{item.status}", actor=actor, tenant=target, target_type=family.key,
                 target_id=item.target_graph_id or item.source_graph_id, target_name=item.display_name,
                 details={"restore_run": run.id, "action": item.action, "error": item.error})
    db.session.commit()


class StalePlan(Exception):
    """The target changed since the plan in a way that makes the planned write unsafe."""


def _named_in_target(client, family: Family, body: dict) -> tuple[str, str | None]:
    """Whether the target holds an object with this body's name: ("same", its id) when one holds
    the content asked for (a create that did happen), ("different", None) when the name is taken
    by other content, ("none", None) when the name is free."""
    name = object_name(family, body)
    wanted = comparable(family, body)
    named = named_exactly(family, client.find_by_name(family, name), name)
    for candidate in named:
        current = client.get_object(family, candidate["id"])
        try:
            if current is not None and comparable(family, current) == wanted:
                return "same", candidate["id"]
        except NormalizeError:
            continue
    return ("different", None) if named else ("none", None)


def _write_assignments(client, run: RestoreRun, item: RestoreItem) -> None:
    """The item's assignments as the run's mode says, from the target's assignments as they are now
    (so "keep" never drops one the target gained after the plan); written only when they change."""
    family = FAMILIES_BY_KEY[item.family]
    desired = item.plan.get("desired_assignments")
    try:
        current = client.get_object(family, item.target_graph_id) if family.assign_action else None
        final = final_assignments(run.assignment_mode, desired, (current or {}).get("assignments") or []) \
            if family.assign_action and current is not None else None
        if final is not None and not same_assignments(final, (current or {}).get("assignments")):
            client.assign(family, item.target_graph_id, final)
            item.plan = {**item.plan, "assigned": final}
        else:
            item.plan = {**item.plan, "assigned": None}
    except (ConsentError, ForeignLinkError):
        raise
    except GraphError as error:
        item.status = "failed"
        item.error = f"The object was written, its assignments were refused by Microsoft Graph: {error.message}"[:1000]
    db.session.commit()


def _verify(client, item: RestoreItem, body: dict, same_tenant: bool) -> None:
    """Read the object back: the target holds what was asked (settings, and assignments when written)."""
    family = FAMILIES_BY_KEY[item.family]
    try:
        current = client.get_object(family, item.target_graph_id)
    except GraphError as error:
        item.verified, item.error = False, f"Written, but it could not be read back: {error.message}"[:1000]
        db.session.commit()
        return
    problems = []
    if current is None:
        problems.append("the object is not in the target")
    else:
        try:
            if comparable(family, current) != comparable(family, scope_tags_for(body, same_tenant, current)):
                problems.append("its settings differ from the backup's")
        except NormalizeError as error:
            problems.append(f"it cannot be read: {error}")
        wanted = item.plan.get("assigned")
        if wanted is not None and not same_assignments(current.get("assignments"), wanted):
            problems.append("its assignments differ from those asked for")
    item.verified = not problems
    if problems:
        item.error = ("Verification: " + "; ".join(problems) + ".")[:1000]
    db.session.commit()
