"""TenantAtlas's own Microsoft Graph simulator: the identity platform and the Graph subset
of app/graph/families.py, served over real HTTPS on loopback.

    from simulator import Simulator, ThrottleLimits

    sim = Simulator.start(tmp_path, demo_tenants=False, throttle=None, latency_ms=0, page_size=100)
    sim.api_url, sim.login_url          # GRAPH_API_URL, GRAPH_LOGIN_URL
    sim.ca_bundle                       # GRAPH_CA_BUNDLE (the CA that signed both server certificates)
    sim.client_id, sim.client_secret, sim.client_certificate_path
    sim.add_tenant(tenant_id, name="Contoso", roles=None, consented=True, objects=None, policies_per_family=None,
                   permissions=None)        # permissions="read": no write permission in its tokens
    sim.set_roles(...), sim.revoke_consent(...), sim.grant_consent(...), sim.set_consent_mode("accept")
    sim.set_signin_user(tenant_id, username=None, roles=("62e90394-...",))   # who OIDC sign-in signs in
    sim.objects(...), sim.add_object(...), sim.change_object(...), sim.delete_object(...)
    sim.inject("429", count=1, tenant_id=None, path_contains=None, method=None)   # "write-then-504": done, then 504
    sim.write_log(tenant_id), sim.reset_write_log(tenant_id)             # the Graph writes done in a tenant
    sim.refuse_writes(tenant_id, family, object_id=None, name=None, status=400, code="BadRequest", message=None)
    sim.refusals(tenant_id), sim.clear_refusals(tenant_id)
    sim.requests, sim.reset_log()
    sim.stop()

What it serves is derived from FAMILIES; see graph.py (Graph), writes.py (create, update,
assign for the restorable families), identity.py (tokens,
discovery, admin consent), control.py (the loopback control API), demo.py (demo tenants
from app/demo/fixtures) and `python -m simulator --help` (serve, and the control CLI).
"""
from .common import FAULTS, RequestRecord, ThrottleLimits, WriteRecord
from .core import Simulator
from .store import StoreError

__all__ = ["FAULTS", "RequestRecord", "Simulator", "StoreError", "ThrottleLimits", "WriteRecord"]
