"""The sync engine against the Graph simulator, over real HTTPS sockets.

Versions only on real change, deletions only from complete listings, partial runs,
throttling, consent revoked mid-run, a nextLink to another host, concurrent triggers.
"""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.graph.families import FAMILIES, STORE_POLICY, family
from app.models import EntraGroup, EntraRoleDefinition, InventoryItem, Policy, PolicyVersion, SyncRun, Tenant
from app.sync.engine import FAILURE_PAUSE_THRESHOLD, SyncAlreadyActive, create_run
from tests.graph_support import graph_settings, graph_simulator  # noqa: F401
from tests.sync_support import connected_tenant, graph_app, sync_now  # noqa: F401

POLICY_FAMILIES = [item for item in FAMILIES if item.store == STORE_POLICY]


def policy_rows(tenant):
    return {row.graph_id: row for row in db.session.scalars(select(Policy).where(Policy.tenant_id == tenant.id))}


def version_count(tenant) -> int:
    return db.session.scalar(select(func.count()).select_from(PolicyVersion).where(PolicyVersion.tenant_id == tenant.id))


def flip_a_setting(raw: dict) -> dict:
    """A change to one real setting of a (non settings catalog) object."""
    for key, value in sorted(raw.items()):
        if isinstance(value, bool) and not key.startswith("@"):
            return {key: not value}
    return {"description": (raw.get("description") or "") + " (changed)"}


def test_first_sync_reads_every_family_and_keeps_one_version_per_policy(connected_tenant, graph_simulator):
    tenant = connected_tenant()
    run = sync_now(tenant)
    assert run.status == "succeeded", run.error
    assert set(run.families) == {item.key for item in FAMILIES}
    expected = sum(len(graph_simulator.objects(str(tenant.external_id), item.key)) for item in POLICY_FAMILIES)
    assert expected > 0
    rows = policy_rows(tenant)
    assert len(rows) == expected
    assert version_count(tenant) == expected
    assert all(row.content_hash and row.deleted_at is None for row in rows.values())
    for item in FAMILIES:
        assert run.families[item.key]["error"] is None
        assert run.families[item.key]["seen"] == len(graph_simulator.objects(str(tenant.external_id), item.key))
    assert db.session.scalar(select(func.count()).select_from(EntraGroup).where(EntraGroup.tenant_id == tenant.id)) > 0
    assert db.session.scalar(select(func.count()).select_from(EntraRoleDefinition)
                             .where(EntraRoleDefinition.tenant_id == tenant.id)) > 0
    assert db.session.scalar(select(func.count()).select_from(InventoryItem)
                             .where(InventoryItem.tenant_id == tenant.id, InventoryItem.object_type == "assignmentFilters")) > 0
    tenant = db.session.get(Tenant, tenant.id)
    assert tenant.last_sync_status == "succeeded" and tenant.connection_status == "connected"
    assert run.requests > 0


def test_a_resync_with_nothing_changed_writes_no_policy_or_version_row(connected_tenant, count_statements):
    tenant = connected_tenant()
    assert sync_now(tenant).status == "succeeded"
    before = {g: (row.updated_at, row.content_hash) for g, row in policy_rows(tenant).items()}
    versions = version_count(tenant)
    with count_statements() as counter:
        run = sync_now(tenant)
    assert run.status == "succeeded"
    writes = [s for s in counter.statements
              if s.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
              and any(table in s for table in ("policies", "policy_versions", "entra_groups", "inventory_items",
                                                "entra_role_definitions"))]
    assert writes == []
    assert {g: (row.updated_at, row.content_hash) for g, row in policy_rows(tenant).items()} == before
    assert version_count(tenant) == versions
    assert all(counts["changed"] == 0 and counts["new"] == 0 for counts in run.families.values())


def test_one_change_on_the_tenant_makes_exactly_one_new_version(connected_tenant, graph_simulator, client, make_user,
                                                               add_member):
    tenant = connected_tenant()
    sync_now(tenant)
    raw = graph_simulator.objects(str(tenant.external_id), "deviceConfigurations")[0]
    changes = flip_a_setting(raw)
    graph_simulator.change_object(str(tenant.external_id), "deviceConfigurations", raw["id"], changes)
    versions = version_count(tenant)
    run = sync_now(tenant)
    assert run.families["deviceConfigurations"]["changed"] == 1
    assert sum(counts["changed"] for counts in run.families.values()) == 1
    assert version_count(tenant) == versions + 1
    policy = policy_rows(tenant)[raw["id"]]
    latest = db.session.scalars(select(PolicyVersion).where(PolicyVersion.policy_id == policy.id)
                                .order_by(PolicyVersion.version_number)).all()
    assert [v.version_number for v in latest] == [1, 2]
    # The diff page shows that change alone.
    from tests.conftest import enter, sign_in
    user = make_user()
    add_member(db.session.get(Tenant, tenant.id).workspace, user, "readonly")
    sign_in(client, user.email)
    enter(client, tenant.workspace)
    page = client.get(f"/admin/t/{tenant.external_id}/policies/{policy.id}/diff?a={latest[0].id}&b={latest[1].id}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    (key,) = changes
    assert key in text


def test_a_policy_gone_from_a_complete_listing_is_marked_deleted_and_kept(connected_tenant, graph_simulator):
    tenant = connected_tenant()
    sync_now(tenant)
    raw = graph_simulator.objects(str(tenant.external_id), "compliancePolicies")[0]
    graph_simulator.delete_object(str(tenant.external_id), "compliancePolicies", raw["id"])
    run = sync_now(tenant)
    assert run.status == "succeeded"
    assert run.families["compliancePolicies"]["deleted"] == 1
    row = policy_rows(tenant)[raw["id"]]
    assert row.deleted_at is not None


def test_a_deleted_policy_says_so_on_its_pages(connected_tenant, graph_simulator, client, make_user, add_member):
    from tests.conftest import enter, sign_in

    tenant = connected_tenant()
    sync_now(tenant)
    raw = graph_simulator.objects(str(tenant.external_id), "compliancePolicies")[0]
    graph_simulator.delete_object(str(tenant.external_id), "compliancePolicies", raw["id"])
    sync_now(tenant)
    user = make_user()
    add_member(db.session.get(Tenant, tenant.id).workspace, user, "readonly")
    sign_in(client, user.email)
    enter(client, tenant.workspace)
    listing = client.get(f"/admin/t/{tenant.external_id}/policies?q={raw['displayName'][:40]}").get_data(as_text=True)
    assert "policy-deleted" in listing
    policy = policy_rows(tenant)[raw["id"]]
    detail = client.get(f"/admin/t/{tenant.external_id}/policies/{policy.id}").get_data(as_text=True)
    assert "Missing from Microsoft Graph since" in detail


def test_a_partial_run_marks_nothing_deleted(connected_tenant, graph_simulator):
    tenant = connected_tenant()
    tid = str(tenant.external_id)
    sync_now(tenant)
    gone = graph_simulator.objects(tid, "settingsCatalog")[0]
    graph_simulator.delete_object(tid, "settingsCatalog", gone["id"])
    graph_simulator.inject("batch-inner-500", count=1, tenant_id=tid, path_contains="configurationPolicies")
    run = sync_now(tenant)
    assert run.status == "partial"
    assert run.families["settingsCatalog"]["error"]
    assert run.families["settingsCatalog"]["deleted"] == 0
    assert policy_rows(tenant)[gone["id"]].deleted_at is None
    # The next complete run does mark it.
    run = sync_now(tenant)
    assert run.status == "succeeded" and run.families["settingsCatalog"]["deleted"] == 1


@pytest.mark.parametrize("fault", ["429", "429-http-date", "429-no-retry-after", "503", "batch-inner-429"])
def test_throttling_is_waited_out_and_the_run_succeeds(connected_tenant, graph_simulator, fault):
    tenant = connected_tenant()
    graph_simulator.inject(fault, count=2, tenant_id=str(tenant.external_id))
    run = sync_now(tenant)
    assert run.status == "succeeded", run.error
    assert run.throttled >= 1


def test_a_next_link_to_another_host_fails_the_run(connected_tenant, graph_simulator):
    tenant = connected_tenant()
    graph_simulator.inject("foreign-next-link", count=1, tenant_id=str(tenant.external_id))
    run = sync_now(tenant)
    assert run.status == "failed"
    assert "host" in run.error.lower() or "link" in run.error.lower()


def test_consent_revoked_fails_the_run_and_says_so_on_the_tenant(connected_tenant, graph_simulator):
    tenant = connected_tenant()
    graph_simulator.revoke_consent(str(tenant.external_id))
    run = sync_now(tenant)
    assert run.status == "failed"
    tenant = db.session.get(Tenant, tenant.id)
    assert tenant.connection_status == "consent_revoked"
    assert policy_rows(tenant) == {}


def test_missing_read_permissions_skip_their_families(connected_tenant):
    tenant = connected_tenant(roles=["DeviceManagementConfiguration.Read.All"])
    run = sync_now(tenant)
    assert run.status == "partial"
    assert run.families["groups"]["error"] and "Group.Read.All" in run.families["groups"]["error"]
    assert run.families["deviceConfigurations"]["error"] is None
    assert db.session.get(Tenant, tenant.id).connection_status == "missing_permissions"


def test_two_triggers_for_one_tenant_never_make_two_active_runs(connected_tenant):
    tenant = connected_tenant()
    first = create_run(tenant, "user")
    db.session.commit()
    with pytest.raises(SyncAlreadyActive) as raised:
        create_run(tenant, "schedule")
    assert raised.value.run.id == first.id


def test_a_duplicate_delivery_of_a_finished_run_changes_nothing(connected_tenant, graph_app):
    from app.row_security import working_in_workspace
    from app.sync.runner import carry_out_sync_run

    tenant = connected_tenant()
    run = sync_now(tenant)
    versions = version_count(tenant)
    with graph_app.app_context(), working_in_workspace(tenant.workspace_id):
        assert carry_out_sync_run(run.id) == "succeeded"
    assert version_count(tenant) == versions
    assert db.session.get(SyncRun, run.id).attempts == 1


def test_groups_use_the_delta_link_and_restart_after_410(connected_tenant, graph_simulator):
    tenant = connected_tenant()
    tid = str(tenant.external_id)
    sync_now(tenant)
    assert db.session.get(Tenant, tenant.id).groups_delta_link
    group = graph_simulator.objects(tid, "groups")[0]
    graph_simulator.delete_object(tid, "groups", group["id"])
    run = sync_now(tenant)
    assert run.families["groups"]["deleted"] == 1
    graph_simulator.inject("delta-expired", count=1, tenant_id=tid)
    run = sync_now(tenant)
    assert run.status == "succeeded" and run.families["groups"]["error"] is None


def test_repeated_failures_pause_periodic_syncing(connected_tenant, graph_simulator):
    tenant = connected_tenant()
    graph_simulator.revoke_consent(str(tenant.external_id))
    for _ in range(FAILURE_PAUSE_THRESHOLD):
        sync_now(tenant)
    tenant = db.session.get(Tenant, tenant.id)
    assert tenant.consecutive_failures == FAILURE_PAUSE_THRESHOLD
    assert tenant.sync_paused_at is not None


def test_consent_revoked_in_the_middle_of_a_run_fails_it_without_deleting_anything(connected_tenant, graph_simulator,
                                                                                   graph_app):
    from app.row_security import working_in_workspace
    from app.sync.runner import carry_out_sync_run

    tenant = connected_tenant()
    tid = str(tenant.external_id)
    sync_now(tenant)
    policies = policy_rows(tenant)

    def revoke_after_the_first_family(key, outcome):
        if key == FAMILIES[0].key:
            graph_simulator.revoke_consent(tid)

    with graph_app.app_context(), working_in_workspace(tenant.workspace_id):
        run = create_run(db.session.get(Tenant, tenant.id), "user")
        db.session.commit()
        assert carry_out_sync_run(run.id, progress=revoke_after_the_first_family) == "failed"
        run = db.session.get(SyncRun, run.id)
    assert FAMILIES[0].key in run.families and len(run.families) < len(FAMILIES)
    tenant = db.session.get(Tenant, tenant.id)
    assert tenant.connection_status == "consent_revoked"
    assert {g: row.deleted_at for g, row in policy_rows(tenant).items()} == {g: None for g in policies}


def test_paging_and_batches_of_twenty_cover_every_object(connected_tenant, graph_simulator):
    tenant = connected_tenant(policies_per_family=110)
    graph_simulator.reset_log()
    run = sync_now(tenant)
    assert run.status == "succeeded", run.error
    tid = str(tenant.external_id)
    served = {item.key: len(graph_simulator.objects(tid, item.key)) for item in POLICY_FAMILIES}
    assert min(served.values()) > graph_simulator.page_size  # more than one page per family
    assert len(policy_rows(tenant)) == sum(served.values())
    mine = [r for r in graph_simulator.requests if r["tenant_id"] == tid]
    batches = [r for r in mine if r["path"].endswith("/$batch")]
    assert batches and all(not r["in_batch"] for r in batches)
    inner = [r for r in mine if r["in_batch"]]
    # settings + assignments for the Settings Catalog, assignments for the others, 20 a batch at most.
    expected_inner = 2 * served["settingsCatalog"] + sum(v for k, v in served.items() if k != "settingsCatalog")
    assert len(inner) == expected_inner
    assert len(batches) >= expected_inner / 20
    assert run.requests / sum(served.values()) <= 0.15
    assert {r["throttle_priority"] for r in mine if r.get("server") != "login"} <= {"low"}


def test_sync_tenant_command_syncs_in_the_foreground_with_exit_codes(connected_tenant, graph_simulator, graph_app,
                                                                     make_workspace):
    runner = graph_app.test_cli_runner()
    tenant = connected_tenant()
    result = runner.invoke(args=["sync-tenant", str(tenant.external_id)])
    assert result.exit_code == 0, result.output
    assert "succeeded:" in result.output and "settingsCatalog" in result.output
    graph_simulator.inject("batch-inner-500", count=1, tenant_id=str(tenant.external_id))
    assert runner.invoke(args=["sync-tenant", str(tenant.external_id)]).exit_code == 3
    graph_simulator.revoke_consent(str(tenant.external_id))
    result = runner.invoke(args=["sync-tenant", str(tenant.external_id)])
    assert result.exit_code == 1 and "failed" in result.output
    unconnected = connected_tenant(status="not_connected")
    result = runner.invoke(args=["sync-tenant", str(unconnected.external_id)])
    assert result.exit_code == 1 and "is not connected" in result.output
    # One id registered, unproved, in two workspaces: the command asks which.
    twin = Tenant(workspace_id=make_workspace().id, external_id=unconnected.external_id, name="Twin claim")
    db.session.add(twin)
    db.session.commit()
    result = runner.invoke(args=["sync-tenant", str(unconnected.external_id)])
    assert result.exit_code == 1 and "--workspace" in result.output
    assert runner.invoke(args=["sync-tenant", "not-a-guid"]).exit_code == 1


def test_a_group_id_with_a_nul_makes_the_family_partial_not_a_crash(connected_tenant):
    """A hostile delta answer (the simulator refuses such ids, so the answer is handed in as
    the client would return it): the bad id is counted, the rest is stored, no delta link kept."""
    from app.graph.client import DeltaPage
    from app.sync.engine import FamilyOutcome, sync_family, usable_id

    class HostileGraph:
        def delta(self, family, delta_link):
            return DeltaPage(items=[{"id": "g\x00x", "displayName": "Broken"},
                                    {"id": "0b5c1d2e-0000-4000-8000-000000000001", "displayName": "Fine",
                                     "groupTypes": [], "securityEnabled": True}],
                             removed_ids=[], delta_link="https://graph.example/v1.0/groups/delta?x=1")

    assert not usable_id("g\x00x") and not usable_id("a\nb") and not usable_id("x" * 129) and usable_id("T_1")
    tenant = connected_tenant()
    outcome = FamilyOutcome()
    sync_family(tenant, family("groups"), HostileGraph(), outcome, None)
    db.session.commit()
    assert (outcome.complete, outcome.failed_items, outcome.new) == (False, 1, 1)
    assert db.session.get(Tenant, tenant.id).groups_delta_link is None


def test_a_run_broken_outside_the_engine_counts_as_a_failure(connected_tenant, graph_app, monkeypatch):
    from app.row_security import working_in_workspace
    from app.sync import runner

    tenant = connected_tenant()

    def broken(run_id, context):
        raise RuntimeError("boom")

    monkeypatch.setattr(runner, "run_sync", broken)
    with graph_app.app_context(), working_in_workspace(tenant.workspace_id):
        run = create_run(db.session.get(Tenant, tenant.id), "user")
        db.session.commit()
        assert runner.carry_out_sync_run(run.id) == "failed"
    tenant = db.session.get(Tenant, tenant.id)
    assert tenant.consecutive_failures == 1 and tenant.connection_status == "failing"
    assert "Internal error" in tenant.connection_error and tenant.next_sync_at is not None


def test_a_run_of_a_tenant_archived_after_queueing_reads_nothing(connected_tenant, graph_simulator, graph_app):
    from app.row_security import working_in_workspace
    from app.sync.runner import carry_out_sync_run

    tenant = connected_tenant()
    with graph_app.app_context(), working_in_workspace(tenant.workspace_id):
        run = create_run(db.session.get(Tenant, tenant.id), "user")
        db.session.get(Tenant, tenant.id).status = "archived"
        db.session.commit()
        graph_simulator.reset_log()
        assert carry_out_sync_run(run.id) == "failed"
    assert [r for r in graph_simulator.requests if r["tenant_id"] == str(tenant.external_id)] == []


def test_move_tenant_waits_for_an_active_sync(connected_tenant, graph_app, make_workspace):
    tenant = connected_tenant()
    create_run(tenant, "user")
    db.session.commit()
    target = make_workspace()
    result = graph_app.test_cli_runner().invoke(args=["move-tenant", str(tenant.external_id), target.slug])
    assert result.exit_code == 1 and "is queued" in result.output
    assert db.session.get(Tenant, tenant.id).workspace_id != target.id
