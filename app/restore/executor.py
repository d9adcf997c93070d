"""Carry out a planned restore, a chunk of items of one family at a time: the chunk's targets
read at once, then its objects written, then its assignments, then a re-read that verifies.

- Only the plan's create and update items are written; skips and conflicts are not, and
  nothing is deleted.
- Settings Catalog policies are written whole (PUT with their settings); other families
  are patched (app.graph.writable strips what Graph refuses).
- A chunk (CHUNK_SIZE items of one family, in plan order) costs one or two round trips of
  reads before its writes (`get_objects`: the stale-plan check, and the current assignments
  "keep" adds to: a PUT or PATCH of an object does not touch its assignments, so they are
  not read again) and one or two after them (the read-back). Those reads are made by a
  second client in a thread of its own (Reads) while the previous chunk is written, so a
  restore runs at the pace of its writes, which the client keeps under Intune's write limit.
- Each item is marked "writing" and committed before its write, and its result committed
  after (with the next item's "writing" mark, in one commit): a worker killed in between
  resumes the item instead of repeating it, and at most one item is ever "writing". A create
  is the one write that cannot be sent twice blindly, so every create first looks for the
  object by name: one with the content asked for (a resumed create, or one Graph did not
  confirm) is adopted; one with other content (someone took the name since the plan) stops
  that item.
- Graph refusing an item fails that item with Graph's message; the others go on.
- After the writes, each written object is read again and compared (normalized) with what
  was asked: `verified` says whether the target now holds it.
- Every item is audited with the person who executed the restore.
- An unexpected error (a bug, the database) ends the run failed or partial with a clear
  message: the item being written is failed (the target may hold its write), the items not
  reached are not_run. A worker killed outright (no exception) leaves the run running, and
  the retried job resumes it as above.
"""
from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import select

from app.audit import record_audit
from app.extensions import db
from app.graph.errors import AmbiguousWriteError, ConsentError, ForeignLinkError, GraphError
from app.graph.families import FAMILIES_BY_KEY, Family
from app.graph.normalize import NormalizeError
from app.graph.writable import WritableError, writable_body
from app.models import BackupPayload, RestoreItem, RestoreRun, Tenant, User

from .planner import (RestoreContext, chunks, comparable, final_assignments, kept_after_commit, named_exactly,
                      object_name, same_assignments, scope_tags_for, target_fingerprint)

log = logging.getLogger(__name__)

WRITES = ("create", "update")
DONE = ("created", "updated", "skipped", "failed", "not_run")


def execute_restore(run_id: int, context: RestoreContext) -> RestoreRun | None:
    """Execute run `run_id` (in the caller's workspace context); resumes a run a killed worker left."""
    with kept_after_commit():
        return _execute_restore(run_id, context)


def _execute_restore(run_id: int, context: RestoreContext) -> RestoreRun | None:
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
    client = reads = None
    try:
        client = context.client_factory(str(target.external_id), context.token_provider)
        reads = Reads(context.client_factory(str(target.external_id), context.token_provider))
        pending = None  # the last chunk's read-back, checked once the next chunk is written
        chunk_list = list(chunks(items))
        upcoming = _prepare(chunk_list[0], reads, context) if chunk_list else None
        for index in range(len(chunk_list)):
            prepared = upcoming
            if index and _archived(target.id):  # archiving stops a restore between chunks
                raise TargetArchived()
            current = prepared.targets.result() if prepared.targets is not None else {}
            # The next chunk's targets are read while this one is written (its items are others').
            upcoming = _prepare(chunk_list[index + 1], reads, context) if index + 1 < len(chunk_list) else None
            _write_chunk(client, run, prepared, current, bodies, same_tenant, target, actor, context)
            to_verify = [item for item in prepared.chunk if item.status in ("created", "updated")
                         and item.verified is None]
            read_back = reads.submit(prepared.family, [item.target_graph_id for item in to_verify]) \
                if to_verify else None
            if pending is not None:
                _verify_chunk(*pending, bodies, same_tenant)
            pending = (to_verify, read_back) if to_verify else None
        if pending is not None:
            _verify_chunk(*pending, bodies, same_tenant)
        failed = sum(1 for item in items if item.status == "failed" or item.verified is False)
        written = sum(1 for item in items if item.status in ("created", "updated"))
        status = "succeeded" if not failed else ("partial" if written else "failed")
        return _finish(run, status, None if not failed else f"{failed} item(s) failed or could not be verified.",
                       context, items)
    except (ConsentError, ForeignLinkError) as error:
        db.session.rollback()
        written = sum(1 for item in items if item.status in ("created", "updated"))
        return _finish(run, "partial" if written else "failed", f"The restore stopped: {error.message}", context,
                       items)
    except TargetArchived:
        db.session.rollback()
        written = sum(1 for item in items if item.status in ("created", "updated"))
        return _finish(run, "partial" if written else "failed",
                       "The target tenant was archived during the restore; nothing more was written.", context, items)
    except Exception as error:  # a bug or the database: the run must not stay "running" with an item "writing"
        log.exception("restore run %s stopped on an unexpected error", run_id)
        db.session.rollback()
        for item in items:
            if item.status == "writing":
                item.status, item.finished_at = "failed", context.now()
                item.error = ("An internal error stopped the restore while this item was being written: the "
                              "target may hold the write. Plan the restore again to see where it stands.")
        written = sum(1 for item in items if item.status in ("created", "updated"))
        return _finish(run, "partial" if written else "failed",
                       f"The restore stopped on an internal error ({type(error).__name__}); the worker log has "
                       "the details. Items not reached were not written.", context, items)
    finally:
        if reads is not None:
            reads.close()
        if client is not None:
            client.close()


class TargetArchived(Exception):
    """The target tenant was archived while its restore ran."""


def _archived(tenant_id: int) -> bool:
    # Read from the database, not the loaded Tenant: objects are not expired between commits here.
    return db.session.scalar(select(Tenant.status).where(Tenant.id == tenant_id)) == "archived"


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


def read_targets(client, family: Family, ids: list[str]) -> dict[str, dict | None | GraphError]:
    """The objects with these ids, read together (`get_objects`); when that fails, one by one, so
    that Graph refusing one object fails that item alone: id -> payload, None (404) or the error."""
    ids = list(dict.fromkeys(ids))
    if not ids:
        return {}
    try:
        return dict(client.get_objects(family, ids))
    except (ConsentError, ForeignLinkError):
        raise
    except GraphError:
        pass
    found: dict[str, dict | None | GraphError] = {}
    for object_id in ids:
        try:
            found[object_id] = client.get_object(family, object_id)
        except (ConsentError, ForeignLinkError):
            raise
        except GraphError as error:
            found[object_id] = error
    return found


class Reads:
    """Graph reads done by a client of their own in a thread of their own while the restore
    writes: the next chunk's targets and the last chunk's read-back, so that their round trips
    are not added to the writes'. Only Graph is touched in that thread, never the session."""

    def __init__(self, client):
        self._client = client
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="restore-reads")

    def submit(self, family: Family, ids: list[str]) -> Future:
        return self._pool.submit(read_targets, self._client, family, list(ids))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()


@dataclass
class Prepared:
    family: Family
    chunk: list[RestoreItem]
    to_write: list[RestoreItem]  # objects to write (or, resumed, to finish writing)
    to_assign: list[RestoreItem]  # items whose assignments are still to be written
    targets: Future | None  # read_targets of every target the chunk knows the id of


def _prepare(chunk: list[RestoreItem], reads: Reads, context) -> Prepared:
    family = FAMILIES_BY_KEY[chunk[0].family]
    for item in chunk:
        if item.status in ("planned", "writing") and item.action not in WRITES:
            item.status, item.finished_at = "skipped", context.now()
    to_write = [item for item in chunk if item.status in ("planned", "writing")]
    to_assign = [item for item in chunk if "assigned" not in item.plan and item.action in WRITES
                 and item.status in ("planned", "writing", "created", "updated")]
    # Updates (the stale-plan check, their current assignments) and objects a resumed run
    # already created (their current assignments).
    known = [item.target_graph_id for item in to_assign if item.target_graph_id
             and (item.action == "update" or item.status == "created")]
    return Prepared(family, chunk, to_write, to_assign, reads.submit(family, known) if known else None)


def _write_chunk(client, run: RestoreRun, prepared: Prepared, current: dict, bodies: dict, same_tenant: bool,
                 target: Tenant, actor, context) -> None:
    # What each written object's assignments are now, for "keep": read before the write (a write
    # of the object leaves them as they are), or found when a create is adopted, or none (created).
    assignments_now: dict[int, list | None] = {}
    for item in prepared.to_write:
        _write_object(client, run, item, bodies[item.payload_id], same_tenant, target, actor, context,
                      current, assignments_now)
    db.session.commit()
    for item in prepared.to_assign:
        if item.status in ("created", "updated"):
            _write_assignments(client, run, item, assignments_now, current)
    db.session.commit()


def _verify_chunk(items: list[RestoreItem], read_back: Future, bodies: dict, same_tenant: bool) -> None:
    try:
        found = read_back.result()
    except (ConsentError, ForeignLinkError) as error:
        # The writes are done; a sign-in outage now only leaves them unverified, never "failed".
        for item in items:
            item.verified = False
            item.error = f"Written, but it could not be read back: {error.message}"[:1000]
        db.session.commit()
        return
    for item in items:
        _verify(item, bodies[item.payload_id], same_tenant, found.get(item.target_graph_id))
    db.session.commit()


def _write_object(client, run: RestoreRun, item: RestoreItem, body: dict, same_tenant: bool, target: Tenant, actor,
                  context, current_by_id: dict, assignments_now: dict) -> None:
    """Write one item. Its "writing" mark is committed (with the previous item's result) just
    before the write goes; its result is committed with the next item's mark or at the chunk's end."""
    family = FAMILIES_BY_KEY[item.family]
    try:
        if item.action == "create":
            # Looked for first, every time: a create this run already made (resumed, or one Graph did
            # not confirm) is adopted, and an object that took the name since the plan stops it.
            item.status = "writing"
            db.session.commit()  # from here, a killed worker resumes this item instead of repeating it
            body = scope_tags_for(body, same_tenant)
            state, found, found_current = _named_in_target(client, family, body)
            if state == "different":
                raise StalePlan(f"An object named {item.display_name!r} appeared in the target after the plan; "
                                "nothing was written. Plan the restore again.")
            if state == "same":
                item.target_graph_id = found
                assignments_now[item.id] = (found_current or {}).get("assignments") or []
            else:
                try:
                    created = client.create_object(family, writable_body(family, body, for_update=False))
                    item.target_graph_id = created["id"]
                    assignments_now[item.id] = []  # a new object has none
                except AmbiguousWriteError:
                    state, found, found_current = _named_in_target(client, family, body)
                    if state != "same":
                        raise StalePlan("Microsoft Graph did not confirm the create and nothing with its name and "
                                        "content is in the target; it was not sent again. Plan the restore again.")
                    item.target_graph_id = found
                    assignments_now[item.id] = (found_current or {}).get("assignments") or []
            item.status = "created"
        else:
            current = current_by_id.get(item.target_graph_id)
            if isinstance(current, GraphError):
                raise current
            if current is None:
                raise StalePlan("The object was deleted from the target after the plan; nothing was written. "
                                "Plan the restore again.")
            # A write this run started (then the worker died) may have changed it: that is no stale plan.
            resumed_write = bool(item.plan.get("write_started"))
            if target_fingerprint(family, current) != item.plan.get("target_fingerprint") and not resumed_write:
                raise StalePlan("The object changed in the target after the plan; nothing was written, so that "
                                "change is not overwritten unseen. Plan the restore again.")
            assignments_now[item.id] = current.get("assignments") or []
            if item.plan.get("diff"):  # an assignments-only change leaves the object as it is
                write = writable_body(family, scope_tags_for(body, same_tenant, current), for_update=True)
                item.status, item.plan = "writing", {**item.plan, "write_started": True}
                db.session.commit()  # from here, a killed worker resumes this item instead of repeating it
                client.update_object(family, item.target_graph_id, write)
            item.status = "updated"
        item.error = None
    except (ConsentError, ForeignLinkError):
        raise
    except StalePlan as error:
        item.status, item.error = "failed", str(error)[:1000]
    except (GraphError, WritableError) as error:
        item.status = "failed"
        item.error = refusal_text(error)[:1000]
    except NormalizeError as error:
        item.status = "failed"
        item.error = f"The target object cannot be read, so nothing was written: {error}"[:1000]
    item.finished_at = context.now()
    record_audit(f"restore.item.{item.status}", actor=actor, tenant=target, target_type=family.key,
                 target_id=item.target_graph_id or item.source_graph_id, target_name=item.display_name,
                 details={"restore_run": run.id, "action": item.action, "error": item.error})


def refusal_text(error: Exception) -> str:
    """What an item's failed write says: Graph's own refusal once (the client already says
    "Refused by Microsoft Graph (400 …)"), else what went wrong, said to be Graph's refusal."""
    message = str(getattr(error, "message", None) or error)
    if message.startswith("Refused by Microsoft Graph"):
        return message
    if isinstance(error, WritableError):
        return f"The stored copy cannot be written: {message}"
    return f"Refused by Microsoft Graph: {message}"


class StalePlan(Exception):
    """The target changed since the plan in a way that makes the planned write unsafe."""


def _named_in_target(client, family: Family, body: dict) -> tuple[str, str | None, dict | None]:
    """Whether the target holds an object with this body's name: ("same", its id, the object) when
    one holds the content asked for (a create that did happen), ("different", None, None) when the
    name is taken by other content, ("none", None, None) when the name is free."""
    name = object_name(family, body)
    wanted = comparable(family, body)
    named = named_exactly(family, client.find_by_name(family, name), name)
    for candidate in named:
        current = client.get_object(family, candidate["id"])
        try:
            if current is not None and comparable(family, current) == wanted:
                return "same", candidate["id"], current
        except NormalizeError:
            continue
    return ("different", None, None) if named else ("none", None, None)


def _write_assignments(client, run: RestoreRun, item: RestoreItem, assignments_now: dict, current_by_id: dict) -> None:
    """The item's assignments as the run's mode says, from the target's assignments as they are now
    (so "keep" never drops one the target gained after the plan); written only when they change."""
    family = FAMILIES_BY_KEY[item.family]
    desired = item.plan.get("desired_assignments")
    if not family.assign_action:
        item.plan = {**item.plan, "assigned": None}
        return
    if item.id in assignments_now:
        current_assignments = assignments_now[item.id]
    else:  # written by an earlier attempt: read with the chunk
        current = current_by_id.get(item.target_graph_id)
        if isinstance(current, GraphError):
            item.status = "failed"
            item.error = f"The object was written, its assignments could not be read: {current.message}"[:1000]
            return
        current_assignments = None if current is None else (current.get("assignments") or [])
    try:
        final = final_assignments(run.assignment_mode, desired, current_assignments) \
            if current_assignments is not None else None
        if final is not None and not same_assignments(final, current_assignments):
            client.assign(family, item.target_graph_id, final)
            item.plan = {**item.plan, "assigned": final}
            db.session.commit()  # written once: a resumed run does not send it again
        else:
            item.plan = {**item.plan, "assigned": None}
    except (ConsentError, ForeignLinkError):
        raise
    except GraphError as error:
        item.status = "failed"
        item.error = f"The object was written, its assignments were refused by Microsoft Graph: {error.message}"[:1000]


def _verify(item: RestoreItem, body: dict, same_tenant: bool, current) -> None:
    """Compare the object read back with what was asked (settings, and assignments when written)."""
    family = FAMILIES_BY_KEY[item.family]
    if isinstance(current, GraphError):
        item.verified, item.error = False, f"Written, but it could not be read back: {current.message}"[:1000]
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
