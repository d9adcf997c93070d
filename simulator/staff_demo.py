"""The demo MSP's own Entra tenant, where its staff sign in to TenantAtlas with Microsoft.

`make run` serves it (with --demo-tenants) and points TenantAtlas's OIDC_* settings at it
(`python -m simulator env`). Its sign-in user is the demo administrator, whom `flask
seed-demo` links by this tenant id and the object id the simulator derives for them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from app.demo import DEMO_STAFF_TENANT_ID, DEMO_STAFF_TENANT_NAME, DEMO_STAFF_USERNAME

if TYPE_CHECKING:
    from .core import Simulator


def add_staff_tenant(sim: Simulator) -> None:
    sim.add_tenant(DEMO_STAFF_TENANT_ID, name=DEMO_STAFF_TENANT_NAME, consented=True)
    sim.set_signin_user(DEMO_STAFF_TENANT_ID, username=DEMO_STAFF_USERNAME, roles=[], name="Olivia Chen")


def oidc_environment(client_id: str, certificate_path: str) -> dict[str, str]:
    """TenantAtlas's Sign in with Microsoft, on the simulator's staff tenant and app registration."""
    return {"OIDC_CLIENT_ID": client_id, "OIDC_TENANT": DEMO_STAFF_TENANT_ID,
            "OIDC_CLIENT_CERTIFICATE": certificate_path}
