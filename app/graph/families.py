"""The object families TenantAtlas reads from a tenant: one table drives the Graph client,
the normalizer, the sync engine, the simulator and their tests.

Adding a family here is the whole change: the client knows where to list it and what to
fetch per object, the sync engine knows where to store it, the simulator serves it, and
the tests that iterate FAMILIES cover it.
"""
from __future__ import annotations

from dataclasses import dataclass

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

    @property
    def list_url_path(self) -> str:
        """The path under GRAPH_API_URL: "/beta/deviceManagement/…"."""
        return f"/{self.api_version}{self.list_path}"


FAMILIES: tuple[Family, ...] = (
    Family(
        key="settingsCatalog", label="Settings Catalog", api_version="beta",
        list_path="/deviceManagement/configurationPolicies", per_object=("settings", "assignments"),
        store=STORE_POLICY, name_key="name", policy_type="configurationPolicy",
        read_permission="DeviceManagementConfiguration.Read.All",
        write_permission="DeviceManagementConfiguration.ReadWrite.All",
    ),
    Family(
        key="deviceConfigurations", label="Device configurations", api_version="beta",
        list_path="/deviceManagement/deviceConfigurations", per_object=("assignments",),
        store=STORE_POLICY, name_key="displayName", policy_type="deviceConfiguration",
        read_permission="DeviceManagementConfiguration.Read.All",
        write_permission="DeviceManagementConfiguration.ReadWrite.All",
    ),
    Family(
        key="compliancePolicies", label="Compliance policies", api_version="beta",
        list_path="/deviceManagement/deviceCompliancePolicies", per_object=("assignments",),
        store=STORE_POLICY, name_key="displayName", policy_type="deviceCompliancePolicy",
        read_permission="DeviceManagementConfiguration.Read.All",
        write_permission="DeviceManagementConfiguration.ReadWrite.All",
    ),
    Family(
        key="iosAppProtection", label="App protection (iOS)", api_version="beta",
        list_path="/deviceAppManagement/iosManagedAppProtections", per_object=("assignments",),
        store=STORE_POLICY, name_key="displayName", policy_type="appProtectionPolicy", platform="iOS",
        read_permission="DeviceManagementApps.Read.All",
        write_permission="DeviceManagementApps.ReadWrite.All",
    ),
    Family(
        key="androidAppProtection", label="App protection (Android)", api_version="beta",
        list_path="/deviceAppManagement/androidManagedAppProtections", per_object=("assignments",),
        store=STORE_POLICY, name_key="displayName", policy_type="appProtectionPolicy", platform="android",
        read_permission="DeviceManagementApps.Read.All",
        write_permission="DeviceManagementApps.ReadWrite.All",
    ),
    Family(
        key="assignmentFilters", label="Assignment filters", api_version="beta",
        list_path="/deviceManagement/assignmentFilters", per_object=(),
        store=STORE_INVENTORY, name_key="displayName",
        read_permission="DeviceManagementConfiguration.Read.All",
        write_permission="DeviceManagementConfiguration.ReadWrite.All",
    ),
    Family(
        key="scopeTags", label="Scope tags", api_version="beta",
        list_path="/deviceManagement/roleScopeTags", per_object=(),
        store=STORE_INVENTORY, name_key="displayName",
        read_permission="DeviceManagementRBAC.Read.All",
        write_permission="DeviceManagementRBAC.ReadWrite.All",
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
