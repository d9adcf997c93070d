"""Demo data shared by `flask seed-demo` and the Graph simulator.

The catalogs live as JSON under `fixtures/` (one file a catalog) so that the seed's SQL
generator and the simulator's demo tenants are built from the same records:

policy_templates        policies: version 1 is `settings`, version v+1 applies changes[v-1]
backup_schedules, device_models, apps, configuration_objects, entra_groups, entra_roles,
graph_permissions, audit_events
names                   name lists (tenant name parts, people, departments, policy variants)

`load_fixture(name)` parses a file once and returns the same object on every call: treat
it as read-only (copy before changing anything).
"""
from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"


@functools.cache
def load_fixture(name: str) -> Any:
    """The parsed content of fixtures/<name>.json (cached; do not mutate it)."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"not a fixture name: {name!r}")
    path = FIXTURES_DIR / f"{name}.json"
    if not path.is_file():
        raise KeyError(f"no demo fixture named {name!r} in {FIXTURES_DIR}")
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def fixture_names() -> list[str]:
    return sorted(path.stem for path in FIXTURES_DIR.glob("*.json"))


def names(kind: str) -> tuple[str, ...]:
    """One of the name lists of names.json (e.g. "tenant_name_prefixes")."""
    return tuple(load_fixture("names")[kind])


def demo_tenant_name(tenant_key: int) -> str:
    """The company name `flask seed-demo` gives demo tenant `tenant_key` (same rule as its SQL).

    prefix + suffix; past the first prefixes x suffixes keys a region is added, and past
    the regions as well the key itself.
    """
    prefixes = names("tenant_name_prefixes")
    suffixes = names("tenant_name_suffixes")
    regions = names("tenant_name_regions")
    distinct = len(prefixes) * len(suffixes)
    index = tenant_key - 1
    name = f"{prefixes[index % len(prefixes)]} {suffixes[index % len(suffixes)]}"
    if tenant_key > distinct:
        name += " " + regions[((tenant_key - 1) // distinct - 1) % len(regions)]
        if tenant_key > distinct * (1 + len(regions)):
            name += f" {tenant_key}"
    return name


def demo_tenant_domain(tenant_key: int) -> str:
    """The primary domain the seed gives demo tenant `tenant_key`."""
    return re.sub(r"[^A-Za-z0-9]", "", demo_tenant_name(tenant_key)).lower() + ".onmicrosoft.com"


# --- the demo MSP's own Entra tenant: where its staff "Sign in with Microsoft" (the simulator) ---

DEMO_STAFF_TENANT_ID = "5a7f0e11-d3a0-4c1e-9b2f-7e57a11a5000"
DEMO_STAFF_TENANT_NAME = "TenantAtlas Demo MSP"
DEMO_STAFF_USERNAME = "olivia.chen@tenantatlas.demo"  # the demo administrator (app.demo.seed.DEMO_ADMIN_EMAIL)


def demo_staff_object_id(username: str = DEMO_STAFF_USERNAME) -> str:
    """The object id the simulator gives `username` in the staff tenant (simulator.shapes.stable_guid)."""
    import hashlib
    import uuid

    return str(uuid.UUID(hex=hashlib.md5(f"{DEMO_STAFF_TENANT_ID}/user/{username.lower()}".encode()).hexdigest()))  # noqa: S324
