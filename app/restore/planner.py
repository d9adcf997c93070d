"""Plan a restore: for each selected item, what would be written, before anything is.

For each item the target tenant is read (through the Graph client; in the same tenant the items
of one family ten at a time, with `get_objects`, each chunk committed at once) and the item gets
one action:

- create: nothing in the target is this object (by id in the same tenant, else by name);
- update: the target object differs; the plan keeps the setting-level diff (normalized,
  app.diffing) and the assignment change;
- skip: identical settings, and the assignments would end up as they are;
- conflict: the name is taken by an object of another type, or by several objects, or the stored
  payload lacks what its family's writes need (`incomplete_payload`): never guessed, never written.

Assignments name groups (and assignment filters) of the source tenant. In the target they
are matched by id (the same tenant), then by exact display name; a group with no match,
or with several, is reported and its assignment is left out: a restore never assigns a
policy to a group it guessed. Scope tags stay as they are in the same tenant; across
tenants only the Default tag is kept.

Nothing outside the selection is read for writing, and nothing is ever deleted.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy import select

from app.backup.payloads import normalized_payload
from app.diffing import snapshot_diff
from app.extensions import db
from app.graph.errors import ConsentError, ForeignLinkError, GraphError
from app.graph.families import FAMILIES_BY_KEY, Family
from app.graph.normalize import NormalizeError, display_name_of, normalize_assignments
from app.models import BackupItem, BackupPayload, EntraGroup, InventoryItem, RestoreItem, RestoreRun, Tenant
from app.sync.engine import utcnow

log = logging.getLogger(__name__)

FILTER_ID_KEY = "deviceAndAppManagementAssignmentFilterId"
FILTER_TYPE_KEY = "deviceAndAppManagementAssignmentFilterType"
DEFAULT_SCOPE_TAG = "0"


@dataclass
class RestoreContext:
    """What planning and executing need from outside: Graph, and a clock (injectable for tests)."""

    token_provider: Any
    client_factory: Callable[..., Any]  # (tenant_id: str, token_provider) -> GraphClient
    now: Callable[[], Any] = utcnow


@dataclass
class AssignmentMapping:
    """The source tenant's groups and filters, matched in the target."""

    groups: dict[str, str] = field(default_factory=dict)  # source id -> target id
    filters: dict[str, str] = field(default_factory=dict)
    unmatched: dict[str, dict] = field(default_factory=dict)  # source id -> {"kind", "name", "reason"}


def without_assignments(normalized: dict) -> dict:
    return {key: value for key, value in normalized.items() if key != "assignments"}


def comparable(family: Family, body: dict) -> dict:
    """A payload's normalized settings (assignments apart), for "identical?" and the diff."""
    return without_assignments(normalized_payload(family, body))


# --- mapping groups and filters ---------------------------------------------------------------------


def source_names(source_tenant_id: int, kind: str, ids: set[str]) -> dict[str, str]:
    """Names of the source tenant's groups or filters: what the sync read, else what a backup kept."""
    if not ids:
        return {}
    names: dict[str, str] = {}
    if kind == "group":
        names.update(db.session.execute(select(EntraGroup.graph_id, EntraGroup.display_name).where(
            EntraGroup.tenant_id == source_tenant_id, EntraGroup.graph_id.in_(ids))).all())
    else:
        names.update(db.session.execute(select(InventoryItem.graph_id, InventoryItem.display_name).where(
            InventoryItem.tenant_id == source_tenant_id, InventoryItem.object_type == "assignmentFilters",
            InventoryItem.graph_id.in_(ids))).all())
    family = "groups" if kind == "group" else "assignmentFilters"
    missing = ids - set(names)
    if missing:
        names.update({graph_id: name for graph_id, name in db.session.execute(
            select(BackupItem.graph_id, BackupItem.display_name).where(
                BackupItem.tenant_id == source_tenant_id, BackupItem.family == family,
                BackupItem.graph_id.in_(missing)).order_by(BackupItem.id)).all()})
    return names


def referenced_ids(bodies: list[dict]) -> tuple[set[str], set[str]]:
    groups, filters = set(), set()
    for body in bodies:
        for assignment in body.get("assignments") or []:
            target = assignment.get("target") if isinstance(assignment, dict) else None
            if not isinstance(target, dict):
                continue
            if isinstance(target.get("groupId"), str):
                groups.add(target["groupId"])
            if isinstance(target.get(FILTER_ID_KEY), str) and target[FILTER_ID_KEY].strip("0-"):
                filters.add(target[FILTER_ID_KEY])
    return groups, filters


def map_references(client, source: Tenant, target: Tenant, bodies: list[dict]) -> AssignmentMapping:
    """Match the groups and filters the bodies' assignments name: by id in the same tenant, then by exact name."""
    group_ids, filter_ids = referenced_ids(bodies)
    mapping = AssignmentMapping()
    same_tenant = source.id == target.id
    if same_tenant and group_ids:
        found = client.groups_by_ids(sorted(group_ids))
        mapping.groups.update({group_id: group_id for group_id in found})
    group_names = source_names(source.id, "group", group_ids - set(mapping.groups))
    by_name = client.groups_by_names(sorted(set(group_names.values()))) if group_names else {}
    for group_id in sorted(group_ids - set(mapping.groups)):
        name = group_names.get(group_id)
        _match(mapping.groups, mapping.unmatched, group_id, "group", name,
               [g for g in by_name.get(name, []) if g.get("displayName") == name] if name else [])
    filters = FAMILIES_BY_KEY["assignmentFilters"]
    if same_tenant:
        mapping.filters.update({filter_id: filter_id for filter_id in filter_ids})
    else:
        names = source_names(source.id, "filter", filter_ids)
        for filter_id in sorted(filter_ids):
            name = names.get(filter_id)
            candidates = [f for f in client.find_by_name(filters, name) if f.get("displayName") == name] if name else []
            _match(mapping.filters, mapping.unmatched, filter_id, "filter", name, candidates)
    return mapping


def _match(mapped: dict, unmatched: dict, source_id: str, kind: str, name: str | None, candidates: list[dict]) -> None:
    if name is None:
        unmatched[source_id] = {"kind": kind, "name": None,
                                "reason": f"the source {kind}'s name is not known (never synced or backed up)"}
    elif len(candidates) == 1 and isinstance(candidates[0].get("id"), str):
        mapped[source_id] = candidates[0]["id"]
    elif not candidates:
        unmatched[source_id] = {"kind": kind, "name": name, "reason": f"no {kind} of that name in the target"}
    else:
        unmatched[source_id] = {"kind": kind, "name": name,
                                "reason": f"{len(candidates)} {kind}s of that name in the target"}


EXCLUSION_TARGET = "#microsoft.graph.exclusionGroupAssignmentTarget"


def mapped_assignments(body: dict, mapping: AssignmentMapping) -> tuple[list[dict] | None, list[str]]:
    """The body's assignments with target-tenant ids, and the source ids left out for want of a match.

    An include naming an unmatched group is left out (the policy reaches fewer devices). An
    exclusion cannot be: dropping it would widen who gets the policy, so then none of the
    item's assignments are written (None), and the plan says why.
    """
    written, left_out, widening = [], [], False
    for assignment in body.get("assignments") or []:
        target = dict(assignment.get("target") or {}) if isinstance(assignment, dict) else {}
        group_id = target.get("groupId")
        if isinstance(group_id, str):
            if group_id not in mapping.groups:
                left_out.append(group_id)
                widening = widening or target.get("@odata.type") == EXCLUSION_TARGET
                continue
            target["groupId"] = mapping.groups[group_id]
        filter_id = target.get(FILTER_ID_KEY)
        if isinstance(filter_id, str) and filter_id.strip("0-"):
            if filter_id not in mapping.filters:
                left_out.append(filter_id)
                continue
            target[FILTER_ID_KEY] = mapping.filters[filter_id]
        item = {key: value for key, value in assignment.items() if key in ("intent", "settings", "@odata.type")}
        written.append({**item, "target": target})
    return (None if widening else written), left_out


def final_assignments(mode: str, desired: list[dict] | None, current: list[dict]) -> list[dict] | None:
    """What the target's assignments become: None when they are left alone (mode "skip", or held back)."""
    if mode == "skip" or desired is None:
        return None
    if mode == "replace":
        return desired
    keyed = {}
    for assignment in [*current, *desired]:  # keep: the target's own, plus the backup's
        [normalized] = normalize_assignments([assignment]) or [None]
        keyed[repr(sorted((normalized or {}).items()))] = assignment
    return list(keyed.values())


def same_assignments(left: list[dict] | None, right: list[dict] | None) -> bool:
    return normalize_assignments(left or []) == normalize_assignments(right or [])


def scope_tags_for(body: dict, same_tenant: bool, current: dict | None = None) -> dict:
    """Across tenants, scope tag ids mean nothing: an update keeps the target object's own tags
    (who may administer it there), a create gets Default."""
    if same_tenant:
        return body
    obj = dict(body.get("object") or {})
    if isinstance(obj.get("roleScopeTagIds"), list):
        own = ((current or {}).get("object") or {}).get("roleScopeTagIds")
        obj["roleScopeTagIds"] = list(own) if isinstance(own, list) and own else [DEFAULT_SCOPE_TAG]
    return {**body, "object": obj}


def object_name(family: Family, body: dict) -> str:
    """The name as Graph holds it, for an exact $filter (display_name_of tidies names for showing)."""
    raw = (body.get("object") or {}).get(family.name_key)
    return raw if isinstance(raw, str) and raw else display_name_of(family, body.get("object") or {})


def named_exactly(family: Family, candidates: list[dict], name: str) -> list[dict]:
    return [obj for obj in candidates if obj.get(family.name_key) == name and isinstance(obj.get("id"), str)]


def target_fingerprint(family: Family, current: dict) -> str:
    """What the plan saw of the target object, so execute can tell when it changed since."""
    from app.backup.payloads import payload_hash

    return payload_hash({"settings": comparable(family, current),
                         "assignments": normalize_assignments(current.get("assignments") or [])})


# --- the plan -----------------------------------------------------------------------------------------


def find_target(client, family: Family, item: RestoreItem, body: dict, same_tenant: bool,
                known: dict[str, dict | None] | None = None) -> tuple[str, Any]:
    """("found", payload) | ("none", None) | ("conflict", reason).

    In the same tenant the object is its id: a missing id means it was deleted, and another
    object that has its name now is never overwritten in its place (a conflict). Across
    tenants an object is matched by its exact name, once, and of the same type. ``known``:
    objects already read by id (``get_objects``, None for a 404); others are read here.
    """
    name = object_name(family, body)
    if same_tenant:
        if known is not None and item.source_graph_id in known:
            current = known[item.source_graph_id]
        else:
            current = client.get_object(family, item.source_graph_id)
        if current is not None:
            return "found", current
        others = named_exactly(family, client.find_by_name(family, name), name)
        if others:
            return "conflict", (f"The original was deleted and {len(others)} other object(s) now named {name!r} "
                                "are in the tenant: none of them is overwritten. Rename one and plan again.")
        return "none", None
    candidates = named_exactly(family, client.find_by_name(family, name), name)
    if not candidates:
        return "none", None
    if len(candidates) > 1:
        return "conflict", f"{len(candidates)} objects named {name!r} in the target: which one is meant cannot be told"
    wanted_type = (body.get("object") or {}).get("@odata.type")
    if wanted_type and candidates[0].get("@odata.type") and candidates[0]["@odata.type"] != wanted_type:
        return "conflict", (f"{name!r} in the target is a {str(candidates[0]['@odata.type']).rsplit('.', 1)[-1]}, "
                            f"not a {str(wanted_type).rsplit('.', 1)[-1]}")
    current = client.get_object(family, candidates[0]["id"])
    return ("found", current) if current is not None else ("none", None)


def incomplete_payload(family: Family, body: dict) -> str | None:
    """Why a stored payload cannot be written back, or None. Derived from the families table, as
    the write body is (app.graph.writable): the object and its name (`name_key`, what a create
    needs and a match is by); its @odata.type where the collection has subtypes (Graph cannot tell
    what to create, and an update without it replaces the type); each relation written inside the
    body (`inline_relations`: a Settings Catalog policy is its settings; a PUT without them would
    empty the policy)."""
    obj = body.get("object") if isinstance(body, dict) else None
    if not isinstance(obj, dict):
        return "The stored copy holds no object: it is not a backup of a Graph object, and is not written."
    missing: list[str] = []
    name = obj.get(family.name_key)
    if not isinstance(name, str) or not name.strip():
        missing.append(f"its name ({family.name_key})")
    if family.has_subtypes and not (isinstance(obj.get("@odata.type"), str) and obj["@odata.type"].strip()):
        missing.append("its type (@odata.type)")
    for relation in family.inline_relations:
        items = body.get(relation)
        if not isinstance(items, list) or not items:
            missing.append(f"its {relation}")
    if not missing:
        return None
    return (f"The stored copy is incomplete for a {family.label} item: it lacks {', '.join(missing)}. Writing it "
            "would remove what it lacks from the tenant, so it is not written; restore from another backup.")


# What a restore of these families does not carry over, said in the plan of each item.
FAMILY_NOTES = {
    "compliancePolicies": "Created with the block action Graph requires (after 0 hours); other scheduled "
                          "actions (notifications, grace periods) are not restored: check them after the restore.",
    "iosAppProtection": "The policy's targeted apps are not restored: check them after the restore.",
    "androidAppProtection": "The policy's targeted apps are not restored: check them after the restore.",
}


def plan_item(client, run: RestoreRun, item: RestoreItem, body: dict, mapping: AssignmentMapping,
              same_tenant: bool, known: dict[str, dict | None] | None = None) -> None:
    family = FAMILIES_BY_KEY[item.family]
    incomplete = incomplete_payload(family, body)
    if incomplete is not None:
        item.action, item.plan = "conflict", {"reason": incomplete, "unmatched": [], "name": item.display_name,
                                              "assignments_mode": run.assignment_mode}
        return
    desired, left_out = mapped_assignments(body, mapping) if family.assign_action else ([], [])
    unmatched = [{"id": source_id, **mapping.unmatched[source_id]} for source_id in dict.fromkeys(left_out)
                 if source_id in mapping.unmatched]
    state, found = find_target(client, family, item, body, same_tenant, known)
    plan: dict[str, Any] = {"unmatched": unmatched, "assignments_mode": run.assignment_mode,
                            "desired_assignments": desired, "name": object_name(family, body)}
    if desired is None and run.assignment_mode != "skip":
        plan["held_back"] = ("Assignments are not restored: an excluded group has no match in the target, and "
                             "leaving the exclusion out would give the policy to devices it excluded.")
    if state == "conflict":
        item.action, plan["reason"] = "conflict", found
    elif state == "none":
        item.action = "create"
        body = scope_tags_for(body, same_tenant)
        plan["reason"] = "Not in the target: it will be created."
        plan["assignments"] = final_assignments(run.assignment_mode, desired, [])
        plan["diff"] = [row.__dict__ for row in snapshot_diff({}, comparable(family, body)) if row.status != "same"]
    else:
        item.target_graph_id = found["object"].get("id")
        body = scope_tags_for(body, same_tenant, found)
        current_settings, desired_settings = comparable(family, found), comparable(family, body)
        rows = [row.__dict__ for row in snapshot_diff(current_settings, desired_settings) if row.status != "same"]
        assignments = final_assignments(run.assignment_mode, desired, found.get("assignments") or [])
        assignments_change = assignments is not None and not same_assignments(assignments, found.get("assignments"))
        plan["diff"] = rows
        plan["assignments"] = assignments if assignments_change else None
        plan["target_fingerprint"] = target_fingerprint(family, found)
        if not rows and not assignments_change:
            item.action, plan["reason"] = "skip", "Identical in the target: nothing to write."
        else:
            item.action = "update"
            plan["reason"] = (f"{len(rows)} setting(s) differ" if rows else "Settings identical") + (
                "; assignments change." if assignments_change else ".")
    if family.key in FAMILY_NOTES and item.action in ("create", "update"):
        plan["note"] = FAMILY_NOTES[family.key]  # only where something is written
    item.plan = plan


def claim_targets(items: list[RestoreItem]) -> None:
    """Two selected items never land on one target object (or one new name): every such item is a conflict."""
    claims: dict[tuple, list[RestoreItem]] = {}
    for item in items:
        if item.action in ("update", "skip") and item.target_graph_id:
            claims.setdefault(("id", item.family, item.target_graph_id), []).append(item)
        elif item.action == "create":
            claims.setdefault(("name", item.family, item.plan.get("name")), []).append(item)
    for (kind, _family, _key), claimants in claims.items():
        if len(claimants) > 1:
            for item in claimants:
                item.action = "conflict"
                item.plan = {**{key: value for key, value in item.plan.items() if key != "note"}, "reason": (
                    f"{len(claimants)} selected items would {'write the same object' if kind == 'id' else 'create objects with the same name'}"
                    " in the target: choose one of them and plan again.")}


@contextmanager
def kept_after_commit():
    """Objects stay loaded after a commit. For a restore step only: while a run is planned or
    executed, its row and its items are written by that job alone, and re-reading every item
    after each commit cost a SELECT an item a commit (2 of 8.7 s of a 125-item execution).
    A rollback still expires everything."""
    session = db.session()
    before = session.expire_on_commit
    session.expire_on_commit = False
    try:
        yield
    finally:
        session.expire_on_commit = before


CHUNK_SIZE = 10  # items of one family read together (10 to 30 inner requests: one or two $batch)


def chunks(items: list[RestoreItem], size: int = CHUNK_SIZE):
    """Runs of at most `size` consecutive items of one family, in plan order."""
    chunk: list[RestoreItem] = []
    for item in items:
        if chunk and (len(chunk) >= size or chunk[0].family != item.family):
            yield chunk
            chunk = []
        chunk.append(item)
    if chunk:
        yield chunk


def plan_restore(run_id: int, context: RestoreContext) -> RestoreRun | None:
    """Plan run `run_id` (in the caller's workspace context): every item gets its action. Writes nothing to Graph."""
    with kept_after_commit():
        return _plan_restore(run_id, context)


def _plan_restore(run_id: int, context: RestoreContext) -> RestoreRun | None:
    run = db.session.get(RestoreRun, run_id)
    if run is None or run.status != "planning":
        return run
    target = db.session.get(Tenant, run.tenant_id)
    source = db.session.get(Tenant, run.source_tenant_id)
    run.attempts += 1
    db.session.commit()
    items = list(db.session.scalars(select(RestoreItem).where(RestoreItem.restore_run_id == run.id,
                                                              RestoreItem.tenant_id == run.tenant_id)
                                    .order_by(RestoreItem.position)))
    bodies = dict(db.session.execute(select(BackupPayload.id, BackupPayload.body).where(
        BackupPayload.tenant_id == run.source_tenant_id,
        BackupPayload.id.in_({item.payload_id for item in items}))).all())
    client = None
    try:
        client = context.client_factory(str(target.external_id), context.token_provider)
        mapping = map_references(client, source, target, [bodies[item.payload_id] for item in items
                                                          if FAMILIES_BY_KEY[item.family].assign_action])
        same_tenant = source.id == target.id
        for chunk in chunks(items):
            # In the same tenant each item's target is its own id: the chunk's are read together.
            known = read_chunk(client, chunk) if same_tenant else None
            for item in chunk:
                try:
                    plan_item(client, run, item, bodies[item.payload_id], mapping, same_tenant, known)
                except NormalizeError as error:
                    item.action, item.plan = "conflict", {"reason": f"The stored object cannot be read: {error}"}
            db.session.commit()
        claim_targets(items)
        run.status, run.planned_at = "planned", context.now()
        run.summary = plan_summary(items, mapping)
        run.error = None
    except (ConsentError, ForeignLinkError, GraphError) as error:
        db.session.rollback()
        run.status, run.finished_at = "failed", context.now()
        run.error = f"The target tenant could not be read to plan the restore: {error.message}"[:1000]
    finally:
        if client is not None:
            client.close()
    db.session.commit()
    return run


def read_chunk(client, chunk: list[RestoreItem]) -> dict | None:
    """The chunk's objects read together; None when that read fails (a malformed or refused
    part), so each item is read on its own and Graph refusing one object plans that one alone."""
    try:
        return client.get_objects(FAMILIES_BY_KEY[chunk[0].family], [item.source_graph_id for item in chunk])
    except (ConsentError, ForeignLinkError):
        raise
    except GraphError:
        return None


def plan_summary(items: list[RestoreItem], mapping: AssignmentMapping) -> dict:
    actions: dict[str, int] = {}
    for item in items:
        actions[item.action or "unplanned"] = actions.get(item.action or "unplanned", 0) + 1
    return {"actions": actions,
            "unmatched": [{"id": source_id, **detail} for source_id, detail in sorted(mapping.unmatched.items())]}
