"""Drift against the Graph simulator: a baseline built from a golden tenant, a customer tenant
synced, its settings changed, renamed and reverted on the simulator; the findings follow."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from app.drift import evaluate_tenant
from app.drift.baselines import build_from_tenant
from app.drift.findings import triage
from app.extensions import db
from app.models import Finding, Tenant
from app.operations_models import BaselineAssignment, Tag, TenantTag
from app.row_security import working_in_workspace
from tests.graph_support import graph_settings, graph_simulator  # noqa: F401
from tests.sync_support import connected_tenant, graph_app, sync_now  # noqa: F401


def drift_findings(tenant, **conditions):
    statement = select(Finding).where(Finding.tenant_id == tenant.id, Finding.kind == "drift")
    for name, value in conditions.items():
        statement = statement.where(getattr(Finding, name) == value)
    return list(db.session.scalars(statement.order_by(Finding.id)))


def a_boolean_setting(raw: dict) -> str:
    return next(k for k, v in sorted(raw.items()) if isinstance(v, bool) and not k.startswith("@"))


def golden_and_customer(connected_tenant, make_workspace, *, by_tag: bool = True):
    """A golden tenant and a customer in one workspace, synced; a baseline built from the golden
    one and assigned to the customer (through a tag, or directly)."""
    workspace = make_workspace()
    golden, customer = connected_tenant(workspace), connected_tenant(workspace)
    assert sync_now(golden).status == "succeeded"
    assert sync_now(customer).status == "succeeded"
    with working_in_workspace(workspace.id):
        baseline = build_from_tenant(workspace.id, "MSP Standard", golden, None)
        if by_tag:
            tag = Tag(workspace_id=workspace.id, name="Standard")
            db.session.add(tag)
            db.session.flush()
            db.session.add(TenantTag(tenant_id=customer.id, tag_id=tag.id, workspace_id=workspace.id))
            db.session.add(BaselineAssignment(workspace_id=workspace.id, baseline_id=baseline.id, tag_id=tag.id))
        else:
            db.session.add(BaselineAssignment(workspace_id=workspace.id, baseline_id=baseline.id,
                                              tenant_id=customer.id))
        db.session.commit()
    return workspace, golden, customer, baseline


def test_a_customer_like_its_golden_tenant_has_no_setting_drift(connected_tenant, make_workspace):
    _w, _golden, customer, _baseline = golden_and_customer(connected_tenant, make_workspace)
    sync_now(customer)
    assert [f.title for f in drift_findings(customer, status="open")] == []


def test_a_changed_setting_renamed_reverted_and_changed_again_is_one_finding_with_history(
        connected_tenant, make_workspace, graph_simulator):  # noqa: F811
    workspace, _golden, customer, baseline = golden_and_customer(connected_tenant, make_workspace)
    external_id = str(customer.external_id)
    raw = graph_simulator.objects(external_id, "deviceConfigurations")[0]
    key = a_boolean_setting(raw)

    graph_simulator.change_object(external_id, "deviceConfigurations", raw["id"], {key: not raw[key]})
    sync_now(customer)
    [finding] = drift_findings(customer)
    assert finding.status == "open" and finding.detail["setting"] == key
    assert finding.detail["expected"] is raw[key] and finding.detail["actual"] is (not raw[key])
    assert key in finding.title and finding.baseline_id == baseline.id
    first_id = finding.id

    # Renamed on the simulator: matched by content, so still the one finding (no "missing policy").
    graph_simulator.change_object(external_id, "deviceConfigurations", raw["id"], {"displayName": "Renamed by the customer"})
    sync_now(customer)
    [finding] = drift_findings(customer)
    assert finding.id == first_id and finding.status == "open"
    assert finding.detail["policy"] == "Renamed by the customer"

    graph_simulator.change_object(external_id, "deviceConfigurations", raw["id"], {key: raw[key]})
    sync_now(customer)
    [finding] = drift_findings(customer)
    assert finding.id == first_id and finding.status == "resolved" and finding.resolved_at is not None

    graph_simulator.change_object(external_id, "deviceConfigurations", raw["id"], {key: not raw[key]})
    sync_now(customer)
    [finding] = drift_findings(customer)
    assert finding.id == first_id and finding.status == "open" and finding.resolved_at is None
    assert [entry["event"] for entry in finding.history] == ["detected", "resolved", "reopened"]


def test_an_accepted_deviation_stays_accepted_across_runs_and_after_it_returns(
        connected_tenant, make_workspace, graph_simulator):  # noqa: F811
    workspace, _golden, customer, _baseline = golden_and_customer(connected_tenant, make_workspace, by_tag=False)
    external_id = str(customer.external_id)
    raw = graph_simulator.objects(external_id, "deviceConfigurations")[0]
    key = a_boolean_setting(raw)
    graph_simulator.change_object(external_id, "deviceConfigurations", raw["id"], {key: not raw[key]})
    sync_now(customer)
    [finding] = drift_findings(customer)
    now = datetime.now(timezone.utc)
    with working_in_workspace(workspace.id):
        triage(finding, "accept", by="Ada", now=now, note="Kiosk devices need it (ticket 4711)")
        db.session.commit()

    for _ in range(3):
        sync_now(customer)
    [finding] = drift_findings(customer)
    assert finding.status == "accepted"
    assert finding.detail["acceptance"]["reason"] == "Kiosk devices need it (ticket 4711)"
    assert finding.detail["acceptance"]["by"] == "Ada"

    graph_simulator.change_object(external_id, "deviceConfigurations", raw["id"], {key: raw[key]})
    sync_now(customer)
    graph_simulator.change_object(external_id, "deviceConfigurations", raw["id"], {key: not raw[key]})
    sync_now(customer)
    [finding] = drift_findings(customer)
    assert finding.status == "accepted"
    assert [e["event"] for e in finding.history] == ["detected", "accept", "resolved", "returned"]


def test_an_expired_acceptance_opens_the_finding_again(connected_tenant, make_workspace, graph_simulator):  # noqa: F811
    workspace, _golden, customer, _baseline = golden_and_customer(connected_tenant, make_workspace)
    external_id = str(customer.external_id)
    raw = graph_simulator.objects(external_id, "deviceConfigurations")[0]
    key = a_boolean_setting(raw)
    graph_simulator.change_object(external_id, "deviceConfigurations", raw["id"], {key: not raw[key]})
    sync_now(customer)
    [finding] = drift_findings(customer)
    now = datetime.now(timezone.utc)
    with working_in_workspace(workspace.id):
        triage(finding, "accept", by="Ada", now=now, note="Until the migration", until=now + timedelta(days=1))
        db.session.commit()
        tenant = db.session.get(Tenant, customer.id)
        evaluate_tenant(tenant, now + timedelta(hours=1))
        assert finding.status == "accepted"
        evaluate_tenant(tenant, now + timedelta(days=2))
        db.session.commit()
    assert finding.status == "open" and finding.history[-1]["event"] == "acceptance_expired"


def test_re_runs_never_duplicate_findings(connected_tenant, make_workspace, graph_simulator):  # noqa: F811
    workspace, _golden, customer, _baseline = golden_and_customer(connected_tenant, make_workspace)
    external_id = str(customer.external_id)
    for family in ("deviceConfigurations", "compliancePolicies"):
        for raw in graph_simulator.objects(external_id, family)[:2]:
            key = a_boolean_setting(raw)
            graph_simulator.change_object(external_id, family, raw["id"], {key: not raw[key]})
    sync_now(customer)
    first = db.session.scalar(select(func.count()).select_from(Finding).where(Finding.tenant_id == customer.id))
    assert len(drift_findings(customer)) >= 3
    with working_in_workspace(workspace.id):
        tenant = db.session.get(Tenant, customer.id)
        for _ in range(5):
            evaluate_tenant(tenant)
        db.session.commit()
    sync_now(customer)
    again = db.session.scalar(select(func.count()).select_from(Finding).where(Finding.tenant_id == customer.id))
    assert again == first
    keys = db.session.scalars(select(Finding.subject_key).where(Finding.tenant_id == customer.id)).all()
    assert len(keys) == len(set(keys))


def test_a_deleted_policy_is_a_missing_policy_finding_and_an_unassigned_baseline_resolves_its_findings(
        connected_tenant, make_workspace, graph_simulator):  # noqa: F811
    workspace, _golden, customer, baseline = golden_and_customer(connected_tenant, make_workspace, by_tag=False)
    external_id = str(customer.external_id)
    raw = graph_simulator.objects(external_id, "compliancePolicies")[0]
    graph_simulator.delete_object(external_id, "compliancePolicies", raw["id"])
    sync_now(customer)
    missing = [f for f in drift_findings(customer, status="open") if f.detail["deviation"] == "missing_policy"]
    assert len(missing) == 1 and missing[0].severity == "high"
    with working_in_workspace(workspace.id):
        db.session.execute(BaselineAssignment.__table__.delete().where(
            BaselineAssignment.baseline_id == baseline.id))
        db.session.commit()
    sync_now(customer)
    assert drift_findings(customer, status="open") == []
