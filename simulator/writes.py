"""Graph's write endpoints over the store: create (POST), update (PATCH merges, PUT replaces)
and the assign action, for the families FAMILIES marks restorable.

What is refused is what app/graph/families.py says Graph refuses (its docstring cites where
each rule comes from), so the client's bodies are checked against the same table:

- a body that is not a JSON object; a family's read_only_keys (400, as Graph refuses an
  ``id``); on an update, its create_only_keys; on a PATCH, the relations a family writes
  inline (the Settings Catalog's settings change with a PUT only);
- a create or PUT without a non-empty name (family.name_key); a create without
  ``@odata.type`` where the collection holds several types; a change of ``@odata.type``;
- a compliance policy created without exactly one block scheduled action (Graph's own
  message); the actions are not kept, as Graph does not return them;
- an assign whose assignments are not ``{"target": {"@odata.type", ...}}`` objects, or whose
  group (or filter) ids are not GUIDs.

Instance annotations in a body ("@odata.context", ...) are ignored, as OData services do.
What the server sets on a create (timestamps, version, counters) comes from the family's
read_only_keys: a key Graph refuses in a body is one Graph fills in itself.

All functions expect the simulator's lock to be held.
"""
from __future__ import annotations

import copy
import datetime as dt
import json
import re
import time
from typing import Any

from app.graph.families import Family

from . import shapes
from .common import GraphError, Refusal, WriteRecord
from .store import StoredObject, TenantState, is_app_protection, iso

MAX_WRITE_LOG = 100_000  # per tenant; the oldest entries go first
MAX_NAME_LENGTH = 1000
_GUID = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_ODATA_TYPE = re.compile(r"#?microsoft\.graph\.[A-Za-z][A-Za-z0-9]{0,200}")
_GROUP_TARGETS = {"groupAssignmentTarget", "exclusionGroupAssignmentTarget"}
# Server-managed properties a create sets, for the families whose read_only_keys name them.
_SERVER_DEFAULTS: dict[str, Any] = {
    "isAssigned": False, "deployedAppCount": 0, "settingCount": 0, "creationSource": None,
    "priorityMetaData": None, "supportsScopeTags": True, "payloads": [], "isBuiltIn": False,
}


def bad_request(message: str) -> GraphError:
    return GraphError(400, "BadRequest", message)


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise bad_request("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def _is_annotation(key: str) -> bool:
    return "@" in key and key != "@odata.type"


def _short_type(value: Any) -> str:
    return str(value).lstrip("#").removeprefix("microsoft.graph.")


def _check_name(family: Family, body: dict[str, Any], required: bool) -> None:
    if family.name_key not in body:
        if required:
            raise bad_request(f"The property '{family.name_key}' is required.")
        return
    name = body[family.name_key]
    if not isinstance(name, str) or not name.strip():
        raise bad_request(f"The property '{family.name_key}' must be a non-empty string.")
    if len(name) > MAX_NAME_LENGTH:
        raise bad_request(f"The property '{family.name_key}' is longer than {MAX_NAME_LENGTH} characters.")


def _check_type(family: Family, body: dict[str, Any], current: StoredObject | None) -> None:
    given = body.get("@odata.type")
    if given is None:
        if current is None and family.has_subtypes:
            raise bad_request(f"@odata.type is required to create an object in {family.entity_path} "
                              "(the collection holds several types).")
        return
    if not isinstance(given, str) or not _ODATA_TYPE.fullmatch(given):
        raise bad_request(f"'{str(given)[:200]}' is not a type of microsoft.graph.")
    if current is not None and _short_type(given) != _short_type(current.data.get("@odata.type", given)):
        raise bad_request("The type of an object cannot be changed.")


def _check_keys(family: Family, body: dict[str, Any], operation: str) -> None:
    for key in body:
        if key in family.read_only_keys:
            raise bad_request(f"The property '{key}' is read-only and cannot be set.")
        if operation != "create" and key in family.create_only_keys:
            raise bad_request(f"The property '{key}' cannot be changed after the object is created.")
        if operation == "update" and key in family.inline_relations:
            raise bad_request(f"'{key}' cannot be changed with PATCH: write the whole object with PUT.")


def _settings(body: dict[str, Any], relation: str) -> list[dict[str, Any]]:
    """A written settings list as /settings returns it: {"id": "0", "settingInstance": ...}."""
    items = body.get(relation, [])
    if not isinstance(items, list):
        raise bad_request(f"'{relation}' must be a collection.")
    stored = []
    for number, item in enumerate(items):
        instance = item.get("settingInstance") if isinstance(item, dict) else None
        if (not isinstance(instance, dict) or not isinstance(instance.get("settingDefinitionId"), str)
                or not instance["settingDefinitionId"] or not isinstance(instance.get("@odata.type"), str)):
            raise bad_request(f"{relation}[{number}] needs a settingInstance with @odata.type and settingDefinitionId.")
        stored.append({"id": str(number), "settingInstance": copy.deepcopy(instance)})
    return stored


def _check_block_action(body: dict[str, Any]) -> None:
    """Graph's rule for creating a compliance policy (see app/graph/families.py)."""
    rules = body.get("scheduledActionsForRule")
    blocks = 0
    if isinstance(rules, list):
        for rule in rules:
            actions = rule.get("scheduledActionConfigurations") if isinstance(rule, dict) else None
            for action in actions if isinstance(actions, list) else []:
                if isinstance(action, dict) and action.get("actionType") == "block":
                    blocks += 1
    if blocks != 1:
        raise bad_request("Compliance policy must have one and only one block scheduled action")


def _properties(family: Family, body: dict[str, Any]) -> dict[str, Any]:
    """The body's properties as stored: no annotations, no inline relations, no create-only
    navigation (Graph does not return what create_defaults fill in)."""
    return {key: copy.deepcopy(value) for key, value in body.items()
            if not _is_annotation(key) and key not in family.inline_relations and key not in family.create_defaults}


def name_of(family: Family, data: dict[str, Any]) -> str | None:
    name = data.get(family.name_key)
    return name if isinstance(name, str) else None


def check_refusal(tenant: TenantState, family: Family, object_id: str | None, names: set[str]) -> None:
    for refusal in tenant.refusals:
        if refusal.matches(family.key, object_id, names):
            if refusal.remaining is not None:
                refusal.remaining -= 1
            raise GraphError(refusal.status, refusal.code, refusal.message)


def record(tenant: TenantState, method: str, family: Family, item: StoredObject, operation: str, status: int) -> None:
    tenant.writes.append(WriteRecord(method=method, family=family.key, object_id=item.id, operation=operation,
                                     status=status, time=time.time(), name=name_of(family, item.data)))
    if len(tenant.writes) > MAX_WRITE_LOG:
        del tenant.writes[: len(tenant.writes) - MAX_WRITE_LOG]


# --- the three writes ------------------------------------------------------------------------


def check_create(family: Family, body: dict[str, Any]) -> set[str]:
    """Validates a create body; the names it would give (for refusals)."""
    _check_keys(family, body, "create")
    _check_name(family, body, required=True)
    _check_type(family, body, None)
    for relation in family.inline_relations:
        _settings(body, relation)
    if "scheduledActionsForRule" in family.create_defaults:
        _check_block_action(body)
    return {body[family.name_key]}


def create(family: Family, tenant: TenantState, body: dict[str, Any], now: dt.datetime) -> StoredObject:
    data = _properties(family, body)
    server: dict[str, Any] = {}
    for key in sorted(family.read_only_keys):
        if key in ("createdDateTime", "lastModifiedDateTime"):
            server[key] = iso(now)
        elif key == "version":
            server[key] = shapes.etag("created", now.isoformat(), time.perf_counter_ns()) if is_app_protection(family) else 1
        elif key in _SERVER_DEFAULTS:
            server[key] = copy.deepcopy(_SERVER_DEFAULTS[key])
    relations = {relation: _settings(body, relation) for relation in family.inline_relations}
    item = tenant.create(family.key, {**data, **server, **relations})
    if "settingCount" in item.data:
        item.data["settingCount"] = len(item.relations.get("settings", []))
    return item


def check_update(family: Family, body: dict[str, Any], current: StoredObject, *, replace: bool) -> set[str]:
    _check_keys(family, body, "replace" if replace else "update")
    _check_name(family, body, required=replace)
    _check_type(family, body, current)
    if replace:
        for relation in family.inline_relations:
            _settings(body, relation)
    names = {name for name in (name_of(family, current.data), name_of(family, body)) if name}
    return names


def update(family: Family, tenant: TenantState, current: StoredObject, body: dict[str, Any], now: dt.datetime,
           *, replace: bool) -> StoredObject:
    """PATCH: the given properties replace theirs; PUT: the body replaces the object (what
    Graph sets itself is kept) and its inline relations."""
    properties = _properties(family, body)
    if replace:
        kept = {key: value for key, value in current.data.items()
                if key in family.read_only_keys or key in family.create_only_keys or key == "@odata.type"}
        data = {**properties, **kept}
        relations = {relation: _settings(body, relation) for relation in family.inline_relations}
    else:
        data = {**current.data, **properties}
        relations = None
    item = tenant.rewrite(family.key, current.id, data, relations)
    shapes.touch(family, item, now)
    return item


def check_assign(body: dict[str, Any]) -> list[dict[str, Any]]:
    assignments = body.get("assignments")
    if not isinstance(assignments, list):
        raise bad_request("The parameter 'assignments' is required and must be a collection.")
    for number, assignment in enumerate(assignments):
        target = assignment.get("target") if isinstance(assignment, dict) else None
        if not isinstance(target, dict) or not isinstance(target.get("@odata.type"), str):
            raise bad_request(f"assignments[{number}] needs a target with an @odata.type.")
        if not _ODATA_TYPE.fullmatch(target["@odata.type"]):
            raise bad_request(f"'{target['@odata.type'][:200]}' is not a type of microsoft.graph.")
        kind = _short_type(target["@odata.type"])
        group_id = target.get("groupId")
        if kind in _GROUP_TARGETS and not (isinstance(group_id, str) and _GUID.fullmatch(group_id)):
            raise bad_request(f"assignments[{number}]: '{str(group_id)[:80]}' is not a valid group id (a GUID).")
        filter_id = target.get("deviceAndAppManagementAssignmentFilterId")
        filter_type = target.get("deviceAndAppManagementAssignmentFilterType") or "none"
        if filter_type != "none" and not (isinstance(filter_id, str) and _GUID.fullmatch(filter_id)):
            raise bad_request(f"assignments[{number}]: '{str(filter_id)[:80]}' is not a valid filter id (a GUID).")
    return assignments


def assign(family: Family, tenant: TenantState, current: StoredObject, assignments: list[dict[str, Any]]) -> StoredObject:
    """Replaces the object's assignments, stored as /assignments lists them."""
    stored = []
    for assignment in assignments:
        target = copy.deepcopy(assignment["target"])
        target.setdefault("deviceAndAppManagementAssignmentFilterId", None)
        target.setdefault("deviceAndAppManagementAssignmentFilterType", "none")
        kind = _short_type(target["@odata.type"])
        suffix = target.get("groupId") or {"allDevicesAssignmentTarget": shapes.ALL_DEVICES_ID,
                                           "allLicensedUsersAssignmentTarget": shapes.ALL_USERS_ID}.get(kind, kind)
        entry: dict[str, Any] = {"id": f"{current.id}_{suffix}", "source": "direct", "sourceId": current.id,
                                 "target": target}
        if assignment.get("intent") is not None:
            entry["intent"] = assignment["intent"]
        stored.append(entry)
    data = dict(current.data)
    if "isAssigned" in data:
        data["isAssigned"] = bool(stored)
    return tenant.rewrite(family.key, current.id, data, {"assignments": stored})


def refusal(family: Family, *, object_id: str | None, name: str | None, status: int, code: str, message: str | None,
            count: int | None) -> Refusal:
    if object_id is None and name is None:
        raise ValueError("refuse writes to an object_id or a name")
    if not isinstance(status, int) or not 400 <= status <= 599:
        raise ValueError("a refusal's status is a 4xx or 5xx")
    if count is not None and (not isinstance(count, int) or count < 1):
        raise ValueError("count must be at least 1 (or None: until cleared)")
    if not isinstance(code, str) or not code:
        raise ValueError("code is Graph's error code, e.g. BadRequest")
    text = message or f"The {family.label} object cannot be written (refused by the Graph simulator)."
    return Refusal(family=family.key, object_id=object_id, name=name, status=status, code=code, message=text,
                   remaining=count)
