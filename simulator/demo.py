"""Demo tenants and their objects, built from the fixtures `flask seed-demo` uses.

For demo tenant number k (`app.demo.seed.tenant_external_id(k)`) the objects follow the seed's
own plan, with the seed's graph ids (md5 of "k/policy/n", "k/group/n", "k/role/n",
"k/configuration/n" as a GUID), names, policy counts and latest versions, so a first sync
against the simulator finds the rows `flask seed-demo` made. Other tenants get each
template once at its latest version (ids derived from the tenant id), or, with
`policies_per_family`, that many policies per policy family (for benchmarks).

Which family a policy template belongs to comes from FAMILIES (`Family.policy_type`,
`Family.platform`); two Intune types are served from another type's collection
(endpoint security policies are Settings Catalog policies, update rings are device
configurations). Templates of types no family reads (Conditional Access, feature update
profiles) are not served.
"""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from app.demo import demo_tenant_domain, demo_tenant_name, load_fixture, names
from app.graph.families import FAMILIES, STORE_GROUP, STORE_POLICY, STORE_ROLE, Family, required_permissions

from . import shapes
from .store import is_app_protection, is_settings_catalog

DEMO_TENANT_COUNT = 60  # app.demo.seed.TENANTS_PER_SCALE: the tenants `flask seed-demo` makes at scale 1
MAX_VERSIONS = 5  # app.demo.seed.MAX_VERSIONS_PER_POLICY

# Intune types listed from another type's collection.
SERVED_AS = {"endpointSecurity": "configurationPolicy", "windowsUpdateForBusinessConfiguration": "deviceConfiguration"}

# Where the inventory families' demo records come from (configuration_objects.json kinds).
INVENTORY_KINDS = {"assignmentFilters": "assignmentFilter", "scopeTags": "roleScopeTag"}


def default_roles() -> list[str]:
    """Every read and write permission FAMILIES needs (what a full admin consent grants)."""
    roles: list[str] = []
    for name in (*required_permissions("read"), *required_permissions("write")):
        if name not in roles:
            roles.append(name)
    return roles


def demo_tenant_id(tenant_key: int) -> str:
    from app.demo.seed import tenant_external_id  # the seed's own rule

    return str(tenant_external_id(tenant_key))


def demo_tenant_keys() -> dict[str, int]:
    return {demo_tenant_id(key): key for key in range(1, DEMO_TENANT_COUNT + 1)}


def demo_roles(tenant_key: int) -> list[str]:
    """The permissions the seed records as granted for demo tenant k (tenant_permissions)."""
    permissions = load_fixture("graph_permissions")
    return [name for number, name in enumerate(permissions, start=1) if (tenant_key * 7 + number * 5) % 17 != 0]


def template_family(template: dict[str, Any]) -> Family | None:
    policy_type = SERVED_AS.get(template["policy_type"], template["policy_type"])
    for family in FAMILIES:
        if family.store != STORE_POLICY or family.policy_type != policy_type:
            continue
        if family.platform is None or family.platform == template["platform"]:
            return family
    return None


def settings_at_version(template: dict[str, Any], version: int) -> dict[str, Any]:
    """Version 1 is `settings`; version v+1 applies changes[v-1] on top (as the seed's SQL)."""
    settings = dict(template["settings"])
    for change in template["changes"][: max(0, version - 1)]:
        settings.update(change)
    return settings


def variant_name(display_name: str, pass_no: int) -> str:
    """The seed's name for a policy in pass `pass_no` over the templates.

    A template whose name ends with a variant ("WIN - Update Ring - Pilot") skips that variant.
    """
    if pass_no == 0:
        return display_name
    own_suffix = display_name.rsplit(" - ", 1)[-1]
    variants = [variant for variant in names("policy_variants") if variant != own_suffix]
    name = f"{display_name} - {variants[(pass_no - 1) % len(variants)]}"
    if pass_no > len(variants):
        name += f" {1 + (pass_no - 1) // len(variants)}"
    return name


def _policy_object(family: Family, template: dict[str, Any], object_id: str, name: str, version: int,
                   created: dt.datetime, modified: dt.datetime) -> dict[str, Any]:
    settings = settings_at_version(template, version)
    if is_settings_catalog(family):
        return shapes.settings_catalog_policy(
            object_id, name, template["description"], template["platform"], settings, created, modified
        )
    if is_app_protection(family):
        return shapes.app_protection_policy(
            "T_" + object_id, template["odata_type"], name, template["description"], settings, created, modified, version
        )
    return shapes.device_policy(
        object_id, template["odata_type"], name, template["description"], settings, created, modified, version
    )


def _assign(policies: list[dict[str, Any]], group_ids: list[str], filter_ids: list[str]) -> None:
    """Plausible assignments: groups (with an exclusion), all devices with a filter, all users, none."""
    for number, policy in enumerate(policies):
        policy_id = policy["id"]
        pattern = number % 4
        items: list[dict[str, Any]] = []
        if pattern == 0 and group_ids:
            items.append(shapes.assignment(policy_id, "group", group_ids[(2 + number) % len(group_ids)]))
            if len(group_ids) > 8:
                items.append(shapes.assignment(policy_id, "exclusionGroup", group_ids[8]))
        elif pattern == 1:
            filter_id = filter_ids[number % len(filter_ids)] if filter_ids else None
            items.append(shapes.assignment(policy_id, "allDevices", filter_id=filter_id, filter_type="include"))
        elif pattern == 2:
            items.append(shapes.assignment(policy_id, "allLicensedUsers"))
        policy["assignments"] = items
        if "isAssigned" in policy:
            policy["isAssigned"] = bool(items)


def build_objects(
    tenant_id: str, *, domain: str, now: dt.datetime, demo_key: int | None = None,
    policies_per_family: int | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """family key -> objects for one tenant (see the module docstring for the plan)."""
    templates = load_fixture("policy_templates")
    objects: dict[str, list[dict[str, Any]]] = {family.key: [] for family in FAMILIES}
    id_root = demo_key if demo_key is not None else tenant_id

    # Entra groups and directory roles.
    group_records = load_fixture("entra_groups")
    group_count = 10 + demo_key % 5 if demo_key is not None else len(group_records)
    for family in FAMILIES:
        if family.store == STORE_GROUP:
            for number, record in enumerate(group_records[:group_count], start=1):
                objects[family.key].append(shapes.group(
                    shapes.stable_guid(id_root, "group", number), record["name"], record["type"], domain,
                    now - dt.timedelta(days=400 - number * 9),
                ))
        elif family.store == STORE_ROLE:
            for number, record in enumerate(load_fixture("entra_roles"), start=1):
                if not record["built_in"] and demo_key is not None and demo_key % 3 != 0:
                    continue  # the MSP's custom roles exist in every third demo tenant
                object_id = record["id"] or shapes.stable_guid(id_root, "role", number)
                objects[family.key].append(shapes.role_definition(object_id, record))

    # Filters and scope tags (configuration objects of their kinds).
    records = load_fixture("configuration_objects")
    item_count = 6 + demo_key % 3 if demo_key is not None else len(records)
    for family in FAMILIES:
        kind = INVENTORY_KINDS.get(family.key)
        if kind is None:
            continue
        if kind == "roleScopeTag":
            objects[family.key].append(dict(shapes.DEFAULT_SCOPE_TAG))
        for item_no in range(1, item_count + 1):
            record = records[(item_no - 1) % len(records)]
            if record["kind"] != kind:
                continue
            object_id = shapes.stable_guid(id_root, "configuration", item_no)
            if kind == "assignmentFilter":
                objects[family.key].append(shapes.assignment_filter(
                    object_id, record["name"], record["data"], now - dt.timedelta(days=200 + item_no)
                ))
            else:
                objects[family.key].append(shapes.scope_tag(object_id, record["name"], record["data"]))

    # Policies.
    policies: dict[str, list[dict[str, Any]]] = {}
    if policies_per_family is not None:
        for family in FAMILIES:
            if family.store != STORE_POLICY:
                continue
            own = [template for template in templates if template_family(template) is family]
            for number in range(1, policies_per_family + 1 if own else 1):
                template = own[(number - 1) % len(own)]
                pass_no = (number - 1) // len(own)
                modified = now - dt.timedelta(days=number % 20, hours=number % 24)
                policies.setdefault(family.key, []).append(_policy_object(
                    family, template, shapes.stable_guid(tenant_id, family.key, number),
                    variant_name(template["display_name"], pass_no), MAX_VERSIONS,
                    modified - dt.timedelta(days=11 * MAX_VERSIONS), modified,
                ))
    else:
        if demo_key is not None:
            policy_count = 24 + demo_key * 7 % 25
        else:
            policy_count = len(templates)
        for number in range(1, policy_count + 1):
            template = templates[(number - 1) % len(templates)]
            family = template_family(template)
            if family is None:
                continue
            pass_no = (number - 1) // len(templates)
            if demo_key is not None:
                version = 2 + (demo_key * 7 + number * 3) % (MAX_VERSIONS - 1)
                modified = now - dt.timedelta(days=(demo_key + number) % 20, hours=number % 24)
            else:
                version = MAX_VERSIONS
                modified = now - dt.timedelta(days=number % 20, hours=number % 24)
            policies.setdefault(family.key, []).append(_policy_object(
                family, template, shapes.stable_guid(id_root, "policy", number),
                variant_name(template["display_name"], pass_no), version,
                modified - dt.timedelta(days=11 * version), modified,
            ))

    group_ids = [item["id"] for family in FAMILIES if family.store == STORE_GROUP for item in objects[family.key]]
    filter_ids = [item["id"] for item in objects.get("assignmentFilters", [])]
    for family_key, items in policies.items():
        if "assignments" in next(f for f in FAMILIES if f.key == family_key).per_object:
            _assign(items, group_ids, filter_ids)
        objects[family_key].extend(items)
    return objects


def demo_tenant(tenant_key: int) -> dict[str, Any]:
    """add_tenant arguments for demo tenant k: its seed id, name, domain and granted roles."""
    return {
        "tenant_id": demo_tenant_id(tenant_key),
        "name": demo_tenant_name(tenant_key),
        "domain": demo_tenant_domain(tenant_key),
        "roles": demo_roles(tenant_key),
        "demo_key": tenant_key,
    }


def domain_for(name: str, tenant_id: str) -> str:
    cleaned = "".join(character for character in name if character.isalnum()).lower() or "tenant"
    return f"{cleaned}{uuid.UUID(tenant_id).hex[:4]}.onmicrosoft.com"


def policy_payload_skeletons() -> list[dict[str, Any]]:
    """For `flask seed-demo`: each served template's backup payload at each version, built from the
    objects this module serves (payload_of, as the backup engine stores them), so the seed's backups
    and the simulator's objects cannot drift apart. What differs per policy is left for the seed's
    SQL to fill: the id, the name, the timestamps, an app protection policy's etag `version`,
    `isAssigned` and the assignments (the rule of `_assign`: `family_rank`/`family_count` give a
    policy's place among its family's policies)."""
    from app.backup.payloads import payload_of

    templates = load_fixture("policy_templates")
    epoch = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
    own: dict[str, list[int]] = {}
    for number, template in enumerate(templates, start=1):
        family = template_family(template)
        if family is not None:
            own.setdefault(family.key, []).append(number)
    rows: list[dict[str, Any]] = []
    for number, template in enumerate(templates, start=1):
        family = template_family(template)
        if family is None:
            continue  # not served, so never in a backup
        related = {"assignments": []} if "assignments" in family.per_object else None
        for version in range(1, MAX_VERSIONS + 1):
            raw = _policy_object(family, template, "", "", version, epoch, epoch)
            rows.append({
                "template_no": number, "version": version, "family": family.key, "name_key": family.name_key,
                "etag_version": is_app_protection(family), "family_rank": own[family.key].index(number),
                "family_count": len(own[family.key]), "body": payload_of(family, raw, related),
            })
    return rows
