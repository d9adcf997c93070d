"""The normalizer (app.graph.normalize) and the snapshot diff (app.diffing.snapshot_diff).

Golden files: tests/golden/normalize/<case>/input.json holds {"family", "raw", "related"?,
"comment"?, "sameHashAs"?, "differentHashFrom"?}; expected.json holds what normalizing it
gives ({"displayName", "normalized", "contentHash"}) or {"error": message}. Cases are found by
listing the folder, so a new case is a new folder. Run with UPDATE_GOLDEN=1 to (re)write the
expected files, then read the diff before committing it.
"""
from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.diffing import DiffRow, settings_diff, snapshot_diff
from app.graph.families import FAMILIES, FAMILIES_BY_KEY, Family
from app.graph.normalize import (
    MAX_DEPTH,
    MAX_NAME_LENGTH,
    MAX_NODES,
    SECRET_PLACEHOLDER,
    UNNAMED,
    VOLATILE_KEYS,
    NormalizeError,
    content_hash,
    display_name_of,
    normalize_assignments,
    normalize_object,
)

GOLDEN = Path(__file__).parent / "golden" / "normalize"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
CASES = sorted(path.name for path in GOLDEN.iterdir() if path.is_dir())


def load_input(case: str) -> dict:
    return json.loads((GOLDEN / case / "input.json").read_text(encoding="utf-8"))


def run(data: dict) -> dict:
    family = FAMILIES_BY_KEY[data["family"]]
    try:
        normalized = normalize_object(family, copy.deepcopy(data["raw"]), copy.deepcopy(data.get("related")))
    except NormalizeError as error:
        return {"error": str(error)}
    return {"displayName": display_name_of(family, data["raw"]), "normalized": normalized,
            "contentHash": content_hash(normalized)}


def hash_of(family_key: str, raw: dict, related: dict | None = None) -> str:
    return content_hash(normalize_object(FAMILIES_BY_KEY[family_key], raw, related))


# --------------------------------------------------------------------------- golden files


@pytest.mark.parametrize("case", CASES)
def test_golden_case(case):
    data = load_input(case)
    assert data["family"] in FAMILIES_BY_KEY, f"{case}: unknown family {data['family']!r}"
    result = run(data)
    expected_path = GOLDEN / case / "expected.json"
    if UPDATE:
        expected_path.write_text(json.dumps(result, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                                 encoding="utf-8")
    assert expected_path.exists(), f"{case}: no expected.json; run with UPDATE_GOLDEN=1 and review it"
    assert result == json.loads(expected_path.read_text(encoding="utf-8"))
    if "error" not in result:
        # what is stored must survive a JSON round trip unchanged (JSONB column)
        assert json.loads(json.dumps(result["normalized"])) == result["normalized"]
        assert result["contentHash"] == content_hash(json.loads(json.dumps(result["normalized"])))
    for other in data.get("sameHashAs", []) if isinstance(data.get("sameHashAs"), list) else [data.get("sameHashAs")]:
        if other:
            assert result["contentHash"] == run(load_input(other))["contentHash"], f"{case} should hash like {other}"
    for other in data.get("differentHashFrom", []) if isinstance(data.get("differentHashFrom"), list) \
            else [data.get("differentHashFrom")]:
        if other:
            assert result["contentHash"] != run(load_input(other))["contentHash"], f"{case} should differ from {other}"


def test_every_family_has_a_golden_case():
    covered = {load_input(case)["family"] for case in CASES if "error" not in run(load_input(case))}
    missing = [family.key for family in FAMILIES if family.key not in covered]
    assert not missing, f"no golden case normalizes these families: {missing}"


def test_golden_cases_are_well_formed():
    assert CASES, "no golden cases found"
    for case in CASES:
        data = load_input(case)
        assert set(data) <= {"family", "raw", "related", "comment", "sameHashAs", "differentHashFrom"}, case
        assert (GOLDEN / case / "expected.json").exists() or UPDATE, case


def test_golden_hashes_are_distinct_unless_declared_equal():
    hashes: dict[str, str] = {}
    for case in CASES:
        data = load_input(case)
        result = run(data)
        if "error" in result or data.get("sameHashAs"):
            continue
        assert result["contentHash"] not in hashes.values(), f"{case} hashes like another case"
        hashes[case] = result["contentHash"]


# --------------------------------------------------------------------------- the shape


def test_content_hash_is_sha256_of_canonical_json():
    import hashlib
    value = {"b": [1, "é"], "a": {"y": None, "x": True}}
    text = '{"a":{"x":true,"y":null},"b":[1,"é"]}'
    assert content_hash(value) == hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_normalized_shape_for_a_device_configuration():
    normalized = run(load_input("deviceConfigurations-windows10-general"))["normalized"]
    assert normalized["odataType"] == "#microsoft.graph.windows10GeneralConfiguration"
    assert normalized["platform"] == "windows10"
    assert normalized["scopeTagIds"] == ["0"]
    assert "description" not in normalized  # null
    settings_ = normalized["settings"]
    assert settings_["defenderDetectedMalwareActions.highSeverity"] == "remove"
    assert settings_["defenderFileExtensionsToExclude"] == ["log", "tmp"]
    assert settings_["featureUpdatesPauseExpiryDateTime"] == "2024-07-01T00:00:00Z"  # a real setting, kept
    assert not any(key in VOLATILE_KEYS or key.split(".")[-1] in VOLATILE_KEYS for key in settings_)
    assert not any("@" in key and not key.endswith("@odata.type") for key in settings_)
    assert "startMenuLayoutXml" not in settings_ and "defenderProcessesToExclude" not in settings_
    assert all("id" not in item for item in settings_["privacyAccessControls"])
    assert normalized["assignments"] == [
        {"target": "allLicensedUsers", "source": "policySets", "sourceId": "7a7a7a7a-1b1b-4c2c-8d3d-4e4e4e4e4e4e"},
        {"target": "group", "groupId": "6f1c2a9e-4b7d-4e2a-9c1b-2d3e4f5a6b01",
         "filterId": "5e4d3c2b-1a09-4f8e-9d7c-6b5a49382704", "filterType": "exclude"},
    ]


def test_settings_catalog_tree_is_flattened_by_setting_definition_id():
    normalized = run(load_input("settingsCatalog-windows-defender-bitlocker"))["normalized"]
    assert normalized["displayName"] == "  WIN - Defender & BitLocker baseline "  # content: kept as written
    assert normalized["platform"] == "windows10"
    assert normalized["properties"] == {"technologies": "mdm"}
    assert normalized["scopeTagIds"] == ["0", "12"]
    assert "templateFamily" not in normalized
    settings_ = normalized["settings"]
    bitlocker = "device_vendor_msft_bitlocker_systemdrivesrequirestartupauthentication"
    assert settings_[bitlocker] == bitlocker + "_1"
    assert settings_[bitlocker + "_minimumpinlength"] == 6  # a child of the choice, flattened next to it
    assert settings_["device_vendor_msft_policy_config_defender_avgcpuloadfactor"] == 50  # int stays int
    assert settings_["device_vendor_msft_policy_config_defender_excludedextensions"] == [".log", ".tmp"]
    assert "device_vendor_msft_policy_config_defender_signatureupdatefallbackorder" not in settings_  # ""
    assert [a["target"] for a in normalized["assignments"]] == ["allDevices", "exclusionGroup", "group"]
    assert normalized["assignments"][0] == {"target": "allDevices"}  # zero GUID with filter type none


def test_group_collections_single_instance_flattens_and_several_become_a_sorted_list():
    normalized = run(load_input("settingsCatalog-group-collections"))["normalized"]
    settings_ = normalized["settings"]
    asr = "device_vendor_msft_policy_config_defender_attacksurfacereductionrules"
    assert asr not in settings_
    assert settings_[asr + "_blockexecutablecontentfromemailclientandwebmail"].endswith("_block")
    rules = settings_["vendor_msft_firewall_mdmstore_firewallrules_{firewallrulename}"]
    # sorted by canonical JSON: the "…_action_type_0" rule before the "…_action_type_1" one
    assert [rule["vendor_msft_firewall_mdmstore_firewallrules_{firewallrulename}_name"] for rule in rules] == \
        ["Block SMB out", "Allow HTTPS in"]
    assert rules == sorted(rules, key=lambda rule: json.dumps(rule, sort_keys=True, separators=(",", ":")))
    assert rules[0]["vendor_msft_firewall_mdmstore_firewallrules_{firewallrulename}_localportranges"] == ["139", "445"]
    assert settings_["device_vendor_msft_laps_policies_passwordagedays_aad"] == 30
    assert settings_["device_vendor_msft_laps_policies_administratoraccountname"] == SECRET_PLACEHOLDER
    assert normalized["assignments"] == []  # fetched, none


def test_templates_keep_their_family_and_id_but_not_their_display_names():
    normalized = run(load_input("settingsCatalog-endpoint-security-antivirus"))["normalized"]
    assert normalized["templateFamily"] == "endpointSecurityAntivirus"
    assert normalized["properties"] == {"technologies": "mdm,microsoftSense",
                                        "templateReference.templateId": "804339ad-1553-4478-a742-138fb5807418_1"}
    assert "assignments" not in normalized  # not fetched


def test_secrets_are_never_stored():
    for case in ("settingsCatalog-macos-payloads", "settingsCatalog-group-collections",
                 "deviceConfigurations-windows10-custom-oma"):
        text = json.dumps(run(load_input(case))["normalized"])
        for secret in ("ZW5jcnlwdGVkLXRva2Vu", "c2VjcmV0LXRva2VuLTk4NzY1", "MIIBxQYJKoZIhvcNAQcDoIIBtjCCAbICAQAx",
                       "secretReferenceValueId", "1a2b3c4d-aaaa"):
            assert secret not in text, (case, secret)
        assert SECRET_PLACEHOLDER in text


def test_ordered_lists_keep_their_order_and_others_are_sorted():
    normalized = run(load_input("deviceConfigurations-ios-home-screen"))["normalized"]["settings"]
    assert [icon["displayName"] for icon in normalized["homeScreenDockIcons"]] == ["Phone", "Mail", "Safari"]
    page = normalized["homeScreenPages"][0]
    assert [icon["displayName"] for icon in page["icons"]] == ["Teams", "Work", "Authenticator"]
    assert [app["displayName"] for app in page["icons"][1]["pages"][0]["apps"]] == ["Word", "Excel"]
    assert [item["appName"] for item in normalized["notificationSettings"]] == ["Teams", "Mail"]  # "banner" < "none"
    reordered = copy.deepcopy(load_input("deviceConfigurations-ios-home-screen"))
    reordered["raw"]["homeScreenDockIcons"].reverse()
    assert run(reordered)["contentHash"] != run(load_input("deviceConfigurations-ios-home-screen"))["contentHash"]


def test_platform_comes_from_the_family_then_the_object_then_the_type():
    assert run(load_input("iosAppProtection-corporate-data"))["normalized"]["platform"] == "iOS"
    assert run(load_input("androidAppProtection-corporate-data"))["normalized"]["platform"] == "android"
    assert run(load_input("assignmentFilters-corporate-windows"))["normalized"]["platform"] == "windows10AndLater"
    assert run(load_input("settingsCatalog-macos-payloads"))["normalized"]["platform"] == "macOS"
    assert run(load_input("compliancePolicies-ios"))["normalized"]["platform"] == "iOS"
    assert run(load_input("groups-microsoft365"))["normalized"]["platform"] is None
    family = FAMILIES_BY_KEY["deviceConfigurations"]
    for odata_type, platform in [("#microsoft.graph.macOSCustomConfiguration", "macOS"),
                                 ("#microsoft.graph.androidWorkProfileGeneralDeviceConfiguration", "androidWorkProfile"),
                                 ("#microsoft.graph.androidGeneralDeviceConfiguration", "android"),
                                 ("#microsoft.graph.windowsUpdateForBusinessConfiguration", "windows10"),
                                 ("#microsoft.graph.windowsPhone81GeneralConfiguration", "windowsPhone81"),
                                 ("#microsoft.graph.windows81GeneralConfiguration", "windows81"),
                                 ("#microsoft.graph.unsupportedDeviceConfiguration", None)]:
        assert normalize_object(family, {"@odata.type": odata_type})["platform"] == platform


def test_inventory_noise_is_dropped():
    group = run(load_input("groups-dynamic-devices"))["normalized"]
    assert "members@delta" not in group["settings"] and "renewedDateTime" not in group["settings"]
    assert group["settings"]["membershipRuleProcessingState"] == "On"
    filt = run(load_input("assignmentFilters-corporate-windows"))["normalized"]
    assert "payloads" not in filt["settings"] and filt["scopeTagIds"] == ["0"]
    role = run(load_input("roleDefinitions-intune-administrator"))["normalized"]
    assert role["settings"]["inheritsPermissionsFrom"] == [{"id": "88d8e3e3-8f55-4a1e-953a-9b9898b8876b"}]
    assert "version" not in role["settings"]


def test_related_overrides_inline_relations():
    family = FAMILIES_BY_KEY["deviceConfigurations"]
    raw = {"displayName": "x", "assignments": [{"target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"}}]}
    assert normalize_object(family, raw)["assignments"] == [{"target": "allDevices"}]
    assert normalize_object(family, raw, {"assignments": []})["assignments"] == []
    assert "assignments" not in normalize_object(family, {"displayName": "x"})


def test_other_assignment_targets_keep_their_properties():
    assert normalize_assignments([
        {"id": "x", "source": "direct", "target": {
            "@odata.type": "#microsoft.graph.configurationManagerCollectionAssignmentTarget", "collectionId": "SMS00001",
            "deviceAndAppManagementAssignmentFilterType": "none", "deviceAndAppManagementAssignmentFilterId": "f"}},
        {"target": {"@odata.type": "microsoft.graph.scopeTagGroupAssignmentTarget", "targetType": "user",
                    "entraObjectId": "u1"}, "intent": "remove"},
    ]) == [{"collectionId": "SMS00001", "target": "configurationManagerCollection"},
           {"entraObjectId": "u1", "intent": "remove", "target": "scopeTagGroup", "targetType": "user"}]


def test_catalog_value_is_read_even_when_the_instance_type_disagrees():
    family = FAMILIES_BY_KEY["settingsCatalog"]
    tree = [{"settingInstance": {"@odata.type": "#microsoft.graph.deviceManagementConfigurationChoiceSettingInstance",
                                 "settingDefinitionId": "a", "simpleSettingValue": {"value": 3}}},
            {"settingInstance": {"@odata.type": "#microsoft.graph.deviceManagementConfigurationFutureSettingInstance",
                                 "settingDefinitionId": "b", "futureSettingValue": {"value": "x", "id": "drop"}}},
            {"settingInstance": {"settingDefinitionId": "c", "choiceSettingValue": None}}]
    assert normalize_object(family, {}, {"settings": tree})["settings"] == {"a": 3, "b": {"futureSettingValue": {"value": "x"}}}


def test_normalize_does_not_modify_its_input():
    data = load_input("settingsCatalog-group-collections")
    before = copy.deepcopy(data)
    normalize_object(FAMILIES_BY_KEY[data["family"]], data["raw"], data["related"])
    assert data == before


# --------------------------------------------------------------------------- noise and real changes


def _general():
    data = load_input("deviceConfigurations-windows10-general")
    return data["raw"], data["related"]


def _catalog():
    data = load_input("settingsCatalog-group-collections")
    return data["raw"], data["related"]


def _setting(related: dict, definition: str) -> dict:
    return next(item["settingInstance"] for item in related["settings"]
                if item["settingInstance"]["settingDefinitionId"] == definition)


FW = "vendor_msft_firewall_mdmstore_firewallrules_{firewallrulename}"
LAPS = "device_vendor_msft_laps_policies"


def _noise_general(raw, related):
    raw["id"] = "another-id"
    raw["createdDateTime"] = raw["lastModifiedDateTime"] = "2030-01-01T00:00:00Z"
    raw["version"] = 77
    raw["@odata.etag"] = 'W/"1"'
    raw["passwordExpirationDays"] = ""
    raw.pop("networkProxyServer")
    raw["newButUnsetProperty"] = None
    raw["emptyObject"] = {}
    raw["edgeHomepageUrls"].reverse()
    raw["privacyAccessControls"].reverse()
    for item in raw["privacyAccessControls"]:
        item["id"] = item["id"] + "-x"
    related["assignments"].reverse()
    for item in related["assignments"]:
        item["id"] = "z" + item["id"]


def _noise_catalog(raw, related):
    raw.update(settingCount=1, isAssigned=True, lastModifiedDateTime="2031-01-01T00:00:00Z")
    related["settings"].reverse()
    for index, item in enumerate(related["settings"]):
        item["id"] = str(100 + index)
        item["settingDefinitions"] = [{"id": item["settingInstance"]["settingDefinitionId"]}]
    rules = _setting(related, FW)["groupSettingCollectionValue"]
    rules.reverse()
    for rule in rules:
        rule["children"].reverse()
        rule["settingValueTemplateReference"] = {"settingValueTemplateId": "abc", "useTemplateDefault": False}
    laps = _setting(related, LAPS)
    laps["settingInstanceTemplateReference"] = {"settingInstanceTemplateId": "tmpl"}
    secret = laps["groupSettingValue"]["children"][1]["simpleSettingValue"]
    secret["value"] = "YW5vdGhlci10b2tlbg=="  # a fresh encrypted token for the same secret


NOISE = [
    ("deviceConfigurations", _general, _noise_general),
    ("settingsCatalog", _catalog, _noise_catalog),
    ("iosAppProtection", lambda: (load_input("iosAppProtection-corporate-data")["raw"],
                                  load_input("iosAppProtection-corporate-data")["related"]),
     lambda raw, related: raw.update(version='"9f00c9a4-0000-0d00-0000-777777770000"', id="T_other",
                                     deployedAppCount=3, isAssigned=False,
                                     exemptedUniversalLinks=sorted(raw["exemptedUniversalLinks"], reverse=True))),
    ("groups", lambda: (load_input("groups-dynamic-devices")["raw"], None),
     lambda raw, related: raw.update(renewedDateTime="2031-01-01T00:00:00Z", onPremisesLastSyncDateTime="2031-01-01T00:00:00Z",
                                     **{"members@delta": [], "@removed": None})),
    ("assignmentFilters", lambda: (load_input("assignmentFilters-corporate-windows")["raw"], None),
     lambda raw, related: raw.update(payloads=[], lastModifiedDateTime="2031-01-01T00:00:00Z")),
    ("roleDefinitions", lambda: (load_input("roleDefinitions-intune-administrator")["raw"], None),
     lambda raw, related: (raw.update(version="2"), raw["rolePermissions"][0]["allowedResourceActions"].reverse())),
]


@pytest.mark.parametrize("family_key,base,noise", NOISE, ids=[item[0] for item in NOISE])
def test_noise_only_changes_keep_the_hash(family_key, base, noise):
    raw, related = base()
    before = hash_of(family_key, copy.deepcopy(raw), copy.deepcopy(related))
    noise(raw, related)
    assert hash_of(family_key, raw, related) == before


REAL_CHANGES = {
    "device setting value": ("deviceConfigurations", _general,
                             lambda raw, related: raw.update(passwordMinimumLength=12)),
    "device nested setting": ("deviceConfigurations", _general,
                              lambda raw, related: raw["defenderDetectedMalwareActions"].update(lowSeverity="quarantine")),
    "device list member added": ("deviceConfigurations", _general,
                                 lambda raw, related: raw["defenderFileExtensionsToExclude"].append("bak")),
    "device false to missing": ("deviceConfigurations", _general, lambda raw, related: raw.pop("passwordBlockSimple")),
    "int to string": ("deviceConfigurations", _general, lambda raw, related: raw.update(defenderScanMaxCpu="50")),
    "description": ("deviceConfigurations", _general, lambda raw, related: raw.update(description="now described")),
    "scope tag added": ("deviceConfigurations", _general, lambda raw, related: raw["roleScopeTagIds"].append("5")),
    "assignment added": ("deviceConfigurations", _general, lambda raw, related: related["assignments"].append(
        {"id": "new", "target": {"@odata.type": "#microsoft.graph.exclusionGroupAssignmentTarget",
                                 "groupId": "0d9c8b7a-6f5e-4d3c-bb2a-190817263503"}})),
    "assignment removed": ("deviceConfigurations", _general, lambda raw, related: related["assignments"].pop()),
    "filter changed": ("deviceConfigurations", _general, lambda raw, related: related["assignments"][0]["target"].update(
        deviceAndAppManagementAssignmentFilterId="11111111-2222-4333-8444-555555555555")),
    "filter mode changed": ("deviceConfigurations", _general, lambda raw, related: related["assignments"][0]["target"].update(
        deviceAndAppManagementAssignmentFilterType="include")),
    "filter removed": ("deviceConfigurations", _general, lambda raw, related: related["assignments"][0]["target"].update(
        deviceAndAppManagementAssignmentFilterType="none")),
    "include became exclude": ("deviceConfigurations", _general, lambda raw, related: related["assignments"][0]["target"].update(
        {"@odata.type": "#microsoft.graph.exclusionGroupAssignmentTarget"})),
    "catalog nested child": ("settingsCatalog", _catalog, lambda raw, related: _setting(related, LAPS)[
        "groupSettingValue"]["children"][0]["choiceSettingValue"]["children"][0]["simpleSettingValue"].update(value=60)),
    "catalog child of a group instance": ("settingsCatalog", _catalog, lambda raw, related: _setting(related, FW)[
        "groupSettingCollectionValue"][1]["children"][1]["choiceSettingValue"].update(value=FW + "_direction_in")),
    "catalog group instance added": ("settingsCatalog", _catalog, lambda raw, related: _setting(related, FW)[
        "groupSettingCollectionValue"].append(copy.deepcopy(_setting(related, FW)["groupSettingCollectionValue"][0]))),
    "catalog collection member": ("settingsCatalog", _catalog, lambda raw, related: _setting(
        related, "device_vendor_msft_policy_config_defender_attacksurfacereductionrules")[
        "groupSettingCollectionValue"][0]["children"][2]["simpleSettingCollectionValue"].pop()),
    "catalog choice value": ("settingsCatalog", _catalog, lambda raw, related: _setting(related, LAPS)[
        "groupSettingValue"]["children"][0]["choiceSettingValue"].update(value=LAPS + "_backupdirectory_2")),
    "catalog name": ("settingsCatalog", _catalog, lambda raw, related: raw.update(name="Renamed")),
    "catalog secret set or cleared": ("settingsCatalog", _catalog, lambda raw, related: _setting(related, LAPS)[
        "groupSettingValue"]["children"][1]["simpleSettingValue"].update(value=None)),
    "catalog assignment added": ("settingsCatalog", _catalog, lambda raw, related: related["assignments"].append(
        {"target": {"@odata.type": "#microsoft.graph.allLicensedUsersAssignmentTarget"}})),
    "catalog platform": ("settingsCatalog", _catalog, lambda raw, related: raw.update(platforms="windows10X")),
    "filter rule": ("assignmentFilters", lambda: (load_input("assignmentFilters-corporate-windows")["raw"], None),
                    lambda raw, related: raw.update(rule=raw["rule"].replace("Corporate", "Personal"))),
    "group rule": ("groups", lambda: (load_input("groups-dynamic-devices")["raw"], None),
                   lambda raw, related: raw.update(membershipRuleProcessingState="Paused")),
    "role action": ("roleDefinitions", lambda: (load_input("roleDefinitions-custom")["raw"], None),
                    lambda raw, related: raw["rolePermissions"][0]["allowedResourceActions"].append(
                        "microsoft.directory/devices/standard/update")),
    "role inherits": ("roleDefinitions", lambda: (load_input("roleDefinitions-intune-administrator")["raw"], None),
                      lambda raw, related: raw["inheritsPermissionsFrom"].append({"id": "another-role"})),
    "scope tag description": ("scopeTags", lambda: (load_input("scopeTags-helpdesk")["raw"], None),
                              lambda raw, related: raw.update(description="Other")),
    "app protection pin": ("androidAppProtection", lambda: (load_input("androidAppProtection-corporate-data")["raw"],
                                                            load_input("androidAppProtection-corporate-data")["related"]),
                           lambda raw, related: raw.update(pinRequired=False)),
    "app protection app added": ("androidAppProtection",
                                 lambda: (load_input("androidAppProtection-corporate-data")["raw"], None),
                                 lambda raw, related: raw["apps"].append({"id": "x", "mobileAppIdentifier": {
                                     "@odata.type": "#microsoft.graph.androidMobileAppIdentifier",
                                     "packageId": "com.microsoft.office.word"}})),
    "compliance grace period": ("compliancePolicies", lambda: (load_input("compliancePolicies-ios")["raw"], None),
                                lambda raw, related: raw["scheduledActionsForRule"][0][
                                    "scheduledActionConfigurations"][0].update(gracePeriodHours=24)),
}


@pytest.mark.parametrize("name", sorted(REAL_CHANGES))
def test_each_real_change_gives_a_different_hash(name):
    family_key, base, change = REAL_CHANGES[name]
    raw, related = base()
    before = hash_of(family_key, copy.deepcopy(raw), copy.deepcopy(related))
    change(raw, related)
    assert hash_of(family_key, raw, related) != before


def test_fetched_empty_assignments_differ_from_not_fetched():
    raw, _ = _general()
    assert hash_of("deviceConfigurations", raw, {"assignments": []}) != hash_of("deviceConfigurations", raw)


# --------------------------------------------------------------------------- hostile input


def _deep_dict(levels: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(levels):
        value = {"n": value}
    return value


def _deep_list(levels: int) -> list:
    value: list = [1]
    for _ in range(levels):
        value = [value]
    return value


def _deep_catalog(levels: int) -> list:
    instance = {"settingDefinitionId": "leaf", "simpleSettingValue": {"value": 1}}
    for level in range(levels):
        instance = {"settingDefinitionId": f"s{level}", "choiceSettingValue": {"value": "v", "children": [instance]}}
    return [{"settingInstance": instance}]


def _cycle() -> dict:
    value: dict = {"displayName": "loop"}
    value["self"] = value
    return value


DC, SC = "deviceConfigurations", "settingsCatalog"
HOSTILE = {
    "raw is a list": (DC, [], None),
    "raw is null": (DC, None, None),
    "raw is a string": (DC, "x", None),
    "related is a list": (DC, {}, []),
    "unknown relation": (DC, {}, {"settings": []}),
    "relation of another family": (FAMILIES_BY_KEY["groups"].key, {}, {"assignments": []}),
    "settings is an object": (SC, {}, {"settings": {"value": []}}),
    "settings item is a number": (SC, {}, {"settings": [1]}),
    "settings item without instance": (SC, {}, {"settings": [{"id": "0"}]}),
    "instance without definition id": (SC, {}, {"settings": [{"settingInstance": {"choiceSettingValue": {"value": "x"}}}]}),
    "definition id is a number": (SC, {}, {"settings": [{"settingInstance": {"settingDefinitionId": 5}}]}),
    "choice value is a list": (SC, {}, {"settings": [{"settingInstance": {
        "settingDefinitionId": "a", "choiceSettingValue": []}}]}),
    "choice of a choice is an object": (SC, {}, {"settings": [{"settingInstance": {
        "settingDefinitionId": "a", "choiceSettingValue": {"value": {"x": 1}}}}]}),
    "children is an object": (SC, {}, {"settings": [{"settingInstance": {
        "settingDefinitionId": "a", "choiceSettingValue": {"value": "x", "children": {}}}}]}),
    "child is a string": (SC, {}, {"settings": [{"settingInstance": {
        "settingDefinitionId": "a", "groupSettingValue": {"children": ["b"]}}}]}),
    "simple value is a list": (SC, {}, {"settings": [{"settingInstance": {
        "settingDefinitionId": "a", "simpleSettingValue": {"value": [1]}}}]}),
    "collection is an object": (SC, {}, {"settings": [{"settingInstance": {
        "settingDefinitionId": "a", "simpleSettingCollectionValue": {"value": 1}}}]}),
    "collection item is a number": (SC, {}, {"settings": [{"settingInstance": {
        "settingDefinitionId": "a", "groupSettingCollectionValue": [1]}}]}),
    "deep catalog tree": (SC, {}, {"settings": _deep_catalog(200)}),
    "deep object": (DC, {"displayName": "x", "p": _deep_dict(10_000)}, None),
    "deep list": (DC, {"displayName": "x", "p": _deep_list(10_000)}, None),
    "a cycle": (DC, _cycle(), None),
    "too many keys": (DC, {f"k{i}": i for i in range(MAX_NODES + 1)}, None),
    "too many items": (DC, {"p": list(range(MAX_NODES + 1))}, None),
    "non-string key": (DC, {1: "x"}, None),
    "non-string nested key": (DC, {"p": {(1, 2): "x"}}, None),
    "NaN": (DC, {"p": math.nan}, None),
    "infinity": (DC, {"p": [math.inf]}, None),
    "lone surrogate": (DC, {"p": "\ud800"}, None),
    "NUL in a string": (DC, {"p": "a\x00b"}, None),
    "NUL in a key": (DC, {"a\x00": 1}, None),
    "a set": (DC, {"p": {1, 2}}, None),
    "bytes": (DC, {"p": b"x"}, None),
    "an object": (DC, {"p": object()}, None),
    "displayName is a number": (DC, {"displayName": 5}, None),
    "description is a list": (DC, {"description": ["x"]}, None),
    "@odata.type is a number": (DC, {"@odata.type": 5}, None),
    "nested @odata.type is empty": (DC, {"p": {"@odata.type": "  ", "x": 1}}, None),
    "scope tags is a string": (DC, {"roleScopeTagIds": "0"}, None),
    "scope tag is an object": (DC, {"roleScopeTagIds": [{"id": "0"}]}, None),
    "assignments is an object": (DC, {}, {"assignments": {"value": []}}),
    "assignment is a string": (DC, {}, {"assignments": ["group"]}),
    "assignment without target": (DC, {}, {"assignments": [{"id": "x"}]}),
    "target without type": (DC, {}, {"assignments": [{"target": {"x": 1}}]}),
    "group id is a number": (DC, {}, {"assignments": [{"target": {
        "@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": 5}}]}),
    "filter type is a list": (DC, {}, {"assignments": [{"target": {
        "@odata.type": "#microsoft.graph.groupAssignmentTarget", "deviceAndAppManagementAssignmentFilterType": []}}]}),
    "platforms is a list": (SC, {"platforms": ["windows10"]}, None),
    "templateFamily is a number": (SC, {"templateReference": {"templateFamily": 1}}, None),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_input_raises_normalize_error(name):
    family_key, raw, related = HOSTILE[name]
    with pytest.raises(NormalizeError) as raised:
        normalize_object(FAMILIES_BY_KEY[family_key], raw, related)
    assert 0 < len(str(raised.value)) <= 160


def test_depth_limit_allows_real_depth_and_refuses_more():
    family = FAMILIES_BY_KEY["deviceConfigurations"]
    normalize_object(family, {"p": _deep_dict(MAX_DEPTH - 3)})
    with pytest.raises(NormalizeError, match="deeper"):
        normalize_object(family, {"p": _deep_dict(MAX_DEPTH + 1)})


def test_hostile_family_and_hash_inputs():
    with pytest.raises(NormalizeError):
        normalize_object("deviceConfigurations", {})  # type: ignore[arg-type]
    with pytest.raises(NormalizeError):
        display_name_of(FAMILIES_BY_KEY["groups"], ["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(NormalizeError):
        content_hash({"x": object()})
    with pytest.raises(NormalizeError):
        content_hash({"x": math.nan})
    with pytest.raises(NormalizeError):
        content_hash({"x": "\udc00"})
    with pytest.raises(NormalizeError):
        normalize_assignments({"value": []})


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                         st.text(max_size=8))
json_like = st.recursive(json_scalars, lambda children: st.one_of(
    st.lists(children, max_size=4),
    st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(
        ["id", "@odata.type", "value", "children", "settingDefinitionId", "choiceSettingValue", "simpleSettingValue",
         "groupSettingCollectionValue", "target", "groupId", "settingInstance"])), children, max_size=4)),
    max_leaves=30)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(family=st.sampled_from([family.key for family in FAMILIES]), raw=json_like, settings_tree=json_like,
       assignments=json_like)
def test_any_json_either_normalizes_or_raises_normalize_error(family, raw, settings_tree, assignments):
    family_ = FAMILIES_BY_KEY[family]
    related = {relation: value for relation, value in
               (("settings", settings_tree), ("assignments", assignments)) if relation in family_.per_object}
    for args in ((raw, None), (raw, related), ({"displayName": "x"}, related)):
        try:
            normalized = normalize_object(family_, *args)
        except NormalizeError:
            continue
        content_hash(normalized)
        json.dumps(normalized, allow_nan=False)
    if isinstance(raw, dict):
        assert isinstance(display_name_of(family_, raw), str)


@settings(max_examples=100, deadline=None)
@given(st.randoms(use_true_random=False))
def test_shuffling_every_unordered_list_keeps_the_hash(random):
    data = load_input("settingsCatalog-group-collections")
    other = load_input("compliancePolicies-ios")

    def shuffle(value, ordered=False):
        if isinstance(value, dict):
            items = list(value.items())
            random.shuffle(items)
            return {key: shuffle(item, ordered) for key, item in items}
        if isinstance(value, list):
            items = [shuffle(item, ordered) for item in value]
            random.shuffle(items)
            return items
        return value

    for case in (data, other):
        family = FAMILIES_BY_KEY[case["family"]]
        expected = content_hash(normalize_object(family, case["raw"], case.get("related")))
        assert content_hash(normalize_object(family, shuffle(case["raw"]), shuffle(case.get("related")))) == expected


# --------------------------------------------------------------------------- display_name_of


def test_display_name_of():
    catalog, groups = FAMILIES_BY_KEY["settingsCatalog"], FAMILIES_BY_KEY["groups"]
    assert display_name_of(catalog, {"name": "  Baseline\n v2 ", "displayName": "ignored"}) == "Baseline v2"
    assert display_name_of(catalog, {"displayName": "Fallback"}) == "Fallback"
    assert display_name_of(groups, {"displayName": "   ", "name": "Second"}) == "Second"
    assert display_name_of(groups, {"displayName": 5}) == UNNAMED
    assert display_name_of(groups, {}) == UNNAMED
    assert display_name_of(groups, {"displayName": "a\x00b\x1bc"}) == "a b c"
    assert display_name_of(groups, {"displayName": "x\ud800y"}) == "x?y"
    long = display_name_of(groups, {"displayName": "é" * 1000})
    assert len(long) == MAX_NAME_LENGTH and long.endswith("…")
    assert display_name_of(groups, {"displayName": "a" * MAX_NAME_LENGTH}) == "a" * MAX_NAME_LENGTH


# --------------------------------------------------------------------------- snapshot_diff


def rows_by_path(rows: list[DiffRow]) -> dict[str, tuple[str | None, str | None, str]]:
    return {row.path: (row.left, row.right, row.status) for row in rows}


def test_snapshot_diff_of_equal_snapshots_is_all_same():
    snapshot = run(load_input("settingsCatalog-group-collections"))["normalized"]
    rows = snapshot_diff(snapshot, copy.deepcopy(snapshot))
    assert rows and {row.status for row in rows} == {"same"}


def test_snapshot_diff_paths_and_set_semantics():
    left = {"displayName": "Policy", "platform": "windows10", "scopeTagIds": ["0", "5"],
            "settings": {"a_setting": 1, "urls": ["https://a", "https://b"], "gone": True},
            "assignments": [{"target": "group", "groupId": "g1"},
                            {"target": "exclusionGroup", "groupId": "g2"}]}
    right = {"displayName": "Policy v2", "description": "now described", "platform": "windows10", "scopeTagIds": ["0", "7"],
             "settings": {"a_setting": 2, "urls": ["https://b", "https://c"], "new": "x"},
             "assignments": [{"target": "group", "groupId": "g1", "filterId": "f1", "filterType": "include"},
                             {"target": "allDevices"}]}
    rows = snapshot_diff(left, right)
    by_path = rows_by_path(rows)
    assert by_path == {
        "Name": ("Policy", "Policy v2", "changed"),
        "Description": (None, "now described", "added"),
        "Platform": ("windows10", "windows10", "same"),
        "Scope tags › 0": ("0", "0", "same"),
        "Scope tags › 5": ("5", None, "removed"),
        "Scope tags › 7": (None, "7", "added"),
        "Settings › a_setting": ("1", "2", "changed"),
        "Settings › gone": ("true", None, "removed"),
        "Settings › new": (None, "x", "added"),
        "Settings › urls › https://a": ("https://a", None, "removed"),
        "Settings › urls › https://b": ("https://b", "https://b", "same"),
        "Settings › urls › https://c": (None, "https://c", "added"),
        "Assignments › all devices": (None, "no filter", "added"),
        "Assignments › exclude group g2": ("no filter", None, "removed"),
        "Assignments › include group g1": ("no filter", "include filter f1", "changed"),
    }
    order = [row.path.split(" › ")[0] for row in rows]
    assert order == sorted(order, key=["Name", "Description", "Platform", "Scope tags", "Settings", "Assignments"].index)


def test_snapshot_diff_of_normalized_versions_shows_only_real_changes():
    data = load_input("settingsCatalog-windows-defender-bitlocker")
    noisy = load_input("settingsCatalog-noise-only")
    family = FAMILIES_BY_KEY["settingsCatalog"]
    left = normalize_object(family, data["raw"], data["related"])
    right = normalize_object(family, noisy["raw"], noisy["related"])
    assert {row.status for row in snapshot_diff(left, right)} == {"same"}

    changed = copy.deepcopy(data)
    changed["related"]["settings"][3]["settingInstance"]["choiceSettingValue"]["children"][2][
        "simpleSettingValue"]["value"] = 8
    changed["related"]["assignments"][1]["target"]["@odata.type"] = "#microsoft.graph.groupAssignmentTarget"
    right = normalize_object(family, changed["raw"], changed["related"])
    differing = {row.path: (row.left, row.right, row.status)
                 for row in snapshot_diff(left, right) if row.status != "same"}
    assert differing == {
        "Settings › device_vendor_msft_bitlocker_systemdrivesrequirestartupauthentication_minimumpinlength":
            ("6", "8", "changed"),
        "Assignments › exclude group a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c02": ("no filter", None, "removed"),
        "Assignments › include group a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c02": (None, "no filter", "added"),
    }


def test_snapshot_diff_pairs_list_items_by_name():
    left = {"settings": {"rules": [{"x_name": "Allow HTTPS", "port": ["443"]}, {"x_name": "Block SMB", "port": ["445"]}],
                         "oma": [{"omaUri": "./A", "value": 1}, {"omaUri": "./A", "value": 2}]}}
    right = {"settings": {"rules": [{"x_name": "Allow HTTPS", "port": ["443", "8443"]}, {"x_name": "Block SMB", "port": ["445"]}],
                          "oma": [{"omaUri": "./A", "value": 1}]}}
    rows = snapshot_diff(left, right)
    statuses = [(row.path, row.status) for row in rows]
    assert ("Settings › rules › Allow HTTPS", "changed") in statuses
    assert ("Settings › rules › Block SMB", "same") in statuses
    assert sorted(status for path, status in statuses if path == "Settings › oma › ./A") == ["removed", "same"]


def test_snapshot_diff_reads_older_raw_snapshots_without_noise():
    left = {"@odata.type": "#microsoft.graph.windows10GeneralConfiguration", "id": "p1", "displayName": "Restrictions",
            "description": "", "version": 1, "roleScopeTagIds": ["0"], "lastModifiedDateTime": "2024-01-01T00:00:00Z",
            "passwordMinimumLength": 8, "defenderDetectedMalwareActions": {"highSeverity": "remove", "id": "x"},
            "networkProxyServer": None,
            "assignments": [{"id": "a1", "target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "G1",
                                                    "deviceAndAppManagementAssignmentFilterType": "none"}}]}
    right = dict(left, id="p1", version=2, lastModifiedDateTime="2024-02-01T00:00:00Z", passwordMinimumLength=12,
                 description=None, networkProxyServer="")
    rows = rows_by_path(snapshot_diff(left, right))
    assert {path for path, (_, _, status) in rows.items() if status != "same"} == {"Settings › passwordMinimumLength"}
    assert rows["Type"][2] == "same" and rows["Scope tags › 0"][2] == "same"
    assert rows["Settings › defenderDetectedMalwareActions.highSeverity"][2] == "same"
    assert rows["Assignments › include group g1"] == ("no filter", "no filter", "same")
    assert not [path for path in rows if any(word in path for word in ("version", "lastModified", " id", ".id"))]


def test_snapshot_diff_of_non_objects_and_empties():
    assert snapshot_diff(None, None) == []
    assert snapshot_diff({}, {"settings": {}}) == []
    assert rows_by_path(snapshot_diff({"settings": {"a": 1}}, None)) == {"Settings › a": ("1", None, "removed")}
    assert rows_by_path(snapshot_diff({"settings": {"a": ["x"]}}, {"settings": {"a": "x"}})) == {
        "Settings › a": ('["x"]', "x", "changed")}


def test_settings_diff_still_flattens_by_index():
    rows = {row.path: row.status for row in settings_diff(
        {"a": 1, "b": {"c": [1, 2]}, "gone": True}, {"a": 2, "b": {"c": [1, 3]}, "new": "x"})}
    assert rows == {"a": "changed", "b.c[0]": "same", "b.c[1]": "changed", "gone": "removed", "new": "added"}


def test_family_objects_are_the_ones_in_the_table():
    assert all(isinstance(family, Family) for family in FAMILIES)
