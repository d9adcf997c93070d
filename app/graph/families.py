"""The object families TenantAtlas reads from a tenant: one table drives the Graph client,
the normalizer, the sync engine, the simulator and their tests.

Adding a family here is the whole change: the client knows where to list it and what to
fetch per object, the sync engine knows where to store it, the simulator serves it, and
the tests that iterate FAMILIES cover it.

Writes (restore) are described here too: whether a family is restored at all, how an
object is updated (PATCH, or PUT for the Settings Catalog), whether it has an ``assign``
action, and which properties Graph refuses in a write body. app/graph/writable.py turns a
stored backup into a body from these fields; the simulator refuses what they say Graph
refuses. Where the rules come from (Microsoft's Graph documentation, and what the
MIT-licensed IntuneCD and the AGPL CIPP-API projects send to Graph in production):

- Settings Catalog updates are a PUT of the whole policy with its ``settings``: Graph
  documents PATCH (https://learn.microsoft.com/en-us/graph/api/intune-deviceconfigv2-devicemanagementconfigurationpolicy-update),
  but a PATCH does not change settings; IntuneCD (update/Intune/SettingsCatalog.py) and
  CIPP-API (Set-CIPPIntunePolicy.ps1, "Catalog") PUT the policy, settings included.
- ``POST {collection}/{id}/assign`` with ``{"assignments": [{"target": {...}}]}`` replaces an
  object's assignments (https://learn.microsoft.com/en-us/graph/api/intune-deviceconfig-deviceconfiguration-assign,
  https://learn.microsoft.com/en-us/graph/api/intune-mam-targetedmanagedappprotection-assign;
  CIPP-API Set-CIPPAssignedPolicy.ps1 sends the whole set with the same body for
  configurationPolicies, deviceConfigurations, deviceCompliancePolicies and app protection).
- Read-only keys: ids, timestamps, ``version``, derived counters and flags (IntuneCD
  intunecdlib/remove_keys.py, CIPP-API's ExcludeProperty lists); navigation properties
  (``assignments``) are written by their own action. An assignment filter's ``platform``
  cannot change after creation (IntuneCD update/Intune/Filters.py drops it from updates).
- A compliance policy is created with exactly one "block" scheduled action or Graph answers
  400 "Compliance policy must have one and only one block scheduled action"; a GET does not
  return the actions (https://github.com/microsoftgraph/microsoft-graph-docs/issues/4103,
  .../issues/7746), and a PATCH may not carry them (CIPP-API drops them from edits).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

# Where a family's objects are kept (the sync engine's targets).
STORE_POLICY = "policy"  # policies + policy_versions, versioned by content hash
STORE_INVENTORY = "inventory"  # inventory_items (filters, scope tags)
STORE_GROUP = "group"  # entra_groups, read with a delta query
STORE_ROLE = "role"  # entra_role_definitions


@dataclass(frozen=True)
class Family:
    key: str  # stable identifier, used in run records, URLs of the simulator and tests
    label: str  # what the UI calls it
    api_version: str  # "beta" where Intune only has beta, else "v1.0"
    list_path: str  # relative to the version root, e.g. "/deviceManagement/configurationPolicies"
    per_object: tuple[str, ...]  # relations fetched per object with $batch: "{list_path}/{id}/{relation}"
    store: str  # one of the STORE_* targets
    name_key: str  # "name" for the Settings Catalog, "displayName" elsewhere
    read_permission: str  # the application permission reading it needs
    write_permission: str  # the one restoring it will need
    policy_type: str | None = None  # Policy.policy_type for STORE_POLICY families
    delta: bool = False  # list_path is a delta query ("…/delta"); its deltaLink is kept per tenant
    platform: str | None = None  # fixed platform (app protection is per platform); else read from the object
    # --- writes (restore) ---
    restorable: bool = False  # a restore may create or update this family's objects
    update_method: str = "PATCH"  # how an existing object is written: "PATCH" (merge) or "PUT" (whole)
    assign_action: str | None = None  # "assign": POST {list_path}/{id}/assign replaces the assignments
    read_only_keys: frozenset[str] = frozenset()  # top-level keys Graph refuses in any write body
    create_only_keys: frozenset[str] = frozenset()  # sent when creating, refused when updating
    inline_relations: tuple[str, ...] = ()  # per_object relations written inside the object's own body
    has_subtypes: bool = False  # the collection holds several @odata.types: a create must name one
    # Properties a create needs that a stored object lacks (Graph does not return them), added
    # to a create body when missing.
    create_defaults: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), compare=False, hash=False)

    @property
    def list_url_path(self) -> str:
        """The path under GRAPH_API_URL: "/beta/deviceManagement/…"."""
        return f"/{self.api_version}{self.list_path}"

    @property
    def entity_path(self) -> str:
        """The collection's path without a delta function: where objects are got by id,
        filtered, created ("/groups" for "/groups/delta")."""
        return self.list_path.removesuffix("/delta") if self.delta else self.list_path

    @property
    def entity_url_path(self) -> str:
        return f"/{self.api_version}{self.entity_path}"


# Server-managed on every Intune object; Graph sets them.
_INTUNE_READ_ONLY = frozenset({"id", "createdDateTime", "lastModifiedDateTime"})
# The one scheduled action a compliance policy must be created with: block at once. A GET does
# not return the policy's actions, so a backup has none to restore (see the module docstring).
_COMPLIANCE_BLOCK_ACTION = MappingProxyType({"scheduledActionsForRule": (
    MappingProxyType({"ruleName": "PasswordRequired", "scheduledActionConfigurations": (
        MappingProxyType({"actionType": "block", "gracePeriodHours": 0, "notificationTemplateId": "",
                          "notificationMessageCCList": ()}),
    )}),
)})

FAMILIES: tuple[Family, ...] = (
    Family(
        key="settingsCatalog", label="Settings Catalog", api_version="beta",
        list_path="/deviceManagement/configurationPolicies", per_object=("settings", "assignments"),
        store=STORE_POLICY, name_key="name", policy_type="configurationPolicy",
        read_permission="DeviceManagementConfiguration.Read.All",
        write_permission="DeviceManagementConfiguration.ReadWrite.All",
        restorable=True, update_method="PUT", assign_action="assign", inline_relations=("settings",),
        read_only_keys=_INTUNE_READ_ONLY | {"settingCount", "isAssigned", "creationSource", "priorityMetaData",
                                            "assignments"},
    ),
    Family(
        key="deviceConfigurations", label="Device configurations", api_version="beta",
        list_path="/deviceManagement/deviceConfigurations", per_object=("assignments",),
        store=STORE_POLICY, name_key="displayName", policy_type="deviceConfiguration",
        read_permission="DeviceManagementConfiguration.Read.All",
        write_permission="DeviceManagementConfiguration.ReadWrite.All",
        restorable=True, assign_action="assign", has_subtypes=True,
        # The last four: Windows Update for Business rings report them (CIPP-API drops them).
        read_only_keys=_INTUNE_READ_ONLY | {"version", "supportsScopeTags", "assignments",
                                            "featureUpdatesWillBeRolledBack", "qualityUpdatesWillBeRolledBack",
                                            "featureUpdatesPauseStartDate", "qualityUpdatesPauseStartDate"},
    ),
    Family(
        key="compliancePolicies", label="Compliance policies", api_version="beta",
        list_path="/deviceManagement/deviceCompliancePolicies", per_object=("assignments",),
        store=STORE_POLICY, name_key="displayName", policy_type="deviceCompliancePolicy",
        read_permission="DeviceManagementConfiguration.Read.All",
        write_permission="DeviceManagementConfiguration.ReadWrite.All",
        restorable=True, assign_action="assign", has_subtypes=True,
        read_only_keys=_INTUNE_READ_ONLY | {"version", "supportsScopeTags", "assignments"},
        create_only_keys=frozenset({"scheduledActionsForRule"}), create_defaults=_COMPLIANCE_BLOCK_ACTION,
    ),
    Family(
        key="iosAppProtection", label="App protection (iOS)", api_version="beta",
        list_path="/deviceAppManagement/iosManagedAppProtections", per_object=("assignments",),
        store=STORE_POLICY, name_key="displayName", policy_type="appProtectionPolicy", platform="iOS",
        read_permission="DeviceManagementApps.Read.All",
        write_permission="DeviceManagementApps.ReadWrite.All",
        restorable=True, assign_action="assign",
        read_only_keys=_INTUNE_READ_ONLY | {"version", "isAssigned", "deployedAppCount", "assignments", "apps",
                                            "deploymentSummary"},
    ),
    Family(
        key="androidAppProtection", label="App protection (Android)", api_version="beta",
        list_path="/deviceAppManagement/androidManagedAppProtections", per_object=("assignments",),
        store=STORE_POLICY, name_key="displayName", policy_type="appProtectionPolicy", platform="android",
        read_permission="DeviceManagementApps.Read.All",
        write_permission="DeviceManagementApps.ReadWrite.All",
        restorable=True, assign_action="assign",
        read_only_keys=_INTUNE_READ_ONLY | {"version", "isAssigned", "deployedAppCount", "assignments", "apps",
                                            "deploymentSummary"},
    ),
    Family(
        key="assignmentFilters", label="Assignment filters", api_version="beta",
        list_path="/deviceManagement/assignmentFilters", per_object=(),
        store=STORE_INVENTORY, name_key="displayName",
        read_permission="DeviceManagementConfiguration.Read.All",
        write_permission="DeviceManagementConfiguration.ReadWrite.All",

        restorable=True, read_only_keys=_INTUNE_READ_ONLY | {"payloads"},
        create_only_keys=frozenset({"platform"}),
    ),
    Family(
        key="scopeTags", label="Scope tags", api_version="beta",
        list_path="/deviceManagement/roleScopeTags", per_object=(),
        store=STORE_INVENTORY, name_key="displayName",
        read_permission="DeviceManagementRBAC.Read.All",
        write_permission="DeviceManagementRBAC.ReadWrite.All",

        restorable=True, read_only_keys=frozenset({"id", "isBuiltIn", "assignments"}),
    ),
    Family(
        key="groups", label="Entra groups", api_version="v1.0",
        list_path="/groups/delta", per_object=(), store=STORE_GROUP, name_key="displayName", delta=True,
        read_permission="Group.Read.All", write_permission="Group.Read.All",
    ),
    Family(
        key="roleDefinitions", label="Directory role definitions", api_version="v1.0",
        list_path="/roleManagement/directory/roleDefinitions", per_object=(),
        store=STORE_ROLE, name_key="displayName",
        read_permission="RoleManagement.Read.Directory", write_permission="RoleManagement.Read.Directory",
    ),
)

FAMILIES_BY_KEY = {family.key: family for family in FAMILIES}


def family(key: str) -> Family:
    return FAMILIES_BY_KEY[key]


def restorable_families() -> tuple[Family, ...]:
    return tuple(item for item in FAMILIES if item.restorable)


def odata_string(value: str) -> str:
    """A string literal for an OData $filter: in single quotes, each single quote doubled
    ("Escaping single quotes", https://learn.microsoft.com/en-us/graph/query-parameters)."""
    return "'" + str(value).replace("'", "''") + "'"


def name_filter(family: Family, name: str) -> str:
    """The $filter that finds a family's objects by name: "displayName eq 'O''Brien'"
    (the Settings Catalog names its objects with "name")."""
    return f"{family.name_key} eq {odata_string(name)}"


def required_permissions(tier: str = "read") -> tuple[str, ...]:
    """The application permissions a tier needs, in a stable order: "read" (sync) or "write" (restore)."""
    names: list[str] = []
    for item in FAMILIES:
        name = item.read_permission if tier == "read" else item.write_permission
        if name not in names:
            names.append(name)
    return tuple(names)


def permission_features() -> dict[str, list[str]]:
    """For the Permissions page: each permission and the families (features) that need it."""
    needed: dict[str, list[str]] = {}
    for item in FAMILIES:
        needed.setdefault(item.read_permission, []).append(f"Sync {item.label}")
        if item.write_permission != item.read_permission:
            needed.setdefault(item.write_permission, []).append(f"Restore {item.label}")
    return needed
