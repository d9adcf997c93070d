"""Baselines: building, editing, assigning, and comparing a tenant with them.

MATCHING. A baseline policy is matched with a tenant policy by content, never by display
name: the same family (policy type and platform), then the candidate sharing the most of
the baseline policy's setting keys, then the most equal values; a name only breaks a tie.
At least half of the baseline policy's keys must be present, so a policy of the same
family that configures something else is not taken for it. Each tenant policy matches one
baseline policy at most (per baseline); a renamed policy keeps its match.

FINDINGS (subject keys under "baseline:<id>:"):
- missing policy (no candidate matches), one severity above the baseline's;
- setting deviating: expected vs actual per setting key ("any value" keys must merely exist);
- extra policy: a tenant policy of a family the baseline covers that matches nothing, when
  the baseline reports extras;
- assignment missing: a matched policy lacks an expected assignment kind ("allDevices",
  "group"...; group ids differ per tenant, so kinds are compared).

BUILDING. From a golden tenant's live policies, or from a completed or partial backup set of
a tenant of the workspace (all its policies or chosen items): a backup item's payload is
normalized as the sync engine normalizes what it reads, so both give the same expected
policies for the same Graph objects, and a baseline from an older backup keeps what the
tenant had then.

COST. One pass per tenant: the tenant's baselines with their policies (one statement), its
live policies (one), the assignments of their latest versions (one, only when a baseline
expects assignments). Nothing here reads another tenant, so the cost per tenant does not
grow with the number of tenants.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import timezone
from typing import Any

from sqlalchemy import func, or_, select

from app.backup.payloads import normalized_payload
from app.extensions import db
from app.graph.families import FAMILIES, STORE_POLICY
from app.graph.normalize import NormalizeError
from app.models import BackupItem, BackupPayload, BackupSet, Policy, PolicyVersion, Tenant
# The sync engine's rule for a policy's type (Settings Catalog or endpoint security): one rule for both sources.
from app.sync.engine import _policy_type
from app.operations_models import Baseline, BaselineAssignment, BaselinePolicy, BaselineVersion, TenantTag

from .findings import Desired, severity_above, subject_key

MISSING = object()  # a setting the tenant policy does not have


def baseline_prefix(baseline_id: int) -> str:
    return f"baseline:{baseline_id}:"


def shown(value: Any) -> str:
    """A setting's value as a finding and the matrix show it."""
    if value is MISSING:
        return "(not set)"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


# --- reading what applies to a tenant ----------------------------------------------------------------------


def baselines_of_tenant(tenant_id: int, workspace_id: int) -> dict[int, tuple[Baseline, list[BaselinePolicy]]]:
    """The baselines assigned to the tenant directly or through one of its tags, with their policies."""
    tag_ids = select(TenantTag.tag_id).where(TenantTag.tenant_id == tenant_id)
    assigned = select(BaselineAssignment.baseline_id).where(
        BaselineAssignment.workspace_id == workspace_id,
        or_(BaselineAssignment.tenant_id == tenant_id, BaselineAssignment.tag_id.in_(tag_ids)))
    rows = db.session.execute(
        select(Baseline, BaselinePolicy)
        .outerjoin(BaselinePolicy, (BaselinePolicy.baseline_id == Baseline.id)
                   & (BaselinePolicy.workspace_id == Baseline.workspace_id))
        .where(Baseline.workspace_id == workspace_id, Baseline.id.in_(assigned))
        .order_by(Baseline.id, BaselinePolicy.position, BaselinePolicy.id)).all()
    result: dict[int, tuple[Baseline, list[BaselinePolicy]]] = {}
    for baseline, policy in rows:
        entry = result.setdefault(baseline.id, (baseline, []))
        if policy is not None:
            entry[1].append(policy)
    return result


@dataclass
class TenantPolicy:
    id: int
    policy_type: str
    platform: str
    name: str
    settings: dict[str, Any]


def live_policies(tenant_id: int) -> list[TenantPolicy]:
    return [TenantPolicy(r.id, r.policy_type, r.platform, r.display_name, r.settings or {}) for r in db.session.execute(
        select(Policy.id, Policy.policy_type, Policy.platform, Policy.display_name, Policy.settings)
        .where(Policy.tenant_id == tenant_id, Policy.deleted_at.is_(None)).order_by(Policy.id))]


def assignment_kinds(tenant_id: int, policy_ids: list[int]) -> dict[int, set[str]]:
    """policy id -> the target kinds of its latest version's assignments (only that path is read)."""
    if not policy_ids:
        return {}
    latest = (select(PolicyVersion.policy_id, func.max(PolicyVersion.version_number).label("v"))
              .where(PolicyVersion.tenant_id == tenant_id, PolicyVersion.policy_id.in_(policy_ids))
              .group_by(PolicyVersion.policy_id).subquery())
    rows = db.session.execute(
        select(PolicyVersion.policy_id, PolicyVersion.snapshot["assignments"])
        .join(latest, (latest.c.policy_id == PolicyVersion.policy_id) & (latest.c.v == PolicyVersion.version_number))
        .where(PolicyVersion.tenant_id == tenant_id))
    kinds: dict[int, set[str]] = {}
    for policy_id, assignments in rows:
        kinds[policy_id] = {a.get("target") for a in assignments or [] if isinstance(a, dict) and a.get("target")}
    return kinds


# --- comparing ----------------------------------------------------------------------------------------------


def _score(expected: BaselinePolicy, candidate: TenantPolicy) -> tuple[int, int, int]:
    keys = expected.settings.keys() | set(expected.any_value)
    present = sum(1 for key in keys if key in candidate.settings)
    equal = sum(1 for key, value in expected.settings.items() if candidate.settings.get(key, MISSING) == value)
    return present, equal, int(candidate.name == expected.name)


def match_policies(expected: list[BaselinePolicy], policies: list[TenantPolicy]) -> dict[int, TenantPolicy]:
    """baseline policy id -> its tenant policy: the best-scoring pairs first, each side used once."""
    by_family: dict[tuple[str, str], list[TenantPolicy]] = {}
    for policy in policies:
        by_family.setdefault((policy.policy_type, policy.platform), []).append(policy)
    pairs = []
    for item in expected:
        keys = len(item.settings.keys() | set(item.any_value))
        needed = max(1, math.ceil(keys / 2))
        for candidate in by_family.get((item.policy_type, item.platform), ()):
            score = _score(item, candidate)
            if (keys and score[0] >= needed) or (not keys and score[2]):
                pairs.append((score, -candidate.id, item.id, candidate))
    pairs.sort(key=lambda pair: (pair[0], pair[1]), reverse=True)
    matched: dict[int, TenantPolicy] = {}
    taken: set[int] = set()
    for _score_, _order, item_id, candidate in pairs:
        if item_id in matched or candidate.id in taken:
            continue
        matched[item_id] = candidate
        taken.add(candidate.id)
    return matched


def compare(baseline: Baseline, expected: list[BaselinePolicy], policies: list[TenantPolicy],
            kinds: dict[int, set[str]]) -> list[Desired]:
    """The drift findings of one tenant against one baseline."""
    found: list[Desired] = []
    prefix = ("baseline", baseline.id)
    matched = match_policies(expected, policies)
    base = {"baseline": baseline.name, "baselineId": baseline.id, "baselineVersion": baseline.version}
    for item in expected:
        policy = matched.get(item.id)
        if policy is None:
            found.append(Desired(
                key=subject_key(*prefix, "missing", item.id), kind="drift", severity=severity_above(baseline.severity),
                title=f"Missing policy “{item.name}” (baseline {baseline.name})", baseline_id=baseline.id,
                detail={**base, "expectedPolicy": item.name, "deviation": "missing_policy"}))
            continue
        on_policy = {**base, "expectedPolicy": item.name, "policy": policy.name}
        any_value = set(item.any_value)
        for key, value in item.settings.items():
            if key in any_value:
                continue
            actual = policy.settings.get(key, MISSING)
            if actual != value:
                found.append(Desired(
                    key=subject_key(*prefix, "setting", item.id, key), kind="drift", severity=baseline.severity,
                    title=f"Setting {key} differs from baseline {baseline.name}", policy_id=policy.id,
                    baseline_id=baseline.id,
                    detail={**on_policy, "deviation": "setting", "setting": key, "expected": value,
                            "actual": None if actual is MISSING else actual,
                            "expectedShown": shown(value), "actualShown": shown(actual)}))
        for key in sorted(any_value):
            if key not in policy.settings:
                found.append(Desired(
                    key=subject_key(*prefix, "setting", item.id, key), kind="drift", severity=baseline.severity,
                    title=f"Setting {key} is not set (baseline {baseline.name} expects any value)",
                    policy_id=policy.id, baseline_id=baseline.id,
                    detail={**on_policy, "deviation": "setting", "setting": key, "expected": "any value",
                            "actual": None, "expectedShown": "(any value)", "actualShown": shown(MISSING)}))
        if item.expected_assignments:
            have = kinds.get(policy.id, set())
            lacking = sorted(set(item.expected_assignments) - have)
            if lacking:
                found.append(Desired(
                    key=subject_key(*prefix, "assignment", item.id), kind="drift", severity=baseline.severity,
                    title=f"Policy “{policy.name}” is not assigned as baseline {baseline.name} expects",
                    policy_id=policy.id, baseline_id=baseline.id,
                    detail={**on_policy, "deviation": "assignment", "expected": sorted(item.expected_assignments),
                            "actual": sorted(have), "missing": lacking}))
    if baseline.report_extra:
        families = {(item.policy_type, item.platform) for item in expected}
        used = {policy.id for policy in matched.values()}
        for policy in policies:
            if (policy.policy_type, policy.platform) in families and policy.id not in used:
                found.append(Desired(
                    key=subject_key(*prefix, "extra", policy.id), kind="drift", severity="low",
                    title=f"Policy “{policy.name}” is not in baseline {baseline.name}", policy_id=policy.id,
                    baseline_id=baseline.id, detail={**base, "deviation": "extra_policy", "policy": policy.name}))
    return found


def drift_findings(tenant: Tenant) -> list[Desired]:
    assigned = baselines_of_tenant(tenant.id, tenant.workspace_id)
    if not assigned:
        return []
    policies = live_policies(tenant.id)
    wants_assignments = any(item.expected_assignments for _b, items in assigned.values() for item in items)
    kinds = assignment_kinds(tenant.id, [p.id for p in policies]) if wants_assignments else {}
    found: list[Desired] = []
    for baseline, expected in assigned.values():
        found += compare(baseline, expected, policies, kinds)
    return found


# --- building and editing --------------------------------------------------------------------------------------


def content_of(policies: list[BaselinePolicy]) -> list[dict[str, Any]]:
    return [{"name": p.name, "policy_type": p.policy_type, "platform": p.platform, "settings": p.settings,
             "any_value": p.any_value, "expected_assignments": p.expected_assignments} for p in policies]


def record_version(baseline: Baseline, change: str, user_id: int | None) -> None:
    """Bump the baseline's version and keep its content as that version."""
    db.session.flush()
    policies = db.session.scalars(select(BaselinePolicy).where(
        BaselinePolicy.baseline_id == baseline.id, BaselinePolicy.workspace_id == baseline.workspace_id)
        .order_by(BaselinePolicy.position, BaselinePolicy.id)).all()
    latest = db.session.scalar(select(func.max(BaselineVersion.version)).where(
        BaselineVersion.baseline_id == baseline.id))
    baseline.version = (latest or 0) + 1
    db.session.add(BaselineVersion(workspace_id=baseline.workspace_id, baseline_id=baseline.id,
                                   version=baseline.version, change=change[:400], content=content_of(policies),
                                   created_by_user_id=user_id))


def _new_baseline(workspace_id: int, name: str, source: str, policies: list[TenantPolicy], kinds: dict[int, set[str]],
                  user_id: int | None, severity: str, report_extra: bool) -> Baseline:
    """A baseline (version 1) expecting `policies` as they are, with the assignment kinds in `kinds`."""
    baseline = Baseline(workspace_id=workspace_id, name=name, severity=severity, report_extra=report_extra,
                        source_label=source[:400], created_by_user_id=user_id, version=1)
    db.session.add(baseline)
    db.session.flush()
    db.session.add_all([BaselinePolicy(workspace_id=workspace_id, baseline_id=baseline.id, position=position,
                                       policy_type=p.policy_type, platform=p.platform, name=p.name,
                                       settings=p.settings, any_value=[],
                                       expected_assignments=sorted(kinds.get(p.id, ())))
                        for position, p in enumerate(sorted(policies, key=lambda p: (p.name, p.id)))])
    record_version(baseline, source, user_id)
    return baseline


def build_from_tenant(workspace_id: int, name: str, tenant: Tenant, user_id: int | None, *,
                      severity: str = "medium", report_extra: bool = False,
                      with_assignments: bool = True) -> Baseline:
    """A new baseline holding the golden tenant's live policies as they are now (version 1)."""
    policies = live_policies(tenant.id)
    kinds = assignment_kinds(tenant.id, [p.id for p in policies]) if with_assignments else {}
    return _new_baseline(workspace_id, name, f"Built from {tenant.name}", policies, kinds, user_id, severity,
                         report_extra)


# --- building from a backup set ----------------------------------------------------------------------------

BACKUP_SOURCE_STATUSES = ("completed", "partial")  # a backup that holds items; a partial one says which are missing
POLICY_FAMILIES = {family.key: family for family in FAMILIES if family.store == STORE_POLICY}


# How the pages name a policy's type and platform (the stored values are Graph's words).
POLICY_TYPE_LABELS = {"configurationPolicy": "Settings Catalog", "endpointSecurity": "Endpoint security",
                      "deviceConfiguration": "Device configuration", "deviceCompliancePolicy": "Compliance policy",
                      "appProtectionPolicy": "App protection"}
PLATFORM_LABELS = {"windows10": "Windows 10/11", "windows10Mobile": "Windows 10 Mobile", "windowsPhone81": "Windows Phone 8.1",
                   "windows81": "Windows 8.1", "macOS": "macOS", "iOS": "iOS/iPadOS", "ios": "iOS/iPadOS",
                   "android": "Android", "androidWorkProfile": "Android work profile",
                   "androidDeviceOwner": "Android Enterprise (fully managed)", "androidForWork": "Android for Work",
                   "aosp": "Android (AOSP)", "windows": "Windows", "linux": "Linux"}


def policy_kind_label(policy_type: str, platform: str) -> str:
    """"Compliance policy · Windows 10/11"; an unknown platform said so, an unlisted value kept as it is."""
    kind = POLICY_TYPE_LABELS.get(policy_type, policy_type)
    if not platform or platform == "unknown":
        return f"{kind} · platform unknown"
    return f"{kind} · {PLATFORM_LABELS.get(platform, platform)}"


class BuildRefused(ValueError):
    pass


def policy_items_of(backup_set: BackupSet):
    """Select of (id, family, display_name) of the set's items that are policies (not groups, filters, tags)."""
    return (select(BackupItem.id, BackupItem.family, BackupItem.display_name)
            .where(BackupItem.tenant_id == backup_set.tenant_id, BackupItem.id.in_(backup_set.item_ids or [0]),
                   BackupItem.family.in_(POLICY_FAMILIES)))


def backed_up_policies(backup_set: BackupSet, item_ids: list[int] | None = None
                       ) -> tuple[list[TenantPolicy], dict[int, set[str]], int]:
    """The set's policies (all, or the items `item_ids`) as the sync engine would have stored them
    from the same Graph objects, keyed by backup item id; their assignment kinds; and how many
    payloads could not be read. One statement."""
    statement = (policy_items_of(backup_set).add_columns(BackupPayload.body)
                 .join(BackupPayload, (BackupPayload.id == BackupItem.payload_id)
                       & (BackupPayload.tenant_id == BackupItem.tenant_id)).order_by(BackupItem.id))
    if item_ids is not None:
        statement = statement.where(BackupItem.id.in_(item_ids))
    policies, kinds, unreadable = [], {}, 0
    for item_id, family_key, display_name, body in db.session.execute(statement):
        family = POLICY_FAMILIES[family_key]
        try:
            snapshot = normalized_payload(family, body if isinstance(body, dict) else {})
        except NormalizeError:
            unreadable += 1
            continue
        policies.append(TenantPolicy(
            item_id, _policy_type(family, snapshot), str(snapshot.get("platform") or family.platform or "unknown")[:32],
            display_name, snapshot.get("settings", {})))
        kinds[item_id] = {a.get("target") for a in snapshot.get("assignments") or []
                          if isinstance(a, dict) and a.get("target")}
    return policies, kinds, unreadable


def hollow_policies(policies) -> list[str]:
    """Names of the policies (baseline or tenant ones) that expect nothing useful: no settings, or a
    platform the payload did not tell (an incomplete backup payload), so they match little or nothing."""
    return [p.name for p in policies if not p.settings or p.platform == "unknown"]


def build_from_backup(workspace_id: int, name: str, backup_set: BackupSet, tenant: Tenant, user_id: int | None, *,
                      item_ids: list[int] | None = None, severity: str = "medium", report_extra: bool = False,
                      with_assignments: bool = True) -> Baseline:
    """A new baseline holding the policies of a backup set (all, or the items `item_ids`) as they
    were when it was taken: the same normalized settings as building from the tenant then.
    Refused (BuildRefused) for a set still running or failed, an item that is not one of the
    set's policies, or a selection with no readable policy. A policy whose payload held no
    settings or no platform is built as it is: hollow_policies() names them for a warning."""
    if backup_set.workspace_id != workspace_id or backup_set.tenant_id != tenant.id:
        raise BuildRefused("That backup set is not one of this tenant's.")
    if backup_set.status not in BACKUP_SOURCE_STATUSES:
        raise BuildRefused(f"That backup is {backup_set.status}: a baseline is built from a completed or partial one.")
    if item_ids is not None:
        if not item_ids:
            raise BuildRefused("Choose at least one policy of the backup set, or all of them.")
        known = set(db.session.scalars(policy_items_of(backup_set).with_only_columns(BackupItem.id)
                                       .where(BackupItem.id.in_(item_ids))))
        if set(item_ids) - known:
            raise BuildRefused("A chosen item is not one of this backup set's policies.")
    policies, kinds, unreadable = backed_up_policies(backup_set, item_ids)
    if not policies:
        raise BuildRefused("This backup set holds no policy a baseline can be built from."
                           + (f" ({unreadable} could not be read.)" if unreadable else ""))
    when = backup_set.finished_at or backup_set.started_at or backup_set.created_at
    stamp = f"{when.astimezone(timezone.utc):%Y-%m-%d %H:%M}" if when else ""
    source = f"Built from backup {backup_set.name} of {tenant.name}"
    if stamp and stamp not in backup_set.name:  # kept: retention may delete the set later
        source += f" (taken {stamp} UTC)"
    return _new_baseline(workspace_id, name, source, policies, kinds if with_assignments else {}, user_id, severity,
                         report_extra)


class EditRefused(ValueError):
    pass


def edit_policy(baseline: Baseline, item: BaselinePolicy, action: str, key: str | None, user_id: int | None) -> str:
    """Drop a policy, drop a setting, mark a setting "any value" (or expect its value again).
    Returns what changed, for the version and the audit entry."""
    if action == "drop_policy":
        db.session.delete(item)
        change = f"Dropped policy {item.name}"
    else:
        if key is None or (key not in item.settings and key not in item.any_value):
            raise EditRefused("That setting is not in this baseline policy.")
        if action == "drop_setting":
            item.settings = {k: v for k, v in item.settings.items() if k != key}
            item.any_value = [k for k in item.any_value if k != key]
            change = f"Dropped setting {key} of {item.name}"
        elif action == "any_value":
            if key in item.any_value:
                raise EditRefused("That setting accepts any value already.")
            item.any_value = sorted({*item.any_value, key})
            change = f"Any value for {key} of {item.name}"
        elif action == "exact_value":
            if key not in item.any_value or key not in item.settings:
                raise EditRefused("That setting expects its value already.")
            item.any_value = [k for k in item.any_value if k != key]
            change = f"Exact value again for {key} of {item.name}"
        else:
            raise EditRefused("Unknown change.")
    record_version(baseline, change, user_id)
    return change

