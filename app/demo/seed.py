"""Demo data: `flask seed-demo [--scale N] [--policies-per-tenant P]`.

One set-based generator serves both the everyday demo (scale 1: three
workspaces, ~60 tenants) and benchmarks (scale N: N x 60 tenants, millions of
rows). Every tenant-owned row is produced by an `INSERT ... SELECT` over
`generate_series` and joins; plausible names and settings come from the
catalogs below, passed as bound parameters and indexed by modulo arithmetic on
the series values, so no row is ever built or loaded in Python.

Idempotency: tenant `i` (1..N*60) has the external id uuid5(namespace, "tenant-i").
Tenants are inserted only when their id exists nowhere yet, and only the
tenants that this run actually inserted get child rows, so a rerun adds nothing
and `--scale 3` after a plain seed adds just the extra tenants.

Tenants are processed in chunks, one transaction per chunk (tenants and all of
their rows together), so a huge scale never builds one enormous transaction and
an interrupted run leaves no half-filled tenant behind.
"""
from __future__ import annotations

import json
import math
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy import text

from app.demo import DEMO_STAFF_TENANT_ID, demo_staff_object_id, load_fixture
from app.extensions import db
from app.passwords import hash_password

DEMO_PASSWORD = "atlas-demo-2026"
DEMO_EMAIL_DOMAIN = "tenantatlas.demo"
TENANTS_PER_SCALE = 60

# Fixed namespace of demo tenant ids: the same tenant key always gives the same GUID.
DEMO_TENANT_NAMESPACE = uuid.UUID("5e3c1f0a-7d2b-4c8e-9a41-6f0b2d8e7c15")

# Bounds on one chunk's transaction: at most this many tenants, and about this many policies.
MAX_TENANTS_PER_CHUNK = 500
TARGET_POLICIES_PER_CHUNK = 100_000

MAX_VERSIONS_PER_POLICY = 5


def tenant_external_id(tenant_key: int) -> uuid.UUID:
    """The Entra tenant id of demo tenant number `tenant_key` (1-based)."""
    return uuid.uuid5(DEMO_TENANT_NAMESPACE, f"tenant-{tenant_key}")


# --- workspaces and people -------------------------------------------------------------

# (slug, name); tenant keys are spread 3:2:1 over them, so the first holds half.
DEMO_WORKSPACES = (
    ("atlas-managed-services", "Atlas Managed Services"),
    ("blue-harbor-it", "Blue Harbor IT"),
    ("summit-cloud-partners", "Summit Cloud Partners"),
)

# (email, name, {workspace slug: role}); every workspace has one member of each role.
DEMO_USERS = (
    (f"olivia.chen@{DEMO_EMAIL_DOMAIN}", "Olivia Chen",
     {"atlas-managed-services": "owner", "blue-harbor-it": "manager"}),
    (f"marcus.webb@{DEMO_EMAIL_DOMAIN}", "Marcus Webb", {"atlas-managed-services": "manager"}),
    (f"priya.nair@{DEMO_EMAIL_DOMAIN}", "Priya Nair",
     {"atlas-managed-services": "operator", "summit-cloud-partners": "readonly"}),
    (f"tom.keller@{DEMO_EMAIL_DOMAIN}", "Tom Keller", {"atlas-managed-services": "readonly"}),
    (f"sofia.martins@{DEMO_EMAIL_DOMAIN}", "Sofia Martins", {"blue-harbor-it": "owner"}),
    (f"daniel.okafor@{DEMO_EMAIL_DOMAIN}", "Daniel Okafor",
     {"blue-harbor-it": "operator", "summit-cloud-partners": "manager"}),
    (f"emma.lindqvist@{DEMO_EMAIL_DOMAIN}", "Emma Lindqvist", {"summit-cloud-partners": "owner"}),
    (f"liam.brooks@{DEMO_EMAIL_DOMAIN}", "Liam Brooks",
     {"blue-harbor-it": "readonly", "summit-cloud-partners": "operator"}),
)

# The demo's platform administrator (may create workspaces and manage accounts).
DEMO_ADMIN_EMAIL = f"olivia.chen@{DEMO_EMAIL_DOMAIN}"

# --- catalogs the SQL picks from ---------------------------------------------------------
# The records live in app/demo/fixtures/*.json, shared with the Graph simulator's demo
# tenants (app/demo/__init__.py); here they are bound under their historical names.

_NAMES = load_fixture("names")

# Company name = prefix + suffix (+ region beyond 400 tenants). The two lengths are
# coprime, so keys 1..400 give 400 distinct names (Chinese remainder theorem).
TENANT_NAME_PREFIXES = tuple(_NAMES["tenant_name_prefixes"])
TENANT_NAME_SUFFIXES = tuple(_NAMES["tenant_name_suffixes"])
TENANT_NAME_REGIONS = tuple(_NAMES["tenant_name_regions"])

FIRST_NAMES = tuple(_NAMES["first_names"])
# 23 last names: coprime with 20 first names, so names repeat only after 460 people.
LAST_NAMES = tuple(_NAMES["last_names"])
DEPARTMENTS = tuple(_NAMES["departments"])
JOB_TITLES = tuple(_NAMES["job_titles"])

# A policy beyond the first pass over the templates gets a variant suffix.
POLICY_VARIANTS = tuple(_NAMES["policy_variants"])

# A policy template: version 1 is `settings`; version v+1 applies changes[v-1] on top.
# Keys: policy_type, platform, odata_type, display_name, description, settings, changes.
POLICY_TEMPLATES = tuple(load_fixture("policy_templates"))

# (name, frequency, retention_days); a tenant has the first 2-4.
BACKUP_SCHEDULES = tuple(load_fixture("backup_schedules"))
BACKUP_SETS_PER_TENANT = 6
MAX_ITEMS_PER_BACKUP_SET = 25

# Device model by (device number % 10): six Windows PCs, a Mac, two iPhones, an Android phone.
DEVICE_MODELS = tuple(load_fixture("device_models"))
APPS = tuple(load_fixture("apps"))
CONFIGURATION_OBJECTS = tuple(load_fixture("configuration_objects"))

# (name, group type, typical member count); a tenant has the first 10-14.
ENTRA_GROUPS = tuple(load_fixture("entra_groups"))

# Built-in role ids are Entra's real role template ids (the same in every tenant).
ENTRA_ROLES = tuple(load_fixture("entra_roles"))

GRAPH_PERMISSIONS = tuple(load_fixture("graph_permissions"))


# Tenant history, oldest first; actor "member" is a non-readonly member of the workspace.
AUDIT_EVENTS = tuple(load_fixture("audit_events"))


def _policy_payload_skeletons() -> list[dict[str, Any]]:
    # The simulator's builder: the seed's backups are the objects the simulator serves for the same tenants.
    from simulator.demo import policy_payload_skeletons

    return policy_payload_skeletons()


def _catalog_parameters() -> dict[str, Any]:
    """The catalogs as bound parameters: text arrays for names, JSON (and its length) for records."""
    records = {
        "policy_templates": POLICY_TEMPLATES,
        "backup_schedules": BACKUP_SCHEDULES,
        "device_models": DEVICE_MODELS,
        "apps": APPS,
        "configuration_objects": CONFIGURATION_OBJECTS,
        "entra_groups": ENTRA_GROUPS,
        "entra_roles": ENTRA_ROLES,
        "audit_events": AUDIT_EVENTS,
    }
    return {
        "policy_payloads": json.dumps(_policy_payload_skeletons()),
        **{name: json.dumps(catalog) for name, catalog in records.items()},
        **{f"{name}_count": len(catalog) for name, catalog in records.items()},
        "name_prefixes": list(TENANT_NAME_PREFIXES),
        "name_suffixes": list(TENANT_NAME_SUFFIXES),
        "name_regions": list(TENANT_NAME_REGIONS),
        "first_names": list(FIRST_NAMES),
        "last_names": list(LAST_NAMES),
        "departments": list(DEPARTMENTS),
        "job_titles": list(JOB_TITLES),
        "policy_variants": list(POLICY_VARIANTS),
        "graph_permissions": list(GRAPH_PERMISSIONS),
    }


# --- SQL building blocks -----------------------------------------------------------------


def _graph_id(*parts: str) -> str:
    """SQL for a GUID string derived from `parts`: stable, and unique within a tenant."""
    return f"CAST(CAST(md5(concat_ws('/', {', '.join(parts)})) AS uuid) AS text)"


def _pick(array_parameter: str, index_sql: str) -> str:
    """SQL for element `index_sql` (0-based, wrapping around) of a text-array parameter."""
    array = f"CAST(:{array_parameter} AS text[])"
    return f"({array})[1 + ({index_sql}) % cardinality({array})]"


def _person_name(tenant_key: str, person_no: str, separator: str = "' '") -> str:
    return (
        f"{_pick('first_names', f'{tenant_key} + {person_no}')} || {separator} || "
        f"{_pick('last_names', f'{tenant_key} * 3 + {person_no}')}"
    )


def _user_principal_name(tenant_key: str, person_no: str, domain: str) -> str:
    return f"lower({_person_name(tenant_key, person_no, chr(39) + '.' + chr(39))}) || '@' || {domain}"


def _settings_at_version(template: str, version: str) -> str:
    """SQL for a template's settings at `version`: version 1 plus the changes up to it."""
    terms = [f"{template}.entry -> 'settings'"] + [
        f"CASE WHEN {version} > {step} THEN {template}.entry -> 'changes' -> {step - 1} ELSE '{{}}'::jsonb END"
        for step in range(1, MAX_VERSIONS_PER_POLICY)
    ]
    return " || ".join(terms)


def _in_chunk(alias: str) -> str:
    """Restricts a parent table to the chunk's tenants: an index range, never a full scan."""
    return f"{alias}.tenant_id = ANY(CAST(:tenant_ids AS bigint[]))"


def _sha256_hex(jsonb_sql: str) -> str:
    # PostgreSQL's canonical jsonb text, so equal documents always hash alike.
    return f"encode(sha256(convert_to(CAST({jsonb_sql} AS text), 'UTF8')), 'hex')"


def _jsonb_catalog(name: str, parameter: str) -> str:
    """A CTE numbering the records of a JSON-array parameter 1..n (n is the parameter `<name>_count`)."""
    return f"""{name} AS MATERIALIZED (
    SELECT CAST(entry.ordinality AS integer) AS entry_no,
           entry.value AS entry
    FROM jsonb_array_elements(CAST(:{parameter} AS jsonb)) WITH ORDINALITY AS entry(value, ordinality)
)"""


# Common table expressions, each with the ones it reads; a statement lists what it uses
# and gets those, each after its dependencies.
_SHARED_CTES: dict[str, tuple[tuple[str, ...], str]] = {
    "chunk": ((), """chunk AS MATERIALIZED (
    -- The tenants this run created in this chunk, and how many rows of each kind they get.
    SELECT tenant.id AS tenant_id,
           tenant.workspace_id,
           tenant.name AS tenant_name,
           tenant.primary_domain AS tenant_domain,
           tenant.status AS tenant_status,
           tenant.created_at AS tenant_created_at,
           planned.tenant_key,
           COALESCE(CAST(:policies_per_tenant AS integer), 24 + planned.tenant_key * 7 % 25) AS policy_count,
           20 + planned.tenant_key * 5 % 13 AS device_count,
           12 + planned.tenant_key % 6 AS app_count,
           16 + planned.tenant_key * 3 % 9 AS user_count,
           6 + planned.tenant_key % 3 AS configuration_count,
           2 + planned.tenant_key % 3 AS schedule_count,
           10 + planned.tenant_key % 5 AS group_count,
           2 + planned.tenant_key % 2 AS restore_count
    FROM unnest(CAST(:tenant_ids AS bigint[]), CAST(:tenant_keys AS integer[])) AS planned(tenant_id, tenant_key)
    JOIN tenants AS tenant ON tenant.id = planned.tenant_id
)"""),
    "actor": (("chunk",), """actor AS MATERIALIZED (
    -- Members who act on tenants (readonly members do not), numbered per workspace.
    SELECT membership.workspace_id,
           membership.user_id,
           CAST(row_number() OVER (PARTITION BY membership.workspace_id ORDER BY membership.user_id) - 1 AS integer)
               AS actor_no,
           CAST(count(*) OVER (PARTITION BY membership.workspace_id) AS integer) AS actor_count
    FROM workspace_memberships AS membership
    WHERE membership.role <> 'readonly'
      AND membership.workspace_id IN (SELECT workspace_id FROM chunk)
)"""),
    "policy_template": ((), _jsonb_catalog("policy_template", "policy_templates")),
    "template_version": (("policy_template",), f"""template_version AS MATERIALIZED (
    -- Each template's settings at each version, merged once here rather than once per policy row.
    SELECT template.entry_no AS template_no,
           version.n AS version_number,
           {_settings_at_version('template', 'version.n')} AS settings
    FROM policy_template AS template
    CROSS JOIN generate_series(1, {MAX_VERSIONS_PER_POLICY}) AS version(n)
)"""),
    "policy_plan": (("chunk", "policy_template"), f"""policy_plan AS (
    -- Policy n of a tenant uses template (n-1) mod T; later passes over the templates get a variant suffix.
    SELECT chunk.tenant_id,
           chunk.workspace_id,
           chunk.tenant_key,
           chunk.policy_count,
           policy.policy_no,
           template.entry ->> 'policy_type' AS policy_type,
           template.entry ->> 'platform' AS platform,
           template.entry ->> 'odata_type' AS odata_type,
           template.entry ->> 'description' AS description,
           template.entry_no AS template_no,
           -- App protection policy ids look like T_<guid> in Graph (and in the simulator).
           CASE WHEN template.entry ->> 'policy_type' = 'appProtectionPolicy' THEN 'T_' ELSE '' END
               || {_graph_id('chunk.tenant_key', "'policy'", 'policy.policy_no')} AS graph_id,
           -- A template whose name ends with a variant ("WIN - Update Ring - Pilot") skips that
           -- variant: no "Pilot - Pilot" (simulator.demo.variant_name says the same).
           (template.entry ->> 'display_name') || CASE
               WHEN policy.pass_no = 0 THEN ''
               ELSE ' - ' || (template.variants)[1 + (policy.pass_no - 1) % cardinality(template.variants)]
                    || CASE WHEN policy.pass_no > cardinality(template.variants)
                            THEN ' ' || (1 + (policy.pass_no - 1) / cardinality(template.variants))
                            ELSE '' END
           END AS display_name,
           2 + (chunk.tenant_key * 7 + policy.policy_no * 3) % {MAX_VERSIONS_PER_POLICY - 1} AS version_count,
           now() - make_interval(days => (chunk.tenant_key + policy.policy_no) % 20,
                                 hours => policy.policy_no % 24) AS last_changed_at
    FROM chunk
    CROSS JOIN LATERAL (
        SELECT series.n AS policy_no,
               (series.n - 1) / :policy_templates_count AS pass_no
        FROM generate_series(1, chunk.policy_count) AS series(n)
    ) AS policy
    JOIN LATERAL (
        SELECT own.entry, own.entry_no,
               array_remove(CAST(:policy_variants AS text[]),
                            regexp_replace(own.entry ->> 'display_name', '^.* - ', '')) AS variants
        FROM policy_template AS own
        WHERE own.entry_no = 1 + (policy.policy_no - 1) % :policy_templates_count
    ) AS template ON true
)"""),
    "schedule_template": ((), _jsonb_catalog("schedule_template", "backup_schedules")),
    "backup_set_plan": (("chunk", "schedule_template"), f"""backup_set_plan AS (
    -- Six backups per tenant, oldest first; sets 2 and 5 were started by hand, the rest by a schedule.
    SELECT backup.*,
           CASE WHEN backup.is_manual
                THEN 'Manual backup before change CHG' || (10000 + backup.tenant_key * 13 + backup.set_no)
                ELSE (schedule.entry ->> 'name') || ' #' || (100 + backup.tenant_key % 37 * 3 + backup.set_no)
           END AS name,
           schedule.entry ->> 'name' AS schedule_name,
           CASE backup.status
               WHEN 'completed' THEN least(backup.policy_count, {MAX_ITEMS_PER_BACKUP_SET})
               WHEN 'partial' THEN least(backup.policy_count, {MAX_ITEMS_PER_BACKUP_SET}) * 2 / 3
               ELSE 0
           END AS item_count
    FROM (
        SELECT chunk.tenant_id, chunk.workspace_id, chunk.tenant_key, chunk.policy_count,
               backup_no.set_no,
               backup_no.set_no IN (2, 5) AS is_manual,
               1 + backup_no.set_no % chunk.schedule_count AS schedule_no,
               CASE
                   -- A few tenants' backups have failed for the last week (sets 3 to 6: the last 6 days):
                   -- theirs is the "No successful backup in the last 7 days" finding.
                   WHEN chunk.tenant_key % 7 = 3 AND backup_no.set_no >= 3 THEN 'failed'
                   WHEN (chunk.tenant_key + backup_no.set_no) % 10 = 0 THEN 'failed'
                   WHEN (chunk.tenant_key + backup_no.set_no) % 10 = 3 THEN 'partial'
                   ELSE 'completed'
               END AS status,
               now() - make_interval(days => ({BACKUP_SETS_PER_TENANT} - backup_no.set_no) * 2,
                                     hours => 2 + chunk.tenant_key % 5) AS planned_start
        FROM chunk
        CROSS JOIN generate_series(1, {BACKUP_SETS_PER_TENANT}) AS backup_no(set_no)
    ) AS backup
    JOIN schedule_template AS schedule ON schedule.entry_no = backup.schedule_no
)"""),
    "backup_pick": (("backup_set_plan", "policy_plan"), f"""backup_pick AS (
    -- Item n of set s is policy 1 + (n - 1 + 3s) mod P: distinct within a set.
    SELECT pick.*, policy.graph_id AS policy_graph_id, policy.display_name, policy.template_no,
           policy.version_count, policy.last_changed_at
    FROM (
        SELECT plan.tenant_id, plan.workspace_id, plan.tenant_key, plan.set_no, plan.planned_start,
               1 + (series.n - 1 + plan.set_no * 3) % plan.policy_count AS policy_no
        FROM backup_set_plan AS plan
        CROSS JOIN generate_series(1, plan.item_count) AS series(n)
    ) AS pick
    JOIN policy_plan AS policy ON policy.tenant_id = pick.tenant_id AND policy.policy_no = pick.policy_no
)"""),
    "payload_skeleton": ((), """payload_skeleton AS MATERIALIZED (
    -- simulator.demo.policy_payload_skeletons(): each served template's payload at each version.
    SELECT CAST(entry ->> 'template_no' AS integer) AS template_no,
           CAST(entry ->> 'version' AS integer) AS version_number,
           entry ->> 'family' AS family,
           entry ->> 'name_key' AS name_key,
           CAST(entry ->> 'etag_version' AS boolean) AS etag_version,
           CAST(entry ->> 'family_rank' AS integer) AS family_rank,
           CAST(entry ->> 'family_count' AS integer) AS family_count,
           entry -> 'body' AS body
    FROM jsonb_array_elements(CAST(:policy_payloads AS jsonb)) AS entry
)"""),
    "inventory_plan": (("chunk",), f"""inventory_plan AS (
    SELECT chunk.tenant_id, chunk.workspace_id, chunk.tenant_key, chunk.tenant_name, chunk.tenant_domain,
           chunk.user_count,
           kind.object_type,
           item.item_no,
           {_graph_id('chunk.tenant_key', 'kind.object_type', 'item.item_no')} AS graph_id
    FROM chunk
    CROSS JOIN LATERAL (VALUES ('device', chunk.device_count), ('app', chunk.app_count),
                               ('user', chunk.user_count), ('configuration', chunk.configuration_count))
        AS kind(object_type, item_count)
    CROSS JOIN LATERAL generate_series(1, kind.item_count) AS item(item_no)
)"""),
    "link_plan": (("chunk", "device_model", "app_template"), """link_plan AS (
    -- Every device has a primary user and three installed apps made for its platform (no Windows
    -- app on an iPhone: the first 12 apps, which every tenant has, hold three for each platform);
    -- every configuration object is assigned to four consecutive devices (device_count >= 20).
    SELECT chunk.tenant_id, chunk.workspace_id, chunk.tenant_key,
           'device' AS source_type, device.n AS source_no,
           'user' AS target_type, 1 + (device.n - 1) % chunk.user_count AS target_no,
           'primaryUser' AS link_type
    FROM chunk CROSS JOIN LATERAL generate_series(1, chunk.device_count) AS device(n)
    UNION ALL
    SELECT chunk.tenant_id, chunk.workspace_id, chunk.tenant_key,
           'app', installed.app_no,
           'device', device.n,
           'installedOn'
    FROM chunk
    CROSS JOIN LATERAL generate_series(1, chunk.device_count) AS device(n)
    -- The device's model, as INVENTORY_ITEMS picks it.
    JOIN device_model ON device_model.entry_no = 1 + device.n % :device_models_count
    CROSS JOIN LATERAL (
        SELECT candidate.n AS app_no
        FROM generate_series(1, chunk.app_count) AS candidate(n)
        JOIN app_template AS app ON app.entry_no = 1 + (candidate.n - 1) % :apps_count
        WHERE app.entry ->> 'platform' = device_model.entry ->> 'os'
        ORDER BY (candidate.n + device.n) % chunk.app_count, candidate.n
        LIMIT 3
    ) AS installed
    UNION ALL
    SELECT chunk.tenant_id, chunk.workspace_id, chunk.tenant_key,
           'configuration', configuration.n,
           'device', 1 + (configuration.n * 3 + slot.n) % chunk.device_count,
           'assignedTo'
    FROM chunk
    CROSS JOIN LATERAL generate_series(1, chunk.configuration_count) AS configuration(n)
    CROSS JOIN generate_series(0, 3) AS slot(n)
)"""),
    "device_model": ((), _jsonb_catalog("device_model", "device_models")),
    "app_template": ((), _jsonb_catalog("app_template", "apps")),
    "configuration_template": ((), _jsonb_catalog("configuration_template", "configuration_objects")),
    "group_template": ((), _jsonb_catalog("group_template", "entra_groups")),
    "role_template": ((), _jsonb_catalog("role_template", "entra_roles")),
    "audit_template": ((), _jsonb_catalog("audit_template", "audit_events")),
}


def _with_clause(names: tuple[str, ...]) -> str:
    ordered: list[str] = []

    def visit(name: str) -> None:
        dependencies, _ = _SHARED_CTES[name]
        for dependency in dependencies:
            visit(dependency)
        if name not in ordered:
            ordered.append(name)

    for name in names:
        visit(name)
    return "WITH " + ",\n".join(_SHARED_CTES[name][1] for name in ordered)


@dataclass(frozen=True)
class TenantRowsInsert:
    """One set-based INSERT ... SELECT filling a table for every tenant of a chunk.

    `columns` maps each column to its SQL expression, so adding a column is a
    one-line edit. Every row carries its tenant's `workspace_id` (the plan CTEs
    all pass it through from `chunk`); the composite key (tenant_id, workspace_id)
    -> tenants makes the database refuse any other value.
    """

    table: str
    columns: dict[str, str]
    source: str  # FROM ... over the shared CTEs
    uses: tuple[str, ...] = ()
    order_by: str | None = None  # for small tables whose ids should follow time

    def sql(self) -> str:
        column_list = ", ".join(self.columns)
        select_list = ",\n       ".join(self.columns.values())
        return (
            f"{_with_clause(('chunk', *self.uses))}\n"
            f"INSERT INTO {self.table} ({column_list})\n"
            f"SELECT {select_list}\n{self.source}"
            + (f"\nORDER BY {self.order_by}" if self.order_by else "")
        )


# --- the twelve tenant-owned tables (and the tenants' audit history), in insert order ------

POLICIES = TenantRowsInsert(
    table="policies",
    columns={
        "tenant_id": "plan.tenant_id",
        "workspace_id": "plan.workspace_id",
        "graph_id": "plan.graph_id",
        "policy_type": "plan.policy_type",
        "platform": "plan.platform",
        "display_name": "plan.display_name",
        "description": "plan.description",
        "settings": "latest.settings",
        "last_modified_at": "plan.last_changed_at",
        "created_at": "plan.last_changed_at - make_interval(days => 11 * plan.version_count)",
        "updated_at": "plan.last_changed_at",
    },
    source="""FROM policy_plan AS plan
JOIN template_version AS latest
  ON latest.template_no = plan.template_no AND latest.version_number = plan.version_count""",
    uses=("policy_plan", "template_version"),
)

POLICY_VERSIONS = TenantRowsInsert(
    table="policy_versions",
    columns={
        "tenant_id": "policy.tenant_id",
        "workspace_id": "plan.workspace_id",
        "policy_id": "policy.id",
        "version_number": "version.version_number",
        "captured_at": "version.captured_at",
        "snapshot": "version.snapshot",
        "content_hash": _sha256_hex("version.snapshot"),
    },
    source=f"""FROM policy_plan AS plan
JOIN policies AS policy
  ON {_in_chunk('policy')} AND policy.tenant_id = plan.tenant_id AND policy.graph_id = plan.graph_id
CROSS JOIN LATERAL generate_series(1, plan.version_count) AS series(n)
JOIN template_version ON template_version.template_no = plan.template_no AND template_version.version_number = series.n
CROSS JOIN LATERAL (
    SELECT series.n AS version_number,
           timed.captured_at,
           jsonb_build_object(
               '@odata.type', plan.odata_type,
               'id', plan.graph_id,
               'displayName', plan.display_name,
               'description', plan.description,
               'version', series.n,
               'roleScopeTagIds', jsonb_build_array('0'),
               'lastModifiedDateTime', to_char(timed.captured_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
           ) || template_version.settings AS snapshot
    FROM (SELECT plan.last_changed_at - make_interval(days => 11 * (plan.version_count - series.n)) AS captured_at)
        AS timed
    OFFSET 0  -- a fence: build each snapshot once, not once for the column and again for its hash
) AS version""",
    uses=("policy_plan", "template_version"),
)

BACKUP_SCHEDULES_INSERT = TenantRowsInsert(
    table="backup_schedules",
    columns={
        "tenant_id": "chunk.tenant_id",
        "workspace_id": "chunk.workspace_id",
        "name": "schedule.entry ->> 'name'",
        "frequency": "schedule.entry ->> 'frequency'",
        "is_enabled": "planned.is_enabled",
        "next_run_at": """CASE WHEN NOT planned.is_enabled THEN NULL
                WHEN schedule.entry ->> 'frequency' = 'hourly' THEN date_trunc('hour', now()) + interval '1 hour'
                WHEN schedule.entry ->> 'frequency' = 'daily' THEN date_trunc('day', now()) + interval '1 day 2 hours'
                WHEN schedule.entry ->> 'frequency' = 'weekly'
                    THEN date_trunc('day', now()) + make_interval(days => 1 + chunk.tenant_key % 7, hours => 2)
                ELSE date_trunc('month', now()) + interval '1 month 2 hours' END""",
        "retention_days": "CAST(schedule.entry ->> 'retention_days' AS integer)",
    },
    source="""FROM chunk
JOIN schedule_template AS schedule ON schedule.entry_no <= chunk.schedule_count
CROSS JOIN LATERAL (
    -- Archived tenants keep their schedules switched off; a few active ones have one paused too.
    SELECT chunk.tenant_status = 'active' AND (chunk.tenant_key + schedule.entry_no) % 5 <> 0 AS is_enabled
) AS planned""",
    uses=("schedule_template",),
)

# A seeded backup holds policies as a backup would: each object's payload stored once per tenant
# (content-addressed), one item per (object, payload), the set listing its items. The payload is
# the simulator's (simulator.demo.policy_payload_skeletons) with the policy's own id, name,
# timestamps and assignments (simulator.demo._assign's rule) filled in; a policy of a type no
# family reads (Conditional Access, feature updates) has no skeleton and is in no backup.
def _assignment_sql() -> str:
    from simulator.shapes import ALL_DEVICES_ID, ALL_USERS_ID

    group = _graph_id('picked.tenant_key', "'group'", '1 + (2 + placed.rank) % picked.group_count')
    excluded = _graph_id('picked.tenant_key', "'group'", '9')
    filter_id = _graph_id('picked.tenant_key', "'configuration'",
                          'filters.item_nos[1 + placed.rank % cardinality(filters.item_nos)]')
    return f"""SELECT coalesce(jsonb_agg(jsonb_build_object(
               'id', picked.graph_id || '_' || coalesce(target.group_id, target.virtual_id),
               'source', 'direct', 'sourceId', picked.graph_id,
               'target', jsonb_build_object(
                   '@odata.type', '#microsoft.graph.' || target.kind || 'AssignmentTarget',
                   'deviceAndAppManagementAssignmentFilterId', target.filter_id,
                   'deviceAndAppManagementAssignmentFilterType',
                   CASE WHEN target.filter_id IS NULL THEN 'none' ELSE 'include' END)
               || CASE WHEN target.group_id IS NULL THEN '{{}}'::jsonb
                       ELSE jsonb_build_object('groupId', target.group_id) END)
           ORDER BY coalesce(target.group_id, target.virtual_id) COLLATE "C"), '[]'::jsonb) AS assignments
    FROM (VALUES ('group', 0, {group}, CAST(NULL AS text), CAST(NULL AS text)),
                 ('exclusionGroup', 0, CASE WHEN picked.group_count > 8 THEN {excluded} END, NULL, NULL),
                 ('allDevices', 1, NULL, '{ALL_DEVICES_ID}',
                  CASE WHEN cardinality(filters.item_nos) > 0 THEN {filter_id} END),
                 ('allLicensedUsers', 2, NULL, '{ALL_USERS_ID}', NULL))
        AS target(kind, pattern, group_id, virtual_id, filter_id)
    WHERE target.pattern = placed.rank % 4 AND (target.group_id IS NOT NULL OR target.virtual_id IS NOT NULL)"""


def _timestamp(sql: str) -> str:
    return f"""to_char(({sql}) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""


_PICKED_POLICIES = f"""FROM (
    SELECT DISTINCT ON (pick.tenant_id, pick.policy_no) pick.*, pick.policy_graph_id AS graph_id,
           chunk.group_count, chunk.configuration_count
    FROM backup_pick AS pick
    JOIN chunk ON chunk.tenant_id = pick.tenant_id
    ORDER BY pick.tenant_id, pick.policy_no, pick.planned_start
) AS picked
JOIN payload_skeleton AS skeleton
  ON skeleton.template_no = picked.template_no AND skeleton.version_number = picked.version_count
CROSS JOIN LATERAL (
    -- The policy's place among its family's policies (policies of one family follow the templates' order).
    SELECT (picked.policy_no - 1) / :policy_templates_count * skeleton.family_count + skeleton.family_rank AS rank
) AS placed
CROSS JOIN LATERAL (
    SELECT coalesce(array_agg(item.n ORDER BY item.n), CAST('{{}}' AS integer[])) AS item_nos
    FROM generate_series(1, picked.configuration_count) AS item(n)
    JOIN configuration_template AS configuration
      ON configuration.entry_no = 1 + (item.n - 1) % :configuration_objects_count
    WHERE configuration.entry ->> 'kind' = 'assignmentFilter'
) AS filters
CROSS JOIN LATERAL ({_assignment_sql()}) AS assigned
CROSS JOIN LATERAL (
    SELECT skeleton.body || jsonb_build_object('object', (skeleton.body -> 'object') || jsonb_build_object(
               'id', picked.graph_id,
               skeleton.name_key, picked.display_name,
               'createdDateTime', {_timestamp('picked.last_changed_at - make_interval(days => 11 * picked.version_count)')},
               'lastModifiedDateTime', {_timestamp('picked.last_changed_at')})
           || CASE WHEN skeleton.etag_version
                   THEN jsonb_build_object('version', '"' || {_graph_id("'etag'", 'picked.graph_id', 'picked.version_count')} || '"')
                   ELSE '{{}}'::jsonb END
           || CASE WHEN skeleton.body -> 'object' ? 'isAssigned'
                   THEN jsonb_build_object('isAssigned', assigned.assignments <> '[]'::jsonb)
                   ELSE '{{}}'::jsonb END)
           || CASE WHEN skeleton.body ? 'assignments' THEN jsonb_build_object('assignments', assigned.assignments)
                   ELSE '{{}}'::jsonb END AS body
    OFFSET 0  -- a fence: build each body once, not once per column that uses it
) AS item"""

BACKUP_PAYLOADS = TenantRowsInsert(
    table="backup_payloads",
    columns={
        "tenant_id": "picked.tenant_id",
        "workspace_id": "picked.workspace_id",
        "content_hash": _sha256_hex("item.body"),
        "family": "skeleton.family",
        "body": "item.body",
        "size_bytes": "octet_length(CAST(item.body AS text))",
        "created_at": "picked.planned_start",
    },
    source=_PICKED_POLICIES + "\nON CONFLICT (tenant_id, content_hash) DO NOTHING",
    uses=("backup_pick", "payload_skeleton", "configuration_template"),
)

BACKUP_ITEMS = TenantRowsInsert(
    table="backup_items",
    columns={
        "tenant_id": "picked.tenant_id",
        "workspace_id": "picked.workspace_id",
        "family": "skeleton.family",
        "graph_id": "picked.graph_id",
        "display_name": "picked.display_name",
        "payload_id": "payload.id",
        "content_hash": "payload.content_hash",
        "created_at": "picked.planned_start",
    },
    source=_PICKED_POLICIES + f"""
JOIN backup_payloads AS payload
  ON {_in_chunk('payload')} AND payload.tenant_id = picked.tenant_id AND payload.content_hash = {_sha256_hex('item.body')}""",
    uses=("backup_pick", "payload_skeleton", "configuration_template"),
)

BACKUP_SETS = TenantRowsInsert(
    table="backup_sets",
    columns={
        "tenant_id": "plan.tenant_id",
        "workspace_id": "plan.workspace_id",
        "name": "plan.name",
        "status": "plan.status",
        "started_at": "plan.planned_start",
        "finished_at": "plan.planned_start + make_interval(mins => 2 + plan.item_count / 4, secs => plan.tenant_key % 60)",
        "item_count": "cardinality(members.item_ids)",
        "item_ids": "members.item_ids",
        "families": "counted.families",
        "error": """CASE plan.status WHEN 'failed' THEN 'Microsoft Graph answered 503 Service Unavailable for every request.'
                WHEN 'partial' THEN 'Some objects could not be read; the backup holds the others.' END""",
        "attempts": "1",
        "triggered_by": "CASE WHEN plan.is_manual THEN 'user' ELSE 'schedule' END",
        "triggered_by_user_id": "actor.user_id",
        "schedule_id": "CASE WHEN plan.is_manual THEN NULL ELSE schedule.id END",
        "created_at": "plan.planned_start",
    },
    source=f"""FROM backup_set_plan AS plan
JOIN backup_schedules AS schedule
  ON {_in_chunk('schedule')} AND schedule.tenant_id = plan.tenant_id AND schedule.name = plan.schedule_name
LEFT JOIN actor ON plan.is_manual AND actor.workspace_id = plan.workspace_id
               AND actor.actor_no = (plan.tenant_key + plan.set_no) % actor.actor_count
CROSS JOIN LATERAL (
    SELECT coalesce(array_agg(item.id ORDER BY item.id), CAST('{{}}' AS bigint[])) AS item_ids
    FROM backup_pick AS pick
    JOIN backup_items AS item
      ON {_in_chunk('item')} AND item.tenant_id = pick.tenant_id AND item.graph_id = pick.policy_graph_id
    WHERE pick.tenant_id = plan.tenant_id AND pick.set_no = plan.set_no
) AS members
CROSS JOIN LATERAL (
    SELECT coalesce(jsonb_object_agg(per_family.family, jsonb_build_object('items', per_family.n, 'skipped', 0)),
                    '{{}}') AS families
    FROM (SELECT item.family, count(*) AS n FROM backup_items AS item
          WHERE item.tenant_id = plan.tenant_id AND item.id = ANY(members.item_ids)
          GROUP BY item.family) AS per_family
) AS counted""",
    uses=("backup_set_plan", "backup_pick", "actor"),
    order_by="plan.tenant_id, plan.set_no",
)

INVENTORY_ITEMS = TenantRowsInsert(
    table="inventory_items",
    columns={
        "tenant_id": "plan.tenant_id",
        "workspace_id": "plan.workspace_id",
        "object_type": "plan.object_type",
        "graph_id": "plan.graph_id",
        "display_name": f"""CASE plan.object_type
                WHEN 'device' THEN upper(left(regexp_replace(plan.tenant_name, '[^A-Za-z]', '', 'g'), 6))
                                   || '-' || (device.entry ->> 'tag') || '-' || lpad(CAST(plan.item_no AS text), 4, '0')
                WHEN 'app' THEN app.entry ->> 'name'
                WHEN 'user' THEN {_person_name('plan.tenant_key', 'plan.item_no')}
                ELSE configuration.entry ->> 'name' END""",
        "data": f"""CASE plan.object_type
                WHEN 'device' THEN jsonb_build_object(
                    'operatingSystem', device.entry ->> 'os',
                    'osVersion', device.entry ->> 'os_version',
                    'manufacturer', device.entry ->> 'manufacturer',
                    'model', device.entry ->> 'model',
                    'serialNumber', upper(left(md5(plan.graph_id), 12)),
                    'managementAgent', 'mdm',
                    'complianceState', CASE plan.item_no % 9 WHEN 0 THEN 'noncompliant'
                                            WHEN 4 THEN 'inGracePeriod' ELSE 'compliant' END,
                    'userPrincipalName',
                        {_user_principal_name('plan.tenant_key', '1 + (plan.item_no - 1) % plan.user_count', 'plan.tenant_domain')},
                    'lastSyncDateTime', to_char((now() - make_interval(hours => plan.item_no * 7 % 96))
                                                AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
                WHEN 'app' THEN jsonb_build_object(
                    '@odata.type', app.entry ->> 'type',
                    'publisher', app.entry ->> 'publisher',
                    'displayVersion', app.entry ->> 'version',
                    'isAssigned', plan.item_no % 5 <> 0)
                WHEN 'user' THEN jsonb_build_object(
                    'userPrincipalName', {_user_principal_name('plan.tenant_key', 'plan.item_no', 'plan.tenant_domain')},
                    'department', {_pick('departments', 'plan.tenant_key + plan.item_no')},
                    'jobTitle', {_pick('job_titles', 'plan.item_no * 3')},
                    'accountEnabled', plan.item_no % 17 <> 0,
                    'usageLocation', 'US')
                ELSE jsonb_build_object('kind', configuration.entry ->> 'kind') || (configuration.entry -> 'data') END""",
        "last_seen_at": "now() - make_interval(hours => plan.item_no * 5 % 72)",
    },
    source="""FROM inventory_plan AS plan
LEFT JOIN device_model AS device
       ON plan.object_type = 'device' AND device.entry_no = 1 + plan.item_no % :device_models_count
LEFT JOIN app_template AS app
       ON plan.object_type = 'app' AND app.entry_no = 1 + (plan.item_no - 1) % :apps_count
LEFT JOIN configuration_template AS configuration
       ON plan.object_type = 'configuration'
      AND configuration.entry_no = 1 + (plan.item_no - 1) % :configuration_objects_count""",
    uses=("inventory_plan", "device_model", "app_template", "configuration_template"),
)

INVENTORY_LINKS = TenantRowsInsert(
    table="inventory_links",
    columns={
        "tenant_id": "link.tenant_id",
        "workspace_id": "link.workspace_id",
        "source_item_id": "source_item.id",
        "target_item_id": "target_item.id",
        "link_type": "link.link_type",
    },
    source=f"""FROM link_plan AS link
JOIN inventory_items AS source_item
  ON {_in_chunk('source_item')} AND source_item.tenant_id = link.tenant_id AND source_item.object_type = link.source_type
 AND source_item.graph_id = {_graph_id('link.tenant_key', 'link.source_type', 'link.source_no')}
JOIN inventory_items AS target_item
  ON {_in_chunk('target_item')} AND target_item.tenant_id = link.tenant_id AND target_item.object_type = link.target_type
 AND target_item.graph_id = {_graph_id('link.tenant_key', 'link.target_type', 'link.target_no')}""",
    uses=("link_plan",),
)

ENTRA_GROUPS_INSERT = TenantRowsInsert(
    table="entra_groups",
    columns={
        "tenant_id": "chunk.tenant_id",
        "workspace_id": "chunk.workspace_id",
        "graph_id": _graph_id("chunk.tenant_key", "'group'", "grp.entry_no"),
        "display_name": "grp.entry ->> 'name'",
        "group_type": "grp.entry ->> 'type'",
        "member_count": "CAST(grp.entry ->> 'members' AS integer) + (chunk.tenant_key * 13 + grp.entry_no * 7) % 40",
    },
    source="FROM chunk JOIN group_template AS grp ON grp.entry_no <= chunk.group_count",
    uses=("group_template",),
)

# Findings are not inserted: they are computed from the rows above by the findings engine
# (app.drift) once the tenants are in, exactly as after a sync (see `demo_findings`).

ENTRA_ROLE_DEFINITIONS = TenantRowsInsert(
    table="entra_role_definitions",
    columns={
        "tenant_id": "chunk.tenant_id",
        "workspace_id": "chunk.workspace_id",
        "graph_id": f"coalesce(role.entry ->> 'id', {_graph_id('chunk.tenant_key', repr('role'), 'role.entry_no')})",
        "display_name": "role.entry ->> 'name'",
        "description": "role.entry ->> 'description'",
        "is_built_in": "CAST(role.entry ->> 'built_in' AS boolean)",
        "permissions": "jsonb_build_array(jsonb_build_object('allowedResourceActions', role.entry -> 'actions'))",
    },
    source="""FROM chunk
JOIN role_template AS role
  -- Every tenant has the built-in roles; every third one also has the MSP's custom roles.
  ON CAST(role.entry ->> 'built_in' AS boolean) OR chunk.tenant_key % 3 = 0""",
    uses=("role_template",),
)

TENANT_PERMISSIONS = TenantRowsInsert(
    table="tenant_permissions",
    columns={
        "tenant_id": "chunk.tenant_id",
        "workspace_id": "chunk.workspace_id",
        "permission_name": "permission.name",
        "status": "CASE WHEN (chunk.tenant_key * 7 + permission.no * 5) % 17 = 0 THEN 'missing' ELSE 'granted' END",
        "checked_at": "now() - make_interval(hours => chunk.tenant_key % 48)",
    },
    source="""FROM chunk
CROSS JOIN unnest(CAST(:graph_permissions AS text[])) WITH ORDINALITY AS permission(name, no)""",
)

TENANT_AUDIT_LOGS = TenantRowsInsert(
    table="audit_logs",
    columns={
        # A tenant's entry always carries the tenant's workspace too.
        "workspace_id": "chunk.workspace_id",
        "tenant_id": "chunk.tenant_id",
        "actor_user_id": "actor.user_id",
        "action": "event.entry ->> 'action'",
        "target_type": "event.entry ->> 'target_type'",
        "target_id": "CAST(chunk.tenant_id AS text)",
        "target_name": "chunk.tenant_name",
        "details": "event.entry -> 'details' || jsonb_build_object('tenant', chunk.tenant_name)",
        "ip_address": """CASE WHEN actor.user_id IS NULL THEN NULL
                ELSE CAST('198.51.100.' || (1 + (chunk.tenant_key + event.entry_no) % 254) AS inet) END""",
        "created_at": """CASE WHEN event.entry_no = 1 THEN chunk.tenant_created_at
                ELSE now() - make_interval(days => (:audit_events_count - event.entry_no) * 3 + 1,
                                           hours => chunk.tenant_key % 24) END""",
    },
    source="""FROM chunk
CROSS JOIN audit_template AS event
LEFT JOIN actor ON event.entry ->> 'actor' = 'member' AND actor.workspace_id = chunk.workspace_id
               AND actor.actor_no = (chunk.tenant_key + event.entry_no) % actor.actor_count""",
    uses=("audit_template", "actor"),
    order_by="chunk.tenant_id, event.entry_no",
)

# Parents before children: later statements find their parents by natural key.
TENANT_ROW_INSERTS = (
    POLICIES,
    POLICY_VERSIONS,
    BACKUP_SCHEDULES_INSERT,
    BACKUP_PAYLOADS,
    BACKUP_ITEMS,
    BACKUP_SETS,
    INVENTORY_ITEMS,
    INVENTORY_LINKS,
    ENTRA_GROUPS_INSERT,
    ENTRA_ROLE_DEFINITIONS,
    TENANT_PERMISSIONS,
    TENANT_AUDIT_LOGS,
)

INSERT_TENANTS = """
WITH planned AS (
    SELECT requested.tenant_key,
           requested.external_id,
           (requested.tenant_key - 1) % 6 AS workspace_slot,
           {prefix} || ' ' || {suffix}
               || CASE WHEN requested.tenant_key <= :distinct_names THEN ''
                       ELSE ' ' || {region}
                            || CASE WHEN requested.tenant_key <= :distinct_names * (1 + cardinality(CAST(:name_regions AS text[])))
                                    THEN '' ELSE ' ' || requested.tenant_key END
                  END AS name
    FROM unnest(CAST(:tenant_keys AS integer[]), CAST(:external_ids AS uuid[])) AS requested(tenant_key, external_id)
), inserted AS (
    INSERT INTO tenants (workspace_id, external_id, name, primary_domain, status, created_at, updated_at)
    SELECT (CAST(:workspace_ids AS bigint[]))[CASE WHEN planned.workspace_slot < 3 THEN 1
                                                  WHEN planned.workspace_slot < 5 THEN 2 ELSE 3 END],
           planned.external_id,
           planned.name,
           lower(regexp_replace(planned.name, '[^A-Za-z0-9]', '', 'g')) || '.onmicrosoft.com',
           CASE WHEN planned.tenant_key % 19 = 17 THEN 'archived' ELSE 'active' END,  -- 17, 36, 55: one per workspace
           now() - make_interval(days => 90 + planned.tenant_key % 60),
           now() - make_interval(days => planned.tenant_key % 9)
    FROM planned
    -- A demo tenant id that exists anywhere (moved to another workspace, say) is not made again.
    WHERE NOT EXISTS (SELECT 1 FROM tenants AS existing WHERE existing.external_id = planned.external_id)
    ORDER BY planned.tenant_key
    ON CONFLICT (workspace_id, external_id) DO NOTHING
    RETURNING id, external_id
)
SELECT inserted.id, planned.tenant_key
FROM inserted JOIN planned USING (external_id)
ORDER BY planned.tenant_key
""".format(
    prefix=_pick("name_prefixes", "requested.tenant_key - 1"),
    suffix=_pick("name_suffixes", "requested.tenant_key - 1"),
    region=_pick("name_regions", "(requested.tenant_key - 1) / :distinct_names - 1"),
)

INSERT_WORKSPACES = """
WITH inserted AS (
    INSERT INTO workspaces (slug, name)
    SELECT workspace.slug, workspace.name
    FROM unnest(CAST(:slugs AS text[]), CAST(:names AS text[])) AS workspace(slug, name)
    ON CONFLICT (slug) DO NOTHING
    RETURNING id, slug, name
), audited AS (
    INSERT INTO audit_logs (workspace_id, action, target_type, target_id, target_name, details)
    SELECT id, 'workspace.create', 'workspace', CAST(id AS text), name,
           jsonb_build_object('before', NULL, 'after', jsonb_build_object('slug', slug, 'name', name))
    FROM inserted
)
SELECT count(*) FROM inserted
"""

INSERT_USERS = """
WITH inserted AS (
    INSERT INTO users (email, name, password_hash, last_workspace_id, is_admin, entra_tenant_id, entra_object_id)
    SELECT person.email, person.name, :password_hash, workspace.id, person.email = :admin_email,
           CASE WHEN person.email = :admin_email THEN CAST(:staff_tenant AS uuid) END,
           CASE WHEN person.email = :admin_email THEN CAST(:admin_object_id AS uuid) END
    FROM unnest(CAST(:emails AS text[]), CAST(:names AS text[]), CAST(:first_slugs AS text[]))
        AS person(email, name, slug)
    JOIN workspaces AS workspace ON workspace.slug = person.slug
    ON CONFLICT (email) DO NOTHING
    RETURNING id, email, name
), audited AS (
    INSERT INTO audit_logs (action, target_type, target_id, target_name, details)
    SELECT 'user.create', 'user', CAST(id AS text), name, jsonb_build_object('email', email)
    FROM inserted
)
SELECT count(*) FROM inserted
"""

INSERT_MEMBERSHIPS = """
WITH inserted AS (
    INSERT INTO workspace_memberships (workspace_id, user_id, role)
    SELECT workspace.id, person.id, membership.role
    FROM unnest(CAST(:emails AS text[]), CAST(:slugs AS text[]), CAST(:roles AS text[]))
        AS membership(email, slug, role)
    JOIN users AS person ON person.email = membership.email
    JOIN workspaces AS workspace ON workspace.slug = membership.slug
    ON CONFLICT (workspace_id, user_id) DO NOTHING
    RETURNING workspace_id, user_id, role
)
INSERT INTO audit_logs (workspace_id, action, target_type, target_id, target_name, details)
SELECT inserted.workspace_id, 'membership.add', 'user', CAST(inserted.user_id AS text), person.name,
       jsonb_build_object('before', NULL, 'after', jsonb_build_object('role', inserted.role))
FROM inserted JOIN users AS person ON person.id = inserted.user_id
"""

SELECT_DEMO_SIGN_INS = """
SELECT person.email, workspace.name AS workspace_name, membership.role
FROM users AS person
JOIN workspace_memberships AS membership ON membership.user_id = person.id
JOIN workspaces AS workspace ON workspace.id = membership.workspace_id
WHERE person.email = ANY(CAST(:emails AS text[]))
ORDER BY array_position(CAST(:emails AS text[]), CAST(person.email AS text)),
         array_position(CAST(:slugs AS text[]), CAST(workspace.slug AS text))
"""


# --- the command's work ----------------------------------------------------------------------


def seed_demo_data(
    scale: int | None = None,
    echo: Callable[[str], Any] = print,
    policies_per_tenant: int | None = None,
) -> None:
    """Load the demo (idempotent) and print the demo sign-ins.

    scale: N x 60 tenants in the same three workspaces (default 1).
    policies_per_tenant: policies per newly created tenant (default 24-48, varying).
    Commits as it goes: once for workspaces and people, then once per chunk of tenants.
    """
    scale = 1 if scale is None else scale
    if scale < 1:
        raise ValueError("scale must be at least 1")
    if policies_per_tenant is not None and policies_per_tenant < 1:
        raise ValueError("policies_per_tenant must be at least 1")
    started = time.perf_counter()

    workspace_ids = _ensure_workspaces_and_people()
    db.session.commit()

    tenant_total = scale * TENANTS_PER_SCALE
    policies_per_tenant_at_most = policies_per_tenant or 48  # the default is 24 + (7k mod 25)
    tenants_per_chunk = max(1, min(MAX_TENANTS_PER_CHUNK, TARGET_POLICIES_PER_CHUNK // policies_per_tenant_at_most))
    chunk_count = math.ceil(tenant_total / tenants_per_chunk)
    catalog = _catalog_parameters()
    inserted_rows: Counter[str] = Counter()

    for chunk_no, first_key in enumerate(range(1, tenant_total + 1, tenants_per_chunk), start=1):
        chunk_started = time.perf_counter()
        tenant_keys = list(range(first_key, min(first_key + tenants_per_chunk, tenant_total + 1)))
        # These statements look expensive enough to the planner to be JIT-compiled, which
        # costs about half a second each and saves nothing here.
        db.session.execute(text("SET LOCAL jit = off"))
        new_tenants = db.session.execute(
            text(INSERT_TENANTS),
            {
                **catalog,
                "tenant_keys": tenant_keys,
                "external_ids": [tenant_external_id(key) for key in tenant_keys],
                "workspace_ids": workspace_ids,
                "distinct_names": len(TENANT_NAME_PREFIXES) * len(TENANT_NAME_SUFFIXES),
            },
        ).all()
        chunk_rows: Counter[str] = Counter(tenants=len(new_tenants))
        if new_tenants:
            parameters = {
                **catalog,
                "tenant_ids": [tenant_id for tenant_id, _ in new_tenants],
                "tenant_keys": [tenant_key for _, tenant_key in new_tenants],
                "policies_per_tenant": policies_per_tenant,
            }
            for insert in TENANT_ROW_INSERTS:
                chunk_rows[insert.table] += db.session.execute(text(insert.sql()), parameters).rowcount
        db.session.commit()
        inserted_rows.update(chunk_rows)
        if chunk_count > 1:
            echo(
                f"  chunk {chunk_no}/{chunk_count}: tenants {tenant_keys[0]}-{tenant_keys[-1]}, "
                f"{len(new_tenants)} new, {sum(chunk_rows.values()):,} rows "
                f"in {time.perf_counter() - chunk_started:.1f}s"
            )

    inserted_rows["findings"] += demo_findings(workspace_ids, echo)

    elapsed = time.perf_counter() - started
    total_rows = sum(inserted_rows.values())
    echo(
        f"Demo data: {inserted_rows['tenants']:,} new tenants (of {tenant_total:,}), "
        f"{total_rows:,} rows in {elapsed:.1f}s ({total_rows / max(elapsed, 1e-9):,.0f} rows/s)."
    )
    if total_rows:
        echo("  " + ", ".join(f"{table} {count:,}" for table, count in inserted_rows.items() if count))
    echo_demo_sign_ins(echo)


# --- findings: computed, as after a sync ----------------------------------------------------------

DEMO_TAGS = (("Managed", "#0d6efd"), ("Pilot ring", "#fd7e14"), ("Healthcare", "#198754"))
DEMO_BASELINE = "MSP Standard"
# The golden tenant's policies that make the demo baseline: templates every demo tenant has.
DEMO_BASELINE_POLICIES = ("WIN - BitLocker - Baseline", "WIN - Compliance - Baseline",
                          "WIN - Settings Catalog - Microsoft Edge Security", "WIN - Update Ring - Pilot",
                          "WIN - Endpoint Security - Firewall", "iOS - Device Restrictions - Corporate")
EVALUATION_COMMIT_EVERY = 200

TAG_DEMO_TENANTS = """
INSERT INTO tenant_tags (tenant_id, tag_id, workspace_id)
SELECT tenant.id, tag.id, tenant.workspace_id
FROM tenants AS tenant
JOIN tags AS tag ON tag.workspace_id = tenant.workspace_id
WHERE tenant.workspace_id = :workspace_id
  AND (tag.name = 'Managed'
       OR (tag.name = 'Pilot ring' AND tenant.id % 4 = 0)
       OR (tag.name = 'Healthcare' AND tenant.id % 5 = 1))
ON CONFLICT (tenant_id, tag_id) DO NOTHING
"""


def demo_findings(workspace_ids: list[int], echo: Callable[[str], Any]) -> int:
    """Each demo workspace's tags and baseline (once), then every tenant's findings from the
    findings engine, and some triage by the workspace's people. Returns the findings created."""
    from app.drift import evaluate_tenant
    from app.drift.baselines import build_from_tenant, record_version
    from app.drift.findings import triage
    from app.operations_models import BaselineAssignment

    before = db.session.scalar(text("SELECT count(*) FROM findings"))
    for workspace_id in workspace_ids:
        for name, colour in DEMO_TAGS:
            db.session.execute(text("INSERT INTO tags (workspace_id, name, colour) VALUES (:w, :n, :c) "
                                    "ON CONFLICT (workspace_id, name) DO NOTHING"), {"w": workspace_id, "n": name, "c": colour})
        db.session.execute(text(TAG_DEMO_TENANTS), {"workspace_id": workspace_id})
        exists = db.session.scalar(text("SELECT id FROM baselines WHERE workspace_id = :w AND name = :n"),
                                   {"w": workspace_id, "n": DEMO_BASELINE})
        golden = db.session.scalar(
            select_first_active_tenant(workspace_id)) if exists is None else None
        if golden is not None:
            baseline = build_from_tenant(workspace_id, DEMO_BASELINE, golden, None, severity="high",
                                         report_extra=False)
            for item in list(baseline.policies):
                if item.name not in DEMO_BASELINE_POLICIES:
                    db.session.delete(item)
            db.session.flush()
            db.session.execute(text("DELETE FROM baseline_versions WHERE baseline_id = :b"), {"b": baseline.id})
            record_version(baseline, f"Built from {golden.name}: the six policies every customer has", None)
            managed = db.session.scalar(text("SELECT id FROM tags WHERE workspace_id = :w AND name = 'Managed'"),
                                        {"w": workspace_id})
            db.session.add(BaselineAssignment(workspace_id=workspace_id, baseline_id=baseline.id, tag_id=managed))
        db.session.commit()
    tenants = list(db.session.scalars(_tenants_to_evaluate(workspace_ids)))
    for number, tenant in enumerate(tenants, start=1):
        evaluate_tenant(tenant)
        if number % EVALUATION_COMMIT_EVERY == 0:
            db.session.commit()
            echo(f"  findings: {number:,}/{len(tenants):,} tenants evaluated")
    db.session.commit()
    _demo_triage(workspace_ids, triage)
    db.session.commit()
    return db.session.scalar(text("SELECT count(*) FROM findings")) - before


def select_first_active_tenant(workspace_id: int):
    from sqlalchemy import select

    from app.models import Tenant

    return (select(Tenant).where(Tenant.workspace_id == workspace_id, Tenant.status == "active")
            .order_by(Tenant.id).limit(1))


def _tenants_to_evaluate(workspace_ids: list[int]):
    """Active tenants that have never been evaluated (a rerun of the seed evaluates nothing again)."""
    from sqlalchemy import exists, select

    from app.models import Finding, Tenant

    evaluated = exists().where(Finding.tenant_id == Tenant.id, Finding.subject_key.is_not(None))
    return (select(Tenant).where(Tenant.workspace_id.in_(workspace_ids), Tenant.status == "active", ~evaluated)
            .order_by(Tenant.id))


def _demo_triage(workspace_ids: list[int], triage) -> None:
    """People at work: some open findings acknowledged, some drift accepted for its tenant."""
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import func, select

    from app.models import Finding, User, WorkspaceMembership

    now = datetime.now(timezone.utc)
    people = dict(db.session.execute(
        select(WorkspaceMembership.workspace_id, User.name).join(User, User.id == WorkspaceMembership.user_id)
        .where(WorkspaceMembership.workspace_id.in_(workspace_ids), WorkspaceMembership.role.in_(("manager", "operator")))
        .order_by(WorkspaceMembership.workspace_id, User.id)).all())
    # Only findings nobody has touched yet: a rerun of the seed triages nothing twice.
    untriaged = db.session.scalars(select(Finding).where(
        Finding.workspace_id.in_(workspace_ids), Finding.status == "open", Finding.subject_key.is_not(None),
        func.jsonb_array_length(Finding.history) == 1).order_by(Finding.id))
    for finding in untriaged:
        who = people.get(finding.workspace_id, "Olivia Chen")
        if finding.id % 7 == 3:
            triage(finding, "acknowledge", by=who, now=now - timedelta(hours=finding.id % 48),
                   note=f"Ticket PSA-{4000 + finding.id % 900}: with the customer")
        elif finding.kind == "drift" and finding.id % 11 == 5:
            triage(finding, "accept", by=who, now=now - timedelta(hours=finding.id % 72),
                   note="Customer exception agreed in the quarterly review",
                   until=now + timedelta(days=30 + finding.id % 60))


def _ensure_workspaces_and_people() -> list[int]:
    """The demo workspaces, users and memberships (existing ones are left as they are)."""
    slugs = [slug for slug, _ in DEMO_WORKSPACES]
    db.session.execute(text(INSERT_WORKSPACES), {"slugs": slugs, "names": [name for _, name in DEMO_WORKSPACES]})
    workspace_id_by_slug = dict(
        db.session.execute(
            text("SELECT slug, id FROM workspaces WHERE slug = ANY(CAST(:slugs AS text[]))"), {"slugs": slugs}
        ).all()
    )

    emails = [email for email, _, _ in DEMO_USERS]
    existing = set(
        db.session.scalars(
            text("SELECT email FROM users WHERE email = ANY(CAST(:emails AS text[]))"), {"emails": emails}
        )
    )
    if existing != set(emails):
        # Hashed once for all new demo users: Argon2id is slow on purpose. Existing users keep theirs.
        db.session.execute(
            text(INSERT_USERS),
            {
                "emails": emails,
                "names": [name for _, name, _ in DEMO_USERS],
                "first_slugs": [next(iter(roles)) for _, _, roles in DEMO_USERS],
                "password_hash": hash_password(DEMO_PASSWORD),
                "admin_email": DEMO_ADMIN_EMAIL,
                # The administrator also signs in with Microsoft at the simulator's staff tenant.
                "staff_tenant": DEMO_STAFF_TENANT_ID, "admin_object_id": demo_staff_object_id(DEMO_ADMIN_EMAIL),
            },
        )

    memberships = [(email, slug, role) for email, _, roles in DEMO_USERS for slug, role in roles.items()]
    db.session.execute(
        text(INSERT_MEMBERSHIPS),
        {
            "emails": [email for email, _, _ in memberships],
            "slugs": [slug for _, slug, _ in memberships],
            "roles": [role for _, _, role in memberships],
        },
    )
    return [workspace_id_by_slug[slug] for slug in slugs]


def echo_demo_sign_ins(echo: Callable[[str], Any]) -> None:
    rows = db.session.execute(
        text(SELECT_DEMO_SIGN_INS),
        {"emails": [email for email, _, _ in DEMO_USERS], "slugs": [slug for slug, _ in DEMO_WORKSPACES]},
    ).all()
    workspaces_by_email: dict[str, list[str]] = {email: [] for email, _, _ in DEMO_USERS}
    for email, workspace_name, role in rows:
        workspaces_by_email[email].append(f"{workspace_name} ({role})")

    email_width = max(len("Email"), *(len(email) for email in workspaces_by_email))
    password_width = max(len("Password"), len(DEMO_PASSWORD))
    echo("")
    echo("Demo sign-ins (one shared password; users who already existed keep their own):")
    echo(f"  {'Email':<{email_width}}  {'Password':<{password_width}}  Workspaces (role)")
    echo(f"  {'-' * email_width}  {'-' * password_width}  {'-' * 40}")
    for email, workspaces in workspaces_by_email.items():
        admin = "; platform administrator" if email == DEMO_ADMIN_EMAIL else ""
        echo(f"  {email:<{email_width}}  {DEMO_PASSWORD:<{password_width}}  {', '.join(workspaces) or '-'}{admin}")
