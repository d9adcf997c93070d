"""Canonical content of a Graph object, before anything is stored or compared.

A policy gets a new version only when the content hash of its normalized form changes, so
everything here exists to make two reads of the same configuration produce the same JSON
(noise never makes a version) and any change an administrator can make produce a
different JSON (real changes always do).

    normalized = normalize_object(family, raw, related)
    content_hash(normalized)     # sha256 hex of the canonical JSON
    display_name_of(family, raw) # the name to show, never empty

`family` is an `app.graph.families.Family`; `raw` the object as Graph lists it; `related`
the per-object relations that were fetched, by relation name: `{"settings": [...],
"assignments": [...]}` (a missing key means "not fetched"). Relations may also arrive
inline in `raw` (`$expand=settings,assignments`); `related` wins when both are given.

Normalized shape (a JSON-serialisable dict; keys whose value would be empty are omitted
unless said otherwise)::

    {
      "odataType": "#microsoft.graph.windows10GeneralConfiguration",  # raw @odata.type, "#" added
      "displayName": "...",            # raw[family.name_key] ("name" for the Settings Catalog)
      "description": "...",
      "platform": "windows10",         # always present, None when unknown (see PLATFORM below)
      "templateFamily": "endpointSecurityAntivirus",   # Settings Catalog templateReference
      "scopeTagIds": ["0", "12"],      # roleScopeTagIds / roleScopeTags; ["0"] (Default) is kept
      "properties": {"technologies": "mdm", "templateReference.templateId": "..."},
                                       # Settings Catalog only: policy properties that are not
                                       # settings (flat keys, like settings)
      "settings": {"<flat key>": value, ...},   # always present, possibly {}, except for a
                                       # Settings Catalog policy whose settings were not fetched
      "assignments": [{"target": "group", "groupId": "...", "filterId": "...",
                       "filterType": "include"}, ...],
                                       # present (possibly []) exactly when assignments were fetched
    }

SETTINGS, for every family but the Settings Catalog: every property left after the keys
above and the volatile ones are taken out. Nested objects are flattened with dots
("bitLockerSystemDrivePolicy.encryptionMethod"); lists stay values. Entra groups, role
definitions, assignment filters and scope tags are normalized the same way, so inventory
changes are detectable too.

SETTINGS, Settings Catalog: the `/settings` tree flattened to `settingDefinitionId -> value`.
The instance's @odata.type decides how its value is read (falling back on whichever value
property is present); it, `settingInstanceTemplateReference`, `settingValueTemplateReference`
and the setting's `id` are then dropped.
  - choice: the chosen value (a string); the choice's children are flattened under their own
    settingDefinitionIds, next to it.
  - simple: the value as Graph types it (integer stays integer, string stays string).
    Secret values (deviceManagementConfigurationSecretSettingValue) become SECRET_PLACEHOLDER:
    Graph returns an encrypted token that is not stable and must not be stored anyway.
    A reference value with a note becomes {"value": ..., "note": ...}.
  - choice / simple collections: a sorted set of values (an item with children becomes an
    object {"value": ..., <child id>: ...}).
  - group: children flattened under their own settingDefinitionIds.
  - group collection with ONE instance (the common case: macOS payloads, ASR rules, most
    endpoint security templates wrap everything in one): children flattened under their own
    settingDefinitionIds, exactly like a group, so each child is its own diff row.
  - group collection with SEVERAL instances (firewall rules, ...): the group's own
    settingDefinitionId -> a list of instances, each instance an object of its flattened
    children; the list is sorted by canonical JSON, so it is index-free and order-independent
    (reordering instances is not a change; changing, adding or removing one is).
  - an unknown instance type: its remaining properties, normalized generically, under its
    settingDefinitionId (so a future value type still counts as content).
  A settingDefinitionId that would get two values raises NormalizeError.

VALUES, everywhere:
  - `null`, `""`, a missing key, `{}` and `[]` are all equal: they are dropped. An object
    whose only remaining key is "@odata.type" is empty too (a complex property left unset).
  - Keys are sorted (the canonical JSON sorts them; normalized dicts are built sorted).
  - Lists of scalars are sets: duplicates removed, sorted (by canonical JSON; scope tag ids
    numerically). Lists of objects are multisets: each item normalized, then sorted by its
    canonical JSON. Order is kept only below ORDERED_LIST_KEYS (iOS home screen layout,
    where the order is what the user sees). Include/exclude lists are sets.
  - Volatile keys (VOLATILE_KEYS, plus FAMILY_VOLATILE_KEYS for a family) are dropped at every
    depth; they are exact key names, so a real setting that merely contains the word
    ("featureUpdatesPauseExpiryDateTime", "osMinimumVersion") is kept. A nested "id" is kept
    when it is the whole object (`{"id": "..."}`, a reference by id such as
    inheritsPermissionsFrom): there the id is the content.
  - Annotations (any key with "@" other than "@odata.type": "@odata.context",
    "x@odata.navigationLink", "members@delta", "@removed", ...) are dropped.
  - "@odata.type" values are written with a leading "#" (Graph is inconsistent about it).
  - An object with `"isEncrypted": true` (encrypted OMA-URI settings) has its "value"
    replaced by SECRET_PLACEHOLDER, for the same reason as secret catalog values.
  - Strings are kept as they are (no trimming, no case folding) except that the empty string
    is "missing"; numbers and booleans are kept as typed (1, 1.0, true and "1" all differ).

ASSIGNMENTS: each becomes {"target": <short type>, "groupId", "filterId", "filterType"} where
the short type is the target's @odata.type without "#microsoft.graph." and
"AssignmentTarget" ("group", "exclusionGroup", "allDevices", "allLicensedUsers",
"configurationManagerCollection", ...). A filter type of "none" drops the filter id (a stale
id with no effect). Other target properties (collectionId, ...) are kept by name; "intent"
is kept unless it is the default "apply"; "source"/"sourceId" are kept unless the source is
"direct". Groups and filters are kept by id (lower-cased, as Graph writes GUIDs); the UI
resolves names. The list is sorted by target type, then group id, then canonical JSON.

PLATFORM: family.platform when the family fixes it (app protection); else the Settings
Catalog `platforms` or the object's `platform` property (assignment filters), taken out of
the settings; else derived from the @odata.type prefix (PLATFORM_PREFIXES); None when unknown.

HOSTILE INPUT: anything that is not JSON-shaped as Graph sends it (a non-dict object, a
non-list relation, non-string keys, NaN, lone surrogates or NUL in strings, values of the
wrong type where a type is known) raises NormalizeError with a short message, never another
exception. Nesting deeper than MAX_DEPTH containers or more than MAX_NODES keys and items in
one object raise NormalizeError too.
"""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from .families import Family


class NormalizeError(ValueError):
    """The object cannot be normalized: the message says why, briefly."""


MAX_DEPTH = 64  # nested containers (dicts and lists) in one object, its relations included
MAX_NODES = 250_000  # dict keys plus list items in one object, its relations included
MAX_NAME_LENGTH = 400
UNNAMED = "(unnamed)"
SECRET_PLACEHOLDER = "(secret)"

# Metadata, not content: dropped at every depth. Exact key names only.
VOLATILE_KEYS = frozenset({
    "id",  # the object's own id (and nested entity ids, e.g. scheduledActionConfigurations)
    "createdDateTime",
    "lastModifiedDateTime",
    "modifiedDateTime",
    "version",  # an int counter (device configurations) or a quoted etag (app protection)
    "@odata.context",
    "@odata.etag",
    "@odata.nextLink",
    "@odata.deltaLink",
    "@odata.id",
    "@odata.editLink",
    "@odata.count",
    "settingCount",  # derived from the settings
    "supportsScopeTags",
    "isAssigned",  # derived from the assignments
    "deployedAppCount",
    "creationSource",
    "priorityMetaData",
    "settingDefinitions",  # $expand of the catalog's definitions, not the policy's values
    "secretReferenceValueId",  # a pointer into Intune's secret store, renewed on re-encryption
})

# Per family: properties that change without anyone changing the object.
FAMILY_VOLATILE_KEYS: dict[str, frozenset[str]] = {
    "groups": frozenset({
        "deletedDateTime",
        "renewedDateTime",  # moves on every renewal
        "expirationDateTime",  # computed from renewedDateTime and the expiration policy
        "onPremisesLastSyncDateTime",  # moves on every directory sync
        "membershipRuleProcessingStatus",  # dynamic-membership processing progress (beta)
    }),
    "assignmentFilters": frozenset({
        "payloads",  # which policies use the filter: changes with their assignments, not the filter
    }),
}

# Lists whose order is meaningful: kept in order, and so is every list below them.
ORDERED_LIST_KEYS = frozenset({"homeScreenDockIcons", "homeScreenPages"})

# @odata.type short-name prefix -> platform, most specific first.
PLATFORM_PREFIXES: tuple[tuple[str, str], ...] = (
    ("windows10Mobile", "windows10Mobile"),
    ("windows10", "windows10"),
    ("windowsPhone81", "windowsPhone81"),
    ("windows81", "windows81"),
    ("windows", "windows10"),  # windowsUpdateForBusiness…, windowsKiosk…, windowsHealthMonitoring…
    ("editionUpgrade", "windows10"),
    ("sharedPC", "windows10"),
    ("macOS", "macOS"),
    ("ios", "iOS"),
    ("androidWorkProfile", "androidWorkProfile"),
    ("androidDeviceOwner", "androidDeviceOwner"),
    ("androidForWork", "androidForWork"),
    ("aosp", "aosp"),
    ("android", "android"),
)
_NO_PLATFORM = frozenset({"none", "unknown", "unknownFutureValue"})

# Settings Catalog: properties of the policy that are placed elsewhere or are descriptive only.
# (templateId already names the template and its version; "@odata.type" of the reference is fixed.)
_CATALOG_TEMPLATE_DESCRIPTIVE = frozenset({"templateDisplayName", "templateDisplayVersion"})
_CATALOG_KINDS = {
    "deviceManagementConfigurationChoiceSettingInstance": "choiceSettingValue",
    "deviceManagementConfigurationChoiceSettingCollectionInstance": "choiceSettingCollectionValue",
    "deviceManagementConfigurationSimpleSettingInstance": "simpleSettingValue",
    "deviceManagementConfigurationSimpleSettingCollectionInstance": "simpleSettingCollectionValue",
    "deviceManagementConfigurationGroupSettingInstance": "groupSettingValue",
    "deviceManagementConfigurationGroupSettingCollectionInstance": "groupSettingCollectionValue",
}
_CATALOG_INSTANCE_META = frozenset({"@odata.type", "settingDefinitionId", "settingInstanceTemplateReference"})

_ASSIGNMENT_TARGET_NAMES = {
    "groupAssignmentTarget": "group",
    "exclusionGroupAssignmentTarget": "exclusionGroup",
    "allDevicesAssignmentTarget": "allDevices",
    "allLicensedUsersAssignmentTarget": "allLicensedUsers",
}
_FILTER_ID = "deviceAndAppManagementAssignmentFilterId"
_FILTER_TYPE = "deviceAndAppManagementAssignmentFilterType"
_ZERO_GUID = "00000000-0000-0000-0000-000000000000"

_EMPTY = object()  # "no value": dropped by whoever receives it


# --------------------------------------------------------------------------- public API


def normalize_object(family: Family, raw: dict, related: dict[str, object] | None = None) -> dict:
    """The canonical content of `raw` (see the module docstring for the shape and rules)."""
    if not isinstance(family, Family):
        raise NormalizeError("family must be an app.graph.families.Family")
    if not isinstance(raw, dict):
        raise NormalizeError(f"object must be a JSON object, not {_type_name(raw)}")
    if related is None:
        related = {}
    if not isinstance(related, dict):
        raise NormalizeError(f"related must be a JSON object, not {_type_name(related)}")
    for relation in related:
        if relation not in family.per_object:
            raise NormalizeError(f"relation {str(relation)[:40]!r} is not fetched for {family.key}")

    ctx = _Context(family)
    ctx.count(len(raw))
    catalog = "settings" in family.per_object
    remaining = {key: value for key, value in raw.items() if _keep_key(key, ctx, nested=False)}
    out: dict[str, Any] = {}

    odata_type = remaining.pop("@odata.type", None)
    if odata_type is not None:
        out["odataType"] = _odata_type(odata_type)

    _put_text(out, "displayName", remaining.pop(family.name_key, None), family.name_key)
    _put_text(out, "description", remaining.pop("description", None), "description")

    out["platform"] = _platform(family, remaining, out.get("odataType"), catalog)

    tags = _scope_tags(remaining.pop("roleScopeTagIds", None), remaining.pop("roleScopeTags", None))
    if tags:
        out["scopeTagIds"] = tags

    inline_settings = remaining.pop("settings", _EMPTY) if catalog else _EMPTY
    inline_assignments = remaining.pop("assignments", _EMPTY)

    if catalog:
        template = remaining.get("templateReference")
        if isinstance(template, dict):
            template = dict(template)
            family_name = template.pop("templateFamily", None)
            if family_name is not None and not isinstance(family_name, str):
                raise NormalizeError("templateReference.templateFamily must be a string")
            if family_name and family_name != "none":
                out["templateFamily"] = _check_string(family_name)
            for key in _CATALOG_TEMPLATE_DESCRIPTIVE | {"@odata.type"}:
                template.pop(key, None)
            remaining["templateReference"] = template
        properties = _flat_properties(remaining, ctx)
        if properties:
            out["properties"] = properties
        tree = related["settings"] if "settings" in related else inline_settings
        if tree is not _EMPTY and tree is not None:
            out["settings"] = _catalog_settings(tree, ctx)
    else:
        out["settings"] = _flat_properties(remaining, ctx)

    assignments = related["assignments"] if "assignments" in related else inline_assignments
    if assignments is not _EMPTY and assignments is not None:
        out["assignments"] = _assignments(assignments, ctx)

    return {key: out[key] for key in sorted(out)}


def content_hash(normalized: Any) -> str:
    """sha256 hex of the canonical JSON: sorted keys, compact separators, UTF-8, no ASCII escaping."""
    try:
        text = _canonical(normalized)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
    except (TypeError, ValueError, RecursionError) as error:  # UnicodeEncodeError is a ValueError
        raise NormalizeError(f"not canonical JSON: {str(error)[:80]}") from None


def display_name_of(family: Family, raw: dict) -> str:
    """family.name_key, else displayName, else name: control characters and runs of whitespace
    made single spaces, stripped, at most MAX_NAME_LENGTH characters; UNNAMED if none is usable."""
    if not isinstance(family, Family):
        raise NormalizeError("family must be an app.graph.families.Family")
    if not isinstance(raw, dict):
        raise NormalizeError(f"object must be a JSON object, not {_type_name(raw)}")
    for key in dict.fromkeys((family.name_key, "displayName", "name")):
        value = raw.get(key)
        if not isinstance(value, str):
            continue
        text = " ".join("".join(" " if ord(char) < 32 or 127 <= ord(char) < 160 else char
                                for char in value[: MAX_NAME_LENGTH * 4]).split())
        text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates become "?"
        if text:
            return text if len(text) <= MAX_NAME_LENGTH else text[: MAX_NAME_LENGTH - 1].rstrip() + "…"
    return UNNAMED


def normalize_assignments(items: Any) -> list[dict[str, Any]]:
    """Just the assignments part of normalize_object: a Graph assignments list -> the sorted
    normalized list (for callers that hold raw assignments, e.g. an older snapshot)."""
    return _assignments(items, _Context(None))


# --------------------------------------------------------------------------- internals


class _Context:
    __slots__ = ("volatile", "nodes")

    def __init__(self, family: Family | None) -> None:
        extra = FAMILY_VOLATILE_KEYS.get(family.key, frozenset()) if family is not None else frozenset()
        self.volatile = VOLATILE_KEYS | extra
        self.nodes = 0

    def count(self, n: int = 1) -> None:
        self.nodes += n
        if self.nodes > MAX_NODES:
            raise NormalizeError(f"object too large (more than {MAX_NODES} keys and items)")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _check_depth(depth: int) -> None:
    if depth > MAX_DEPTH:
        raise NormalizeError(f"nested deeper than {MAX_DEPTH} levels")


def _check_string(value: str) -> str:
    if "\x00" in value:
        raise NormalizeError("a string contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise NormalizeError("a string contains a lone surrogate") from None
    return value


def _keep_key(key: Any, ctx: _Context, nested: bool) -> bool:
    """False for annotations and volatile keys; raises for a key JSON cannot have."""
    if not isinstance(key, str):
        raise NormalizeError(f"object keys must be strings, not {_type_name(key)}")
    _check_string(key)
    if "@" in key and key != "@odata.type":
        return False
    if key == "id" and nested:
        return True  # decided by _clean_dict: kept only when it is the whole object
    return key not in ctx.volatile


def _odata_type(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise NormalizeError("@odata.type must be a non-empty string")
    value = _check_string(value.strip())
    return value if value.startswith("#") else "#" + value


def _short_type(value: Any) -> str:
    """"#microsoft.graph.groupAssignmentTarget" -> "groupAssignmentTarget"; "" when absent."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise NormalizeError("@odata.type must be a string")
    return value.strip().lstrip("#").rsplit(".", 1)[-1]


def _put_text(out: dict, key: str, value: Any, source: str) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise NormalizeError(f"{source} must be a string, not {_type_name(value)}")
    if value:
        out[key] = _check_string(value)


def _platform(family: Family, remaining: dict, odata_type: str | None, catalog: bool) -> str | None:
    if family.platform:
        return family.platform
    for key in ("platforms", "platform") if catalog else ("platform",):
        if key in remaining:
            value = remaining.pop(key)
            if value is None:
                continue
            if not isinstance(value, str):
                raise NormalizeError(f"{key} must be a string, not {_type_name(value)}")
            value = _check_string(value.strip())
            return None if not value or value in _NO_PLATFORM else value
    if odata_type:
        short = _short_type(odata_type)
        for prefix, platform in PLATFORM_PREFIXES:
            if short.startswith(prefix):
                return platform
    return None


def _scope_tags(*sources: Any) -> list[str]:
    tags: set[str] = set()
    for source in sources:
        if source is None:
            continue
        if not isinstance(source, list):
            raise NormalizeError(f"scope tags must be a list, not {_type_name(source)}")
        for tag in source:
            if isinstance(tag, bool) or not isinstance(tag, (str, int)):
                raise NormalizeError(f"a scope tag id must be a string, not {_type_name(tag)}")
            tag = _check_string(str(tag).strip())
            if tag:
                tags.add(tag)
    return sorted(tags, key=lambda tag: (not tag.isdigit(), int(tag) if tag.isdigit() else 0, tag))


def _scalar(value: Any) -> Any:
    """A JSON scalar as normalized: "" and None are _EMPTY; NaN and infinities are refused."""
    if value is None:
        return _EMPTY
    if isinstance(value, str):
        return _check_string(value) if value else _EMPTY
    if isinstance(value, bool) or isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise NormalizeError("numbers must be finite")
        return value
    raise NormalizeError(f"unexpected value of type {_type_name(value)}")


def _clean(value: Any, ctx: _Context, depth: int, ordered: bool = False) -> Any:
    """Generic normalization of a JSON value (see VALUES in the module docstring)."""
    if isinstance(value, dict):
        return _clean_dict(value, ctx, depth, ordered)
    if isinstance(value, list):
        return _clean_list(value, ctx, depth, ordered)
    return _scalar(value)


def _clean_dict(value: dict, ctx: _Context, depth: int, ordered: bool) -> Any:
    _check_depth(depth)
    ctx.count(len(value))
    out: dict[str, Any] = {}
    reference_id = _EMPTY
    for key, item in value.items():
        if not _keep_key(key, ctx, nested=True):
            continue
        if key == "id":
            reference_id = _scalar(item) if not isinstance(item, (dict, list)) else _EMPTY
            continue
        if key == "@odata.type":
            if item is not None:
                out[key] = _odata_type(item)
            continue
        cleaned = _clean(item, ctx, depth + 1, ordered or key in ORDERED_LIST_KEYS)
        if cleaned is not _EMPTY:
            out[key] = cleaned
    if out.get("isEncrypted") is True and "value" in out:
        out["value"] = SECRET_PLACEHOLDER
    if set(out) <= {"@odata.type"}:
        if reference_id is not _EMPTY:  # {"id": "..."}: a reference, the id is its content
            out["id"] = reference_id
        else:
            return _EMPTY
    return {key: out[key] for key in sorted(out)}


def _clean_list(value: list, ctx: _Context, depth: int, ordered: bool) -> Any:
    _check_depth(depth)
    ctx.count(len(value))
    items = [cleaned for cleaned in (_clean(item, ctx, depth + 1, ordered) for item in value)
             if cleaned is not _EMPTY]
    if not items:
        return _EMPTY
    if ordered:
        return items
    return _sorted_items(items)


def _sorted_items(items: list) -> list:
    """Scalars: a set (deduplicated). Objects or lists: a multiset. Both sorted by canonical JSON."""
    keyed = [(_canonical(item), item) for item in items]
    if all(not isinstance(item, (dict, list)) for item in items):
        keyed = list(dict(keyed).items())
    keyed.sort(key=lambda pair: pair[0])
    return [item for _, item in keyed]


def _flat_properties(properties: dict, ctx: _Context) -> dict[str, Any]:
    """Normalize the remaining top-level properties and flatten nested objects with dots."""
    cleaned = _clean_dict(properties, ctx, 1, False)
    flat: dict[str, Any] = {}
    if cleaned is not _EMPTY:
        _flatten_into(cleaned, "", flat)
    return {key: flat[key] for key in sorted(flat)}


def _flatten_into(value: dict, prefix: str, flat: dict[str, Any]) -> None:
    for key, item in value.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(item, dict):
            _flatten_into(item, path, flat)
        else:
            if path in flat:
                raise NormalizeError(f"property {path[:80]!r} appears twice once flattened")
            flat[path] = item


# --- Settings Catalog


def _catalog_settings(tree: Any, ctx: _Context) -> dict[str, Any]:
    if not isinstance(tree, list):
        raise NormalizeError(f"settings must be a list, not {_type_name(tree)}")
    _check_depth(1)
    ctx.count(len(tree))
    out: dict[str, Any] = {}
    for index, item in enumerate(tree):
        if not isinstance(item, dict):
            raise NormalizeError(f"settings[{index}] must be an object, not {_type_name(item)}")
        ctx.count(len(item))
        instance = item.get("settingInstance")
        if not isinstance(instance, dict):
            raise NormalizeError(f"settings[{index}] has no settingInstance object")
        _catalog_instance(instance, out, ctx, 3)
    return {key: out[key] for key in sorted(out)}


def _put_setting(out: dict[str, Any], key: str, value: Any) -> None:
    if value is _EMPTY:
        return
    if key in out:
        raise NormalizeError(f"setting {key[:120]!r} appears twice")
    out[key] = value


def _merge_settings(out: dict[str, Any], values: dict[str, Any]) -> None:
    for key, value in values.items():
        _put_setting(out, key, value)


def _catalog_instance(instance: dict, out: dict[str, Any], ctx: _Context, depth: int) -> None:
    """Flatten one settingInstance (and its children) into `out`."""
    _check_depth(depth)
    ctx.count(len(instance))
    definition = instance.get("settingDefinitionId")
    if not isinstance(definition, str) or not definition.strip():
        raise NormalizeError("a setting instance has no settingDefinitionId")
    definition = _check_string(definition.strip())
    value_key = _CATALOG_KINDS.get(_short_type(instance.get("@odata.type")))
    if value_key is None or value_key not in instance:  # no (or a mismatching) type: read what is there
        value_key = next((key for key in _CATALOG_KINDS.values() if key in instance), value_key)
    if value_key is None:  # an instance type this code does not know: keep its content generically
        rest = {key: item for key, item in instance.items() if key not in _CATALOG_INSTANCE_META}
        _put_setting(out, definition, _clean(rest, ctx, depth + 1))
        return
    value = instance.get(value_key)
    if value is None:
        return  # a known instance type without a value: not configured
    kind = value_key[: -len("Value")]
    if kind in ("choiceSettingCollection", "simpleSettingCollection", "groupSettingCollection"):
        if not isinstance(value, list):
            raise NormalizeError(f"{value_key} of {definition[:80]!r} must be a list")
        _check_depth(depth + 1)
        ctx.count(len(value))
        for item in value:
            if not isinstance(item, dict):
                raise NormalizeError(f"{value_key} of {definition[:80]!r} must hold objects")
    elif not isinstance(value, dict):
        raise NormalizeError(f"{value_key} of {definition[:80]!r} must be an object")

    if kind == "choiceSetting":
        _put_setting(out, definition, _choice_value(value, definition))
        _catalog_children(value.get("children"), out, ctx, depth + 2)
    elif kind == "simpleSetting":
        _put_setting(out, definition, _simple_value(value, ctx, depth + 1))
    elif kind == "groupSetting":
        _catalog_children(value.get("children"), out, ctx, depth + 2)
    elif kind == "simpleSettingCollection":
        values = [_simple_value(item, ctx, depth + 2) for item in value]
        values = [item for item in values if item is not _EMPTY]
        _put_setting(out, definition, _sorted_items(values) if values else _EMPTY)
    elif kind == "choiceSettingCollection":
        values = []
        for item in value:
            chosen = _choice_value(item, definition)
            children: dict[str, Any] = {}
            _catalog_children(item.get("children"), children, ctx, depth + 3)
            if children:
                if chosen is not _EMPTY:
                    _put_setting(children, "value", chosen)
                values.append({key: children[key] for key in sorted(children)})
            elif chosen is not _EMPTY:
                values.append(chosen)
        _put_setting(out, definition, _sorted_items(values) if values else _EMPTY)
    else:  # groupSettingCollection
        instances = []
        for item in value:
            children = {}
            _catalog_children(item.get("children"), children, ctx, depth + 3)
            if children:
                instances.append({key: children[key] for key in sorted(children)})
        if len(instances) == 1:
            _merge_settings(out, instances[0])
        elif instances:
            _put_setting(out, definition, _sorted_items(instances))


def _catalog_children(children: Any, out: dict[str, Any], ctx: _Context, depth: int) -> None:
    if children is None:
        return
    if not isinstance(children, list):
        raise NormalizeError(f"children must be a list, not {_type_name(children)}")
    _check_depth(depth)
    ctx.count(len(children))
    for child in children:
        if not isinstance(child, dict):
            raise NormalizeError(f"a child setting must be an object, not {_type_name(child)}")
        _catalog_instance(child, out, ctx, depth + 1)


def _choice_value(value: dict, definition: str) -> Any:
    chosen = value.get("value")
    if isinstance(chosen, (dict, list)):
        raise NormalizeError(f"the choice of {definition[:80]!r} must be a scalar")
    return _scalar(chosen)


def _simple_value(value: dict, ctx: _Context, depth: int) -> Any:
    _check_depth(depth)
    ctx.count(len(value))
    kind = _short_type(value.get("@odata.type"))
    plain = value.get("value")
    if isinstance(plain, (dict, list)):
        raise NormalizeError("a simple setting value must be a scalar")
    if kind == "deviceManagementConfigurationSecretSettingValue" or "valueState" in value:
        return SECRET_PLACEHOLDER if _scalar(plain) is not _EMPTY else _EMPTY
    plain = _scalar(plain)
    note = value.get("note")
    if note is not None and kind == "deviceManagementConfigurationReferenceSettingValue":
        if not isinstance(note, str):
            raise NormalizeError("a reference setting's note must be a string")
        if note:
            result = {"note": _check_string(note)}
            if plain is not _EMPTY:
                result["value"] = plain
            return result
    return plain


# --- assignments


def _assignments(items: Any, ctx: _Context) -> list[dict[str, Any]]:
    if not isinstance(items, list):
        raise NormalizeError(f"assignments must be a list, not {_type_name(items)}")
    _check_depth(1)
    ctx.count(len(items))
    normalized = [_assignment(item, ctx) for item in items]
    normalized.sort(key=lambda item: (item["target"], item.get("groupId", ""), _canonical(item)))
    return normalized


def _assignment(item: Any, ctx: _Context) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise NormalizeError(f"an assignment must be an object, not {_type_name(item)}")
    ctx.count(len(item))
    target = item.get("target")
    if not isinstance(target, dict):
        raise NormalizeError("an assignment has no target object")
    ctx.count(len(target))
    kind = _short_type(target.get("@odata.type"))
    if not kind:
        if "groupId" not in target:
            raise NormalizeError("an assignment target has no @odata.type")
        kind = "groupAssignmentTarget"
    name = _ASSIGNMENT_TARGET_NAMES.get(kind)
    if name is None:  # "configurationManagerCollectionAssignmentTarget" -> "configurationManagerCollection"
        name = kind.removesuffix("AssignmentTarget") or kind
    out: dict[str, Any] = {"target": _check_string(name)}

    group_id = target.get("groupId")
    if group_id is not None:
        if not isinstance(group_id, str):
            raise NormalizeError("an assignment's groupId must be a string")
        if group_id.strip():
            out["groupId"] = _check_string(group_id.strip().lower())

    filter_type = target.get(_FILTER_TYPE)
    filter_id = target.get(_FILTER_ID)
    if filter_type is not None and not isinstance(filter_type, str):
        raise NormalizeError("an assignment's filter type must be a string")
    if filter_id is not None and not isinstance(filter_id, str):
        raise NormalizeError("an assignment's filter id must be a string")
    filter_type = (filter_type or "").strip().lower()
    filter_id = (filter_id or "").strip().lower()
    if filter_type and filter_type != "none":
        out["filterType"] = _check_string(filter_type)
        if filter_id and filter_id != _ZERO_GUID:
            out["filterId"] = _check_string(filter_id)

    for key, value in target.items():
        if key in ("@odata.type", "groupId", _FILTER_TYPE, _FILTER_ID) or not _keep_key(key, ctx, nested=False):
            continue
        cleaned = _clean(value, ctx, 3)
        if cleaned is not _EMPTY:
            out[key] = cleaned

    intent = item.get("intent")
    if intent is not None:
        if not isinstance(intent, str):
            raise NormalizeError("an assignment's intent must be a string")
        if intent and intent != "apply":
            out["intent"] = _check_string(intent)
    source = item.get("source")
    if source is not None and not isinstance(source, str):
        raise NormalizeError("an assignment's source must be a string")
    if source and source != "direct":
        out["source"] = _check_string(source)
        source_id = _scalar(item.get("sourceId")) if not isinstance(item.get("sourceId"), (dict, list)) else _EMPTY
        if source_id is not _EMPTY:
            out["sourceId"] = source_id
    for key, value in item.items():
        if key in ("target", "intent", "source", "sourceId") or key in out or not _keep_key(key, ctx, nested=False):
            continue
        cleaned = _clean(value, ctx, 2)
        if cleaned is not _EMPTY:
            out[key] = cleaned
    return {key: out[key] for key in sorted(out)}
