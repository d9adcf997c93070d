"""What TenantAtlas sends to Graph when it writes an object back (restore).

A backup keeps each object as Graph returned it, in one payload::

    {"object": {...},             # the object as Graph listed it (volatile keys may be gone)
     "settings": [...],           # Settings Catalog only: the /settings items
     "assignments": [...]}        # families with assignments: the /assignments items

``writable_body(family, payload, for_update=...)`` turns that into the body of a create
(POST) or an update (PATCH, or PUT for the Settings Catalog) for the same family; the
assignments go separately, through ``GraphClient.assign`` (``assignment_body`` shapes them).
The per-family rules (which keys Graph refuses, which keys only a create may carry, which
relations travel inside the body) are fields of ``app.graph.families.Family``; its module
docstring says where each comes from.

What a body keeps and drops:

- top level: the family's ``read_only_keys`` are dropped, and on an update its
  ``create_only_keys`` too; ``@odata.type`` is kept (a collection with subtypes needs it to
  know what to create); annotations (``@odata.context``, ``x@odata.navigationLink``, …) are
  dropped at every depth; on a create, the family's ``create_defaults`` fill what a stored
  object lacks (a compliance policy's block action).
- Settings Catalog ``settings`` (create and PUT): each item becomes
  ``{"@odata.type": "#microsoft.graph.deviceManagementConfigurationSetting",
  "settingInstance": ...}``; the item's ``id`` (Graph numbers them) and any expanded
  ``settingDefinitions`` are dropped; the instance is sent as stored, its
  ``settingInstanceTemplateReference`` / ``settingValueTemplateReference`` included: a
  policy made from a template (endpoint security) ties its settings to the template with
  them, and Microsoft's create example sends them
  (https://learn.microsoft.com/en-us/graph/api/intune-deviceconfigv2-devicemanagementconfigurationpolicy-create).
- assignments: ``{"target": ...}`` plus ``intent`` when set; the assignment's own ``id``,
  ``source`` and ``sourceId`` are Graph's (an assign replaces the whole set).

Secret values are not made writable here: Graph returns encrypted OMA-URI values and
Settings Catalog secrets as tokens, and a body carries them as they were stored.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .families import Family

CATALOG_SETTING_TYPE = "#microsoft.graph.deviceManagementConfigurationSetting"
# Keys of an assignment that Graph sets itself (the id names the policy and the target).
_ASSIGNMENT_SERVER_KEYS = frozenset({"id", "source", "sourceId"})
# Keys of a /settings item that are not the setting: Graph numbers the items; definitions
# come with $expand=settingDefinitions and are the catalog's, not the policy's.
_SETTING_ITEM_SERVER_KEYS = frozenset({"id", "settingDefinitions"})


class WritableError(ValueError):
    """A stored payload that cannot become a write body (not the shape backups have)."""


def writable_body(family: Family, payload: Mapping[str, Any], *, for_update: bool) -> dict[str, Any]:
    """The JSON body that creates (``for_update=False``) or updates an object of ``family``
    from a stored backup ``payload`` (see the module docstring). The payload is not changed."""
    if not family.restorable:
        raise WritableError(f"{family.label} is not restored")
    if not isinstance(payload, Mapping) or not isinstance(payload.get("object"), Mapping):
        raise WritableError('a backup payload is {"object": {...}, ...}')
    dropped = family.read_only_keys | (family.create_only_keys if for_update else frozenset())
    body: dict[str, Any] = {}
    for key, value in payload["object"].items():
        if not isinstance(key, str) or key in dropped or key in family.per_object or _is_annotation(key):
            continue
        body[key] = _without_annotations(value)
    for relation in family.inline_relations:
        items = payload.get(relation)
        if items is None:
            items = []
        if not isinstance(items, list) or not all(isinstance(item, Mapping) for item in items):
            raise WritableError(f"{relation} must be a list of objects")
        if relation == "settings":
            body[relation] = [_catalog_setting(item) for item in items]
        else:
            body[relation] = [_without_annotations(item) for item in items]
    if not for_update:
        for key, value in family.create_defaults.items():
            if body.get(key) in (None, [], {}):
                body[key] = _plain(value)
    return body


def assignment_body(assignments: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The body of an ``assign`` action: ``{"assignments": [{"target": ..., "intent": ...}]}``
    from assignments as Graph lists them (or as the restore engine mapped them)."""
    if not isinstance(assignments, list):
        raise WritableError("assignments must be a list")
    written = []
    for item in assignments:
        if not isinstance(item, Mapping) or not isinstance(item.get("target"), Mapping):
            raise WritableError("each assignment needs a target object")
        written.append({key: _without_annotations(value) for key, value in item.items()
                        if isinstance(key, str) and key not in _ASSIGNMENT_SERVER_KEYS
                        and (key == "@odata.type" or not _is_annotation(key))})
    return {"assignments": written}


def _catalog_setting(item: Mapping[str, Any]) -> dict[str, Any]:
    instance = item.get("settingInstance")
    if not isinstance(instance, Mapping):
        raise WritableError("a Settings Catalog setting needs its settingInstance")
    setting: dict[str, Any] = {"@odata.type": CATALOG_SETTING_TYPE}
    for key, value in item.items():
        if key in _SETTING_ITEM_SERVER_KEYS or key == "@odata.type" or _is_annotation(key):
            continue
        setting[key] = _without_annotations(value)
    return setting


def _is_annotation(key: str) -> bool:
    """An OData annotation ("@odata.context", "settings@odata.context", ...), not a property;
    "@odata.type" is the one annotation a body must keep."""
    return "@" in key and key != "@odata.type"


def _without_annotations(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _without_annotations(item) for key, item in value.items()
                if not (isinstance(key, str) and _is_annotation(key))}
    if isinstance(value, list):
        return [_without_annotations(item) for item in value]
    return copy.deepcopy(value)


def _plain(value: Any) -> Any:
    """Read-only table values (mapping proxies, tuples) as JSON-ready dicts and lists."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
