"""Side-by-side comparison of two policy versions.

settings_diff(left, right)          any two JSON values, flattened to dotted/indexed paths
snapshot_diff(left, right)          two whole snapshots (app.graph.normalize's normalized form,
                                    or an older raw Graph object), with readable paths:
    "Name", "Description", "Type", "Platform", "Template family",
    "Scope tags › 12"                           lists of scalars are sets: one row per member
    "Properties › technologies"
    "Settings › device_vendor_msft_…"           one row per setting
    "Settings › <id> › <member>"                a list setting: one row per member
    "Settings › <id> › <name of the item>"      a list of objects (group collection instances,
                                                OMA-URI rows, …): one row per item, an item
                                                present on both sides with another content
                                                shows as "changed" when its name is unique
    "Assignments › include group <id>"          one row per assignment target; the value is
                                                its filter ("include filter <id>" / "no filter")
Volatile keys (ids, versions, timestamps, OData annotations) never produce rows; null, "",
{} and [] count as missing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from app.graph.normalize import VOLATILE_KEYS, NormalizeError, normalize_assignments

_MISSING = object()
SEP = " › "


@dataclass(frozen=True)
class DiffRow:
    path: str
    left: str | None
    right: str | None
    status: str  # same, changed, added, removed


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}, "c": [x, y]} -> {"a.b": 1, "c[0]": x, "c[1]": y}; leaves keep their JSON value."""
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key in sorted(value):
            flat.update(flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(value, list) and value:
        flat = {}
        for index, item in enumerate(value):
            flat.update(flatten(item, f"{prefix}[{index}]"))
        return flat
    return {prefix or "(value)": value}


def _show(value: Any) -> str | None:
    if value is _MISSING:
        return None
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def settings_diff(left: Any, right: Any) -> list[DiffRow]:
    flat_left, flat_right = flatten(left), flatten(right)
    rows = []
    for path in sorted(flat_left.keys() | flat_right.keys()):
        a, b = flat_left.get(path, _MISSING), flat_right.get(path, _MISSING)
        if a is _MISSING:
            status = "added"
        elif b is _MISSING:
            status = "removed"
        else:
            status = "same" if a == b else "changed"
        rows.append(DiffRow(path, _show(a), _show(b), status))
    return rows


# --------------------------------------------------------------------------- snapshot_diff

_TOP_LABELS = {
    "displayName": "Name",
    "name": "Name",
    "description": "Description",
    "odataType": "Type",
    "@odata.type": "Type",
    "platform": "Platform",
    "platforms": "Platform",
    "templateFamily": "Template family",
    "scopeTagIds": "Scope tags",
    "roleScopeTagIds": "Scope tags",
    "roleScopeTags": "Scope tags",
}
_SECTION_RANK = {label: rank for rank, label in enumerate(
    ("Name", "Description", "Type", "Platform", "Template family", "Scope tags", "Properties", "Settings",
     "Assignments"))}
_ITEM_NAME_KEYS = ("displayName", "name", "omaUri", "ruleName", "bundleId", "packageId")
_ASSIGNMENT_LABELS = {"group": "include group", "exclusionGroup": "exclude group",
                      "allDevices": "all devices", "allLicensedUsers": "all users"}


def snapshot_diff(left_snapshot: Any, right_snapshot: Any) -> list[DiffRow]:
    """Rows comparing two snapshots (see the module docstring), in a stable reading order:
    name, description, type, platform, template family, scope tags, properties, settings,
    assignments. Rows whose sides are equal are included with status "same"."""
    left, right = _entries(left_snapshot), _entries(right_snapshot)
    rows: list[DiffRow] = []
    for path in sorted(left.keys() | right.keys(), key=_path_order):
        a, b = left.get(path, _MISSING), right.get(path, _MISSING)
        if path == "Assignments":
            rows.extend(_assignment_rows(a, b))
        else:
            rows.extend(_value_rows(path, a, b))
    return rows


def _path_order(path: str) -> tuple[int, str]:
    return _SECTION_RANK.get(path.split(SEP, 1)[0], len(_SECTION_RANK)), path


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == {} or value == []


def _entries(snapshot: Any) -> dict[str, Any]:
    """Top-level snapshot -> {readable path: value}; assignments kept whole under "Assignments"."""
    if not isinstance(snapshot, dict):
        return {} if _is_empty(snapshot) else {"Settings": snapshot}
    entries: dict[str, Any] = {}
    for key in sorted(snapshot, key=str):
        value = snapshot[key]
        key = str(key)
        if _is_noise(key) or _is_empty(value):
            continue
        if key in _TOP_LABELS:
            entries.setdefault(_TOP_LABELS[key], value)
        elif key == "assignments":
            entries["Assignments"] = value
        elif key in ("settings", "properties"):
            section = "Settings" if key == "settings" else "Properties"
            if isinstance(value, dict):
                _flatten_entries(value, section, "", entries)
            else:
                entries[section] = value
        else:  # an older snapshot: the raw object, its properties at the top level
            _flatten_entries({key: value}, "Settings", "", entries)
    return entries


def _is_noise(key: str) -> bool:
    return key in VOLATILE_KEYS or ("@" in key and key != "@odata.type")


def _flatten_entries(value: dict, section: str, prefix: str, entries: dict[str, Any]) -> None:
    for key in sorted(value, key=str):
        item, key = value[key], str(key)
        dotted = f"{prefix}.{key}" if prefix else key
        if _is_empty(item) or (_is_noise(key) and not (key == "id" and prefix and len(value) == 1)):
            continue
        if isinstance(item, dict):
            _flatten_entries(item, section, dotted, entries)
        else:
            entries[f"{section}{SEP}{dotted}"] = item


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _show_value(value: Any) -> str | None:
    if value is _MISSING:
        return None
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _status(a: Any, b: Any) -> str:
    if a is _MISSING:
        return "added"
    if b is _MISSING:
        return "removed"
    return "same" if _canonical(a) == _canonical(b) else "changed"


def _value_rows(path: str, a: Any, b: Any) -> list[DiffRow]:
    sides = [side for side in (a, b) if side is not _MISSING]
    if sides and all(isinstance(side, list) for side in sides):
        if all(not isinstance(item, (dict, list)) for side in sides for item in side):
            return _scalar_set_rows(path, a, b)
        return _object_set_rows(path, a, b)
    return [DiffRow(path, _show_value(a), _show_value(b), _status(a, b))]


def _scalar_set_rows(path: str, a: Any, b: Any) -> list[DiffRow]:
    left = {_canonical(item): item for item in (a if a is not _MISSING else []) if not _is_empty(item)}
    right = {_canonical(item): item for item in (b if b is not _MISSING else []) if not _is_empty(item)}
    rows = []
    for key in sorted(left.keys() | right.keys()):
        member = left.get(key, right.get(key))
        x, y = left.get(key, _MISSING), right.get(key, _MISSING)
        rows.append(DiffRow(f"{path}{SEP}{_show_value(member)}", _show_value(x), _show_value(y), _status(x, y)))
    return rows


def _item_label(item: Any) -> str:
    if isinstance(item, dict):
        for key in _ITEM_NAME_KEYS:
            if isinstance(item.get(key), str) and item[key]:
                return item[key]
        for key in sorted(item, key=str):
            if str(key).lower().endswith("name") and isinstance(item[key], str) and item[key]:
                return item[key]
    return "item"


def _object_set_rows(path: str, a: Any, b: Any) -> list[DiffRow]:
    def counted(side: Any) -> dict[str, list]:
        members: dict[str, list] = {}
        for item in side if side is not _MISSING else []:
            if not _is_empty(item):
                members.setdefault(_canonical(item), []).append(item)
        return members

    left, right = counted(a), counted(b)
    same, removed, added = [], [], []
    for key in sorted(left.keys() | right.keys()):
        in_left, in_right = left.get(key, []), right.get(key, [])
        shared = min(len(in_left), len(in_right))
        same += in_left[:shared]
        removed += in_left[shared:]
        added += in_right[shared:]
    rows = [(_item_label(item), DiffRow(f"{path}{SEP}{_item_label(item)}", _show_value(item), _show_value(item),
                                        "same")) for item in same]
    removed_labels = [_item_label(item) for item in removed]
    added_labels = [_item_label(item) for item in added]
    paired = {label for label in set(removed_labels) & set(added_labels)
              if label != "item" and removed_labels.count(label) == 1 and added_labels.count(label) == 1}
    for item, label in zip(removed, removed_labels):
        if label in paired:
            new = added[added_labels.index(label)]
            rows.append((label, DiffRow(f"{path}{SEP}{label}", _show_value(item), _show_value(new), "changed")))
        else:
            rows.append((label, DiffRow(f"{path}{SEP}{label}", _show_value(item), None, "removed")))
    for item, label in zip(added, added_labels):
        if label not in paired:
            rows.append((label, DiffRow(f"{path}{SEP}{label}", None, _show_value(item), "added")))
    rows.sort(key=lambda pair: (pair[0], pair[1].left or "", pair[1].right or ""))
    return [row for _, row in rows]


def _assignment_items(value: Any) -> list:
    if value is _MISSING:
        return []
    items = value if isinstance(value, list) else [value]
    if any(isinstance(item, dict) and isinstance(item.get("target"), dict) for item in items):
        try:  # raw Graph assignments (an older snapshot): normalize them the way new versions are
            return normalize_assignments(items)
        except NormalizeError:
            return items
    return items


def _assignment_label(item: Any) -> tuple[str, str]:
    """(who it targets, how: the filter and any other detail) of a normalized assignment."""
    if not isinstance(item, dict) or not isinstance(item.get("target"), str):
        return _canonical(item), "assigned"
    target = item["target"]
    label = _ASSIGNMENT_LABELS.get(target, target)
    if item.get("groupId"):
        label += f" {item['groupId']}"
    details = []
    extras = {key: value for key, value in item.items()
              if key not in ("target", "groupId", "filterId", "filterType", "intent", "source", "sourceId")}
    for key in sorted(extras):
        label += f" {key} {_show_value(extras[key])}"
    if item.get("filterType"):
        details.append(f"{item['filterType']} filter {item.get('filterId') or '(no id)'}")
    else:
        details.append("no filter")
    if item.get("intent"):
        details.append(f"intent {item['intent']}")
    if item.get("source"):
        details.append(f"via {item['source']} {item.get('sourceId') or ''}".rstrip())
    return label, "; ".join(details)


def _labelled_assignments(value: Any) -> dict[str, str]:
    labelled: dict[str, str] = {}
    for item in _assignment_items(value):
        label, detail = _assignment_label(item)
        unique, n = label, 1
        while unique in labelled:
            n += 1
            unique = f"{label} ({n})"
        labelled[unique] = detail
    return labelled


def _assignment_rows(a: Any, b: Any) -> list[DiffRow]:
    left, right = _labelled_assignments(a), _labelled_assignments(b)
    rows = []
    for label in sorted(left.keys() | right.keys()):
        x, y = left.get(label, _MISSING), right.get(label, _MISSING)
        rows.append(DiffRow(f"Assignments{SEP}{label}", _show_value(x), _show_value(y), _status(x, y)))
    return rows
