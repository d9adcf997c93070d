"""Matching tenant policies to a baseline's by content, and what a comparison finds (no database)."""
from __future__ import annotations

from types import SimpleNamespace

from app.drift.baselines import TenantPolicy, compare, match_policies


def expected(item_id, name, settings, *, any_value=(), assignments=(), policy_type="deviceConfiguration",
             platform="windows10"):
    return SimpleNamespace(id=item_id, name=name, settings=settings, any_value=list(any_value),
                           expected_assignments=list(assignments), policy_type=policy_type, platform=platform)


def policy(policy_id, name, settings, policy_type="deviceConfiguration", platform="windows10"):
    return TenantPolicy(policy_id, policy_type, platform, name, settings)


BASELINE = SimpleNamespace(id=7, name="MSP Standard", version=3, severity="medium", report_extra=False)
BITLOCKER = {"encryption": "xtsAes256", "requireDeviceEncryption": True, "startupPin": "required"}
DEFENDER = {"realtime": True, "cloudProtection": "high", "sampleSubmission": "safe"}


def test_policies_match_by_content_whatever_their_names():
    items = [expected(1, "BitLocker", BITLOCKER), expected(2, "Defender", DEFENDER)]
    # Names swapped on purpose: content decides.
    tenant = [policy(10, "Defender", {**BITLOCKER, "startupPin": "optional"}), policy(11, "BitLocker", DEFENDER)]
    matched = match_policies(items, tenant)
    assert matched[1].id == 10 and matched[2].id == 11


def test_a_policy_of_another_family_or_with_other_settings_is_not_taken_for_it():
    items = [expected(1, "BitLocker", BITLOCKER)]
    assert match_policies(items, [policy(10, "BitLocker", BITLOCKER, platform="macOS")]) == {}
    assert match_policies(items, [policy(11, "BitLocker", {"somethingElse": 1})]) == {}
    # half of the keys present is enough to be the same policy, drifted
    assert match_policies(items, [policy(12, "X", {"encryption": "aes128", "startupPin": "no"})])[1].id == 12


def test_the_comparison_finds_deviations_missing_any_value_assignments_and_extras():
    items = [expected(1, "BitLocker", BITLOCKER, any_value=["startupPin"], assignments=["allDevices", "group"]),
             expected(2, "Defender", DEFENDER)]
    tenant = [policy(10, "BitLocker (renamed)", {"encryption": "aes128", "requireDeviceEncryption": True}),
              policy(12, "Kiosk lockdown", {"kiosk": True})]
    found = {f.key: f for f in compare(BASELINE, items, tenant, {10: {"allDevices"}})}
    setting = found["baseline:7:setting:1:encryption"]
    assert (setting.detail["expected"], setting.detail["actual"], setting.policy_id) == ("xtsAes256", "aes128", 10)
    assert setting.detail["policy"] == "BitLocker (renamed)" and setting.severity == "medium"
    assert found["baseline:7:setting:1:startupPin"].detail["expectedShown"] == "(any value)"
    assert found["baseline:7:assignment:1"].detail["missing"] == ["group"]
    assert found["baseline:7:missing:2"].severity == "high"
    assert not any(":extra:" in key for key in found)  # the baseline does not report extras

    reporting = SimpleNamespace(**{**vars(BASELINE), "report_extra": True})
    extra = [f for f in compare(reporting, items, tenant, {10: {"allDevices"}}) if ":extra:" in f.key]
    assert [(f.key, f.severity) for f in extra] == [("baseline:7:extra:12", "low")]


def test_a_compliant_tenant_has_no_finding():
    items = [expected(1, "BitLocker", BITLOCKER, assignments=["allDevices"])]
    assert compare(BASELINE, items, [policy(10, "Anything", dict(BITLOCKER))], {10: {"allDevices", "group"}}) == []
