"""Graph representations of the demo records, and the rules for changing a stored object.

The shapes follow what Graph returns (checked against Microsoft's resource documentation
and the payloads in the MIT-licensed IntuneCD project's tests):

- Settings Catalog (`configurationPolicies`): `name` (not displayName), `platforms`,
  `technologies`, `templateReference`, `roleScopeTagIds`, `settingCount`; its `/settings`
  relation is a list of `{"id", "settingInstance"}` whose instances are choice, simple,
  simple collection or group collection instances (children nested).
- Device configurations and compliance policies: `@odata.type`, `id`, `displayName`,
  `description`, `createdDateTime`, `lastModifiedDateTime`, `version` (an integer) and the
  type's own properties ("a.b" keys of the demo records become nested objects).
- App protection: ids `T_<guid>`, `version` a quoted etag.
- Assignments: `{"id", "source", "sourceId", "target": {"@odata.type", "groupId",
  "deviceAndAppManagementAssignmentFilterId", "deviceAndAppManagementAssignmentFilterType"}}`.
"""
from __future__ import annotations

import copy
import datetime as dt
import hashlib
import re
import uuid
from typing import Any

from app.graph.families import Family

from .store import StoreError, StoredObject, iso, is_settings_catalog

CHOICE = "#microsoft.graph.deviceManagementConfigurationChoiceSettingInstance"
SIMPLE = "#microsoft.graph.deviceManagementConfigurationSimpleSettingInstance"
SIMPLE_COLLECTION = "#microsoft.graph.deviceManagementConfigurationSimpleSettingCollectionInstance"
GROUP_COLLECTION = "#microsoft.graph.deviceManagementConfigurationGroupSettingCollectionInstance"
INTEGER_VALUE = "#microsoft.graph.deviceManagementConfigurationIntegerSettingValue"
STRING_VALUE = "#microsoft.graph.deviceManagementConfigurationStringSettingValue"

# Intune's fixed ids for the "all devices" and "all users" virtual groups.
ALL_DEVICES_ID = "adadadad-808e-44e2-905a-0b7873a8a531"
ALL_USERS_ID = "acacacac-9df4-4c7d-9d50-4ef0226f57a9"

_CHOICE_OPTION = re.compile(r"[A-Za-z0-9_]+")


def stable_guid(*parts: object) -> str:
    """The GUID `flask seed-demo` computes for the same parts: md5 of the '/'-joined parts."""
    return str(uuid.UUID(hex=hashlib.md5("/".join(str(part) for part in parts).encode()).hexdigest()))  # noqa: S324


def etag(*parts: object) -> str:
    """A quoted etag, as app protection policies carry in `version`."""
    return f'"{stable_guid("etag", *parts)}"'


# --- Settings Catalog ----------------------------------------------------------------------


def split_setting_key(key: str) -> tuple[str | None, str]:
    """A flat demo key -> (parent group definition id or None, setting definition id).

    "com.apple.managedclient.preferences_updatedeadline.daysbeforeforcedquit" is the child
    "..._updatedeadline_daysbeforeforcedquit" of the group "..._updatedeadline".
    """
    head, separator, rest = key.partition("_")
    if separator and "." in rest:
        group, _, child = rest.rpartition(".")
        parent = f"{head}_{group}"
        return parent, f"{parent}_{child}"
    return None, key


def _choice_value(definition_id: str, value: Any) -> str:
    if isinstance(value, bool):
        return f"{definition_id}_{'true' if value else 'false'}"
    text = str(value)
    return text if text.startswith(f"{definition_id}_") else f"{definition_id}_{text}"


def setting_instance(definition_id: str, value: Any) -> dict[str, Any]:
    """The settingInstance a demo value becomes: booleans and enum-like strings are choices."""
    base = {"settingDefinitionId": definition_id, "settingInstanceTemplateReference": None}
    if isinstance(value, bool) or (isinstance(value, str) and _CHOICE_OPTION.fullmatch(value)):
        return {
            "@odata.type": CHOICE, **base,
            "choiceSettingValue": {
                "settingValueTemplateReference": None, "value": _choice_value(definition_id, value), "children": [],
            },
        }
    if isinstance(value, list):
        return {
            "@odata.type": SIMPLE_COLLECTION, **base,
            "simpleSettingCollectionValue": [
                {"@odata.type": STRING_VALUE, "settingValueTemplateReference": None, "value": str(entry)}
                for entry in value
            ],
        }
    return {"@odata.type": SIMPLE, **base, "simpleSettingValue": _simple_value(value)}


def _simple_value(value: Any) -> dict[str, Any]:
    if isinstance(value, int) and not isinstance(value, bool):
        return {"@odata.type": INTEGER_VALUE, "settingValueTemplateReference": None, "value": value}
    return {"@odata.type": STRING_VALUE, "settingValueTemplateReference": None, "value": "" if value is None else str(value)}


def _group_instance(definition_id: str, children: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "@odata.type": GROUP_COLLECTION, "settingDefinitionId": definition_id,
        "settingInstanceTemplateReference": None,
        "groupSettingCollectionValue": [{"settingValueTemplateReference": None, "children": children}],
    }


def settings_tree(flat: dict[str, Any]) -> list[dict[str, Any]]:
    """The `/settings` list of a Settings Catalog policy made from flat demo settings."""
    top: list[dict[str, Any]] = []
    groups: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        parent, definition_id = split_setting_key(key)
        instance = setting_instance(definition_id, value)
        if parent is None:
            top.append(instance)
            continue
        group = groups.get(parent)
        if group is None:
            group = groups[parent] = _group_instance(parent, [])
            top.append(group)
        group["groupSettingCollectionValue"][0]["children"].append(instance)
    return [{"id": str(number), "settingInstance": instance} for number, instance in enumerate(top)]


def _children_lists(instance: dict[str, Any]) -> list[list[dict[str, Any]]]:
    lists = []
    choice = instance.get("choiceSettingValue")
    if isinstance(choice, dict) and isinstance(choice.get("children"), list):
        lists.append(choice["children"])
    for entry in instance.get("groupSettingCollectionValue") or []:
        if isinstance(entry, dict) and isinstance(entry.get("children"), list):
            lists.append(entry["children"])
    return lists


def _find_instance(instances: list[dict[str, Any]], definition_id: str) -> tuple[list[dict[str, Any]], int] | None:
    """(the list holding it, its index) for the instance with this definition id, at any depth."""
    for index, instance in enumerate(instances):
        if instance.get("settingDefinitionId") == definition_id:
            return instances, index
        for children in _children_lists(instance):
            found = _find_instance(children, definition_id)
            if found:
                return found
    return None


def _set_instance_value(instance: dict[str, Any], definition_id: str, value: Any) -> dict[str, Any]:
    kind = instance.get("@odata.type")
    if kind == CHOICE:
        updated = copy.deepcopy(instance)
        updated.setdefault("choiceSettingValue", {})["value"] = _choice_value(definition_id, value)
        return updated
    if kind == SIMPLE and not isinstance(value, list):
        updated = copy.deepcopy(instance)
        updated["simpleSettingValue"] = _simple_value(value)
        return updated
    if kind == GROUP_COLLECTION:
        raise StoreError(f"{definition_id} is a group of settings: change its children by their own ids")
    return setting_instance(definition_id, value)


def edit_settings(settings: list[dict[str, Any]], key: str, value: Any) -> None:
    """Sets (or, with None, removes) one setting of a `/settings` list in place."""
    instances = [entry.get("settingInstance") or {} for entry in settings]
    parent, definition_id = split_setting_key(key)
    found = _find_instance(instances, key) or _find_instance(instances, definition_id)
    if found:
        holder, index = found
        target_id = holder[index].get("settingDefinitionId", definition_id)
        if value is None:
            if holder is instances:
                del settings[index]
            else:
                del holder[index]
            return
        holder[index] = _set_instance_value(holder[index], target_id, value)
        if holder is instances:
            settings[index]["settingInstance"] = holder[index]
        return
    if value is None:
        raise StoreError(f"no setting {key!r} to remove")
    if parent is not None:
        group = _find_instance(instances, parent)
        if group:
            group_holder, group_index = group
            values = group_holder[group_index].setdefault("groupSettingCollectionValue", [])
            if not values:
                values.append({"settingValueTemplateReference": None, "children": []})
            values[0].setdefault("children", []).append(setting_instance(definition_id, value))
            return
        instance = _group_instance(parent, [setting_instance(definition_id, value)])
    else:
        instance = setting_instance(definition_id, value)
    next_id = 1 + max((int(entry["id"]) for entry in settings if str(entry.get("id", "")).isdigit()), default=-1)
    settings.append({"id": str(next_id), "settingInstance": instance})


# --- flat "a.b" properties ------------------------------------------------------------------


def set_path(target: dict[str, Any], key: str, value: Any) -> None:
    """target["a"]["b"] = value for key "a.b" (intermediate objects made as needed)."""
    *parents, last = key.split(".")
    node = target
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[last] = value


def expand(flat: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in flat.items():
        set_path(result, key, copy.deepcopy(value))
    return result


# --- objects of each kind -------------------------------------------------------------------


def _camel_words(text: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text)


def settings_catalog_policy(
    object_id: str, name: str, description: str, platform: str, flat_settings: dict[str, Any],
    created: dt.datetime, modified: dt.datetime,
) -> dict[str, Any]:
    settings = dict(flat_settings)
    template_family = settings.pop("templateFamily", None)
    tree = settings_tree(settings)
    if template_family:
        template_reference = {
            "templateId": f"{stable_guid('template', template_family)}_1",
            "templateFamily": template_family,
            "templateDisplayName": _camel_words(template_family.removeprefix("endpointSecurity")).strip(),
            "templateDisplayVersion": "Version 1",
        }
        technologies = "mdm,microsoftSense"
    else:
        template_reference = {
            "templateId": "", "templateFamily": "none", "templateDisplayName": None, "templateDisplayVersion": None,
        }
        technologies = "mdm"
    return {
        "@odata.type": "#microsoft.graph.deviceManagementConfigurationPolicy",
        "id": object_id,
        "name": name,
        "description": description,
        "platforms": platform,
        "technologies": technologies,
        "createdDateTime": iso(created),
        "lastModifiedDateTime": iso(modified),
        "settingCount": len(tree),
        "creationSource": None,
        "roleScopeTagIds": ["0"],
        "isAssigned": False,
        "templateReference": template_reference,
        "priorityMetaData": None,
        "settings": tree,
    }


def device_policy(
    object_id: str, odata_type: str, display_name: str, description: str, flat_settings: dict[str, Any],
    created: dt.datetime, modified: dt.datetime, version: int,
) -> dict[str, Any]:
    """A device configuration or compliance policy: the type's properties, nested from "a.b" keys."""
    return {
        "@odata.type": odata_type,
        "id": object_id,
        "displayName": display_name,
        "description": description,
        "createdDateTime": iso(created),
        "lastModifiedDateTime": iso(modified),
        "version": version,
        "roleScopeTagIds": ["0"],
        "supportsScopeTags": True,
        **expand(flat_settings),
    }


def app_protection_policy(
    object_id: str, odata_type: str, display_name: str, description: str, flat_settings: dict[str, Any],
    created: dt.datetime, modified: dt.datetime, version: int,
) -> dict[str, Any]:
    return {
        "@odata.type": odata_type,
        "id": object_id,
        "displayName": display_name,
        "description": description,
        "createdDateTime": iso(created),
        "lastModifiedDateTime": iso(modified),
        "roleScopeTagIds": ["0"],
        "version": etag(object_id, version),
        "isAssigned": False,
        "deployedAppCount": 0,
        **expand(flat_settings),
    }


def assignment(policy_id: str, kind: str, group_id: str | None = None, filter_id: str | None = None,
               filter_type: str = "none") -> dict[str, Any]:
    """kind: "group", "exclusionGroup", "allDevices" or "allLicensedUsers"."""
    target: dict[str, Any] = {"@odata.type": f"#microsoft.graph.{kind}AssignmentTarget"}
    if kind in ("group", "exclusionGroup"):
        target["groupId"] = group_id
    target["deviceAndAppManagementAssignmentFilterId"] = filter_id
    target["deviceAndAppManagementAssignmentFilterType"] = filter_type if filter_id else "none"
    virtual = {"allDevices": ALL_DEVICES_ID, "allLicensedUsers": ALL_USERS_ID}.get(kind)
    return {
        "id": f"{policy_id}_{group_id or virtual}",
        "source": "direct",
        "sourceId": policy_id,
        "target": target,
    }


def assignment_filter(object_id: str, name: str, data: dict[str, Any], created: dt.datetime) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.deviceAndAppManagementAssignmentFilter",
        "id": object_id,
        "createdDateTime": iso(created),
        "lastModifiedDateTime": iso(created),
        "displayName": name,
        "description": "",
        "platform": data.get("platform", "windows10AndLater"),
        "rule": data.get("rule", ""),
        "roleScopeTags": ["0"],
        "assignmentFilterManagementType": "devices",
        "payloads": [],
    }


def scope_tag(object_id: str, name: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.roleScopeTag",
        "id": object_id,
        "displayName": name,
        "description": data.get("description", ""),
        "isBuiltIn": bool(data.get("isBuiltIn", False)),
    }


DEFAULT_SCOPE_TAG = {
    "@odata.type": "#microsoft.graph.roleScopeTag", "id": "0", "displayName": "Default",
    "description": "Default scope tag", "isBuiltIn": True,
}


def group(object_id: str, name: str, group_type: str, domain: str, created: dt.datetime) -> dict[str, Any]:
    nickname = re.sub(r"[^A-Za-z0-9]", "", name) or "group"
    shape = {
        "microsoft365": (["Unified"], True, False),
        "dynamic": (["DynamicMembership"], False, True),
        "distribution": ([], True, False),
    }.get(group_type, ([], False, True))
    group_types, mail_enabled, security_enabled = shape
    dynamic = group_type == "dynamic"
    rule = None
    if dynamic:
        rule = ('(device.deviceOwnership -eq "Company")' if "Device" in name
                else "(user.accountEnabled -eq true)")
    return {
        "id": object_id,
        "displayName": name,
        "description": f"{name} ({group_type})",
        "createdDateTime": iso(created),
        "groupTypes": group_types,
        "mail": f"{nickname.lower()}@{domain}" if mail_enabled else None,
        "mailEnabled": mail_enabled,
        "mailNickname": nickname,
        "securityEnabled": security_enabled,
        "membershipRule": rule,
        "membershipRuleProcessingState": "On" if dynamic else None,
        "visibility": "Private" if group_type == "microsoft365" else None,
    }


def role_definition(object_id: str, record: dict[str, Any]) -> dict[str, Any]:
    built_in = bool(record.get("built_in"))
    return {
        "id": object_id,
        "description": record.get("description", ""),
        "displayName": record["name"],
        "isBuiltIn": built_in,
        "isEnabled": True,
        "resourceScopes": ["/"],
        "templateId": object_id,
        "version": "1" if built_in else None,
        "rolePermissions": [{"allowedResourceActions": list(record.get("actions", [])), "condition": None}],
    }


# --- changing a stored object ---------------------------------------------------------------


def apply_changes(family: Family, item: StoredObject, changes: dict[str, Any], now: dt.datetime) -> None:
    """Merges `changes` into a stored object and bumps lastModifiedDateTime/version.

    Keys naming a relation (e.g. "assignments") replace that relation's list; for the
    Settings Catalog, a key that is not a property of the policy is a setting definition
    id (or a flat demo key) and changes that setting in `/settings` (None removes it), and
    "settings" may also be a {definition id: value} object. Elsewhere "a.b" keys change
    nested properties.
    """
    for key in ("id", "@odata.type"):
        if key in changes and changes[key] != item.data.get(key):
            raise StoreError(f"{key} cannot be changed")
    data = item.data
    for key, value in changes.items():
        if key in ("id", "@odata.type"):
            continue
        if key in item.relations:
            if isinstance(value, list) and all(isinstance(entry, dict) for entry in value):
                item.relations[key] = copy.deepcopy(value)
                continue
            if key == "settings" and is_settings_catalog(family) and isinstance(value, dict):
                for setting_key, setting_value in value.items():
                    edit_settings(item.relations["settings"], setting_key, setting_value)
                continue
            raise StoreError(f"{key} must be a list of objects")
        if is_settings_catalog(family) and key not in data:
            edit_settings(item.relations["settings"], key, value)
            continue
        if "." in key and key not in data:
            set_path(data, key, copy.deepcopy(value))
        else:
            data[key] = copy.deepcopy(value)

    touch(family, item, now)


def touch(family: Family, item: StoredObject, now: dt.datetime) -> None:
    """What Graph updates on every change: lastModifiedDateTime, the version (an integer
    counter, or an app protection policy's etag), and the counters derived from relations."""
    data = item.data
    if "lastModifiedDateTime" in data:
        data["lastModifiedDateTime"] = iso(now)
    version = data.get("version")
    if isinstance(version, bool):
        pass
    elif isinstance(version, int):
        data["version"] = version + 1
    elif isinstance(version, str) and version.startswith('"'):
        data["version"] = etag(item.id, now.isoformat(), uuid.uuid4())
    if is_settings_catalog(family):
        data["settingCount"] = len(item.relations.get("settings", []))
    if "assignments" in item.relations and "isAssigned" in data:
        data["isAssigned"] = bool(item.relations["assignments"])
