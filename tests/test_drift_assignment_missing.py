"""Drift "assignment missing" end to end: a policy unassigned on the simulator, then synced."""
from __future__ import annotations

from tests.graph_support import graph_settings, graph_simulator  # noqa: F401
from tests.sync_support import connected_tenant, graph_app, sync_now  # noqa: F401
from tests.test_drift import drift_findings, golden_and_customer


def test_a_policy_unassigned_on_the_simulator_is_one_assignment_missing_finding_after_a_sync(connected_tenant, make_workspace,
                                                                                 graph_simulator):
    _w, _golden, customer, _baseline = golden_and_customer(connected_tenant, make_workspace)
    external = str(customer.external_id)
    raw = next(o for o in graph_simulator.objects(external, "deviceConfigurations") if o.get("assignments"))
    graph_simulator.change_object(external, "deviceConfigurations", raw["id"], {"assignments": []})
    sync_now(customer)
    found = [f for f in drift_findings(customer, status="open") if f.detail.get("deviation") == "assignment"]
    assert len(found) == 1 and found[0].detail["missing"]
