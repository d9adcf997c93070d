"""Restores against the Graph simulator, over real HTTPS sockets: planned per item, written only
where the plan says, groups mapped by id then by name, failures per item, verified afterwards,
resumed without writing anything twice."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import BackupItem, Policy, PolicyVersion, RestoreItem, RestoreRun, Tenant
from app.restore.service import RestoreRefused, execute, start_restore_from_backup, start_restore_from_version
from tests.graph_support import graph_settings, graph_simulator  # noqa: F401
from tests.sync_support import backup_now, connected_tenant, graph_app, restore_step, sync_now  # noqa: F401


@pytest.fixture
def manager(make_user):
    return make_user(name="Restoring Manager")


def ready(tenant):
    """Synced once: the tenant's granted permissions and groups are known."""
    run = sync_now(tenant)
    assert run.status == "succeeded", run.error
    return db.session.get(Tenant, tenant.id)


def items_by_name(backup_set, family=None) -> dict[str, BackupItem]:
    rows = db.session.scalars(select(BackupItem).where(BackupItem.tenant_id == backup_set.tenant_id,
                                                       BackupItem.id.in_(backup_set.item_ids))).all()
    return {row.display_name: row for row in rows if family is None or row.family == family}


def plan(backup_set, item_ids, target, user, mode="keep") -> RestoreRun:
    run = start_restore_from_backup(backup_set, item_ids, target, mode=mode, user=user)
    db.session.commit()
    restore_step(run.id, run.workspace_id, "plan_restore")
    return db.session.get(RestoreRun, run.id)


def run_items(run) -> list[RestoreItem]:
    db.session.expire_all()
    return list(db.session.scalars(select(RestoreItem).where(RestoreItem.restore_run_id == run.id)
                                   .order_by(RestoreItem.position)))


def execute_now(run, user) -> RestoreRun:
    run = db.session.get(RestoreRun, run.id)
    execute(run, user)
    db.session.commit()
    restore_step(run.id, run.workspace_id, "execute_restore")
    db.session.expire_all()
    return db.session.get(RestoreRun, run.id)


def test_the_plan_lists_exactly_the_selected_items_and_skips_identical_ones(connected_tenant, manager):
    tenant = ready(connected_tenant())
    backup_set = backup_now(tenant)
    chosen = list(items_by_name(backup_set, "deviceConfigurations").values())[:2]
    run = plan(backup_set, [item.id for item in chosen], tenant, manager)
    assert run.status == "planned", run.error
    items = run_items(run)
    assert [(item.source_graph_id) for item in items] == [item.graph_id for item in
                                                          sorted(chosen, key=lambda i: (i.family, i.display_name.lower(), i.id))]
    assert {item.action for item in items} == {"skip"}
    assert run.summary["actions"] == {"skip": 2}


def test_restoring_a_changed_policy_reverts_it_writes_nothing_else_and_verifies(connected_tenant, graph_simulator,
                                                                                 manager):
    tenant = ready(connected_tenant())
    external = str(tenant.external_id)
    backup_set = backup_now(tenant)
    [first, second] = graph_simulator.objects(external, "deviceConfigurations")[:2]
    graph_simulator.change_object(external, "deviceConfigurations", first["id"], {"description": "drifted"})
    graph_simulator.change_object(external, "deviceConfigurations", second["id"], {"description": "also drifted"})
    item = items_by_name(backup_set)[first["displayName"]]
    run = plan(backup_set, [item.id], tenant, manager)
    [planned] = run_items(run)
    assert planned.action == "update" and planned.target_graph_id == first["id"]
    assert any(row["path"] == "Description" and row["left"] and "drifted" in row["left"]
               for row in planned.plan["diff"])
    graph_simulator.reset_write_log(external)
    run = execute_now(run, manager)
    assert run.status == "succeeded", (run.error, [(i.status, i.error) for i in run_items(run)])
    [done] = run_items(run)
    assert done.status == "updated" and done.verified is True
    assert graph_simulator.get_object(external, "deviceConfigurations", first["id"]).get("description") == \
        first.get("description")
    # The policy outside the selection is untouched, and nothing else was written.
    assert graph_simulator.get_object(external, "deviceConfigurations", second["id"])["description"] == "also drifted"
    assert {(w.family, w.object_id) for w in graph_simulator.write_log(external)} == {("deviceConfigurations", first["id"])}


def test_a_cross_tenant_restore_creates_objects_maps_groups_by_name_and_reports_the_unmatched(
        connected_tenant, graph_simulator, manager, make_workspace):
    workspace = make_workspace()
    source = ready(connected_tenant(workspace))
    target = ready(connected_tenant(workspace, name="Fabrikam Target"))
    backup_set = backup_now(source)
    policy = next(obj for obj in graph_simulator.objects(str(source.external_id), "compliancePolicies")
                  if any(a.get("target", {}).get("groupId") for a in obj.get("assignments") or []))
    group_ids = {a["target"]["groupId"] for a in policy["assignments"]
                 if a.get("target", {}).get("groupId") and "exclusion" not in a["target"].get("@odata.type", "")}
    source_groups = {g["id"]: g["displayName"] for g in graph_simulator.objects(str(source.external_id), "groups")}
    # The target has one of the included groups by name (another id); the other included ones are missing.
    # (Its excluded groups exist there by name: an unmatched exclusion would hold every assignment back.)
    kept_id = sorted(group_ids)[0]
    target_groups = graph_simulator.objects(str(target.external_id), "groups")
    for group in target_groups:
        if group["displayName"] in {source_groups[g] for g in group_ids}:
            graph_simulator.delete_object(str(target.external_id), "groups", group["id"])
    new_group = graph_simulator.add_object(str(target.external_id), "groups",
                                           {"displayName": source_groups[kept_id], "securityEnabled": True,
                                            "mailEnabled": False, "groupTypes": []})
    for existing in graph_simulator.objects(str(target.external_id), "compliancePolicies"):
        if existing["displayName"] == policy["displayName"]:
            graph_simulator.delete_object(str(target.external_id), "compliancePolicies", existing["id"])
    item = items_by_name(backup_set, "compliancePolicies")[policy["displayName"]]
    run = plan(backup_set, [item.id], target, manager, mode="replace")
    [planned] = run_items(run)
    assert planned.action == "create"
    target_group_ids = {g["id"] for g in graph_simulator.objects(str(target.external_id), "groups")}
    assert planned.plan["assignments"] and all(a["target"].get("groupId") in target_group_ids | {None}
                                               for a in planned.plan["assignments"])
    assert new_group in {a["target"].get("groupId") for a in planned.plan["assignments"]}
    unmatched = {entry["id"] for entry in planned.plan["unmatched"]}
    assert unmatched == group_ids - {kept_id}
    assert {entry["id"] for entry in run.summary["unmatched"]} == group_ids - {kept_id}
    run = execute_now(run, manager)
    [done] = run_items(run)
    assert done.status == "created" and done.verified is True, done.error
    created = graph_simulator.get_object(str(target.external_id), "compliancePolicies", done.target_graph_id)
    assert created["displayName"] == policy["displayName"]
    written = {a["target"].get("groupId") for a in created["assignments"] if a["target"].get("groupId")}
    assert new_group in written and written <= target_group_ids


def test_an_item_refused_by_graph_fails_alone_and_the_rest_is_restored(connected_tenant, graph_simulator, manager):
    tenant = ready(connected_tenant())
    external = str(tenant.external_id)
    backup_set = backup_now(tenant)
    first, second = graph_simulator.objects(external, "deviceConfigurations")[:2]
    for obj in (first, second):
        graph_simulator.change_object(external, "deviceConfigurations", obj["id"], {"description": "drifted"})
    graph_simulator.refuse_writes(external, "deviceConfigurations", object_id=first["id"], status=400,
                                  code="BadRequest", message="Setting X is not supported")
    items = items_by_name(backup_set)
    run = plan(backup_set, [items[first["displayName"]].id, items[second["displayName"]].id], tenant, manager)
    run = execute_now(run, manager)
    assert run.status == "partial"
    results = {item.source_graph_id: item for item in run_items(run)}
    assert results[first["id"]].status == "failed" and "Setting X is not supported" in results[first["id"]].error
    assert results[first["id"]].error.count("Refused by Microsoft Graph") == 1  # said once, not nested
    assert results[second["id"]].status == "updated" and results[second["id"]].verified


def test_a_create_that_graph_did_but_did_not_confirm_is_adopted_not_made_twice(connected_tenant, graph_simulator,
                                                                                manager):
    tenant = ready(connected_tenant())
    external = str(tenant.external_id)
    backup_set = backup_now(tenant)
    victim = graph_simulator.objects(external, "deviceConfigurations")[0]
    graph_simulator.delete_object(external, "deviceConfigurations", victim["id"])
    item = items_by_name(backup_set)[victim["displayName"]]
    run = plan(backup_set, [item.id], tenant, manager, mode="skip")
    graph_simulator.inject("write-then-504", tenant_id=external, method="POST")
    graph_simulator.reset_write_log(external)
    run = execute_now(run, manager)
    [done] = run_items(run)
    assert done.status == "created" and done.verified, done.error
    creates = [w for w in graph_simulator.write_log(external) if w.operation == "create"]
    assert len(creates) == 1 and creates[0].object_id == done.target_graph_id


def test_a_resumed_restore_does_not_repeat_finished_items_or_a_create_that_happened(connected_tenant, graph_simulator,
                                                                                      manager):
    """As a worker killed mid-restore leaves it: one item done, one marked writing after Graph created it."""
    tenant = ready(connected_tenant())
    external = str(tenant.external_id)
    backup_set = backup_now(tenant)
    gone, drifted = graph_simulator.objects(external, "deviceConfigurations")[:2]
    graph_simulator.delete_object(external, "deviceConfigurations", gone["id"])
    graph_simulator.change_object(external, "deviceConfigurations", drifted["id"], {"description": "drifted"})
    items = items_by_name(backup_set)
    run = plan(backup_set, [items[gone["displayName"]].id, items[drifted["displayName"]].id], tenant, manager,
               mode="skip")
    run = db.session.get(RestoreRun, run.id)
    execute(run, manager)
    db.session.commit()
    # The first attempt: the update finished; the create reached Graph, then the worker died.
    planned = {item.source_graph_id: item for item in run_items(run)}
    from app.graph.families import FAMILIES_BY_KEY
    from app.graph.writable import writable_body
    from app.models import BackupPayload
    body = db.session.get(BackupPayload, planned[gone["id"]].payload_id).body
    created_id = graph_simulator.add_object(external, "deviceConfigurations",
                                            writable_body(FAMILIES_BY_KEY["deviceConfigurations"], body,
                                                          for_update=False))
    planned[gone["id"]].status = "writing"
    graph_simulator.change_object(external, "deviceConfigurations", drifted["id"],
                                  {"description": drifted.get("description")})
    planned[drifted["id"]].status, planned[drifted["id"]].verified = "updated", None
    run.status = "running"
    db.session.commit()
    graph_simulator.reset_write_log(external)
    restore_step(run.id, run.workspace_id, "execute_restore")
    db.session.expire_all()
    results = {item.source_graph_id: item for item in run_items(run)}
    assert results[gone["id"]].status == "created" and results[gone["id"]].target_graph_id == created_id
    assert results[drifted["id"]].verified is True
    assert graph_simulator.write_log(external) == []  # nothing written again
    named = [o for o in graph_simulator.objects(external, "deviceConfigurations")
             if o["displayName"] == gone["displayName"]]
    assert len(named) == 1


def test_restore_this_version_writes_the_versions_content_back(connected_tenant, graph_simulator, manager):
    tenant = ready(connected_tenant())
    external = str(tenant.external_id)
    obj = graph_simulator.objects(external, "compliancePolicies")[0]
    graph_simulator.change_object(external, "compliancePolicies", obj["id"], {"description": "version two"})
    ready(tenant)
    policy = db.session.scalar(select(Policy).where(Policy.tenant_id == tenant.id, Policy.graph_id == obj["id"]))
    first = db.session.scalar(select(PolicyVersion).where(PolicyVersion.policy_id == policy.id,
                                                          PolicyVersion.version_number == 1))
    assert first.payload_id is not None
    run = start_restore_from_version(first, policy, tenant, mode="skip", user=manager)
    db.session.commit()
    restore_step(run.id, run.workspace_id, "plan_restore")
    run = execute_now(run, manager)
    [done] = run_items(run)
    assert run.status == "succeeded" and done.status == "updated" and done.verified, done.error
    assert graph_simulator.get_object(external, "compliancePolicies", obj["id"]).get("description") == \
        obj.get("description")


def test_a_target_without_the_write_permissions_is_refused_before_any_plan(connected_tenant, manager):
    tenant = ready(connected_tenant(permissions="read"))
    backup_set = backup_now(tenant)
    item = next(iter(items_by_name(backup_set, "deviceConfigurations").values()))
    with pytest.raises(RestoreRefused, match="DeviceManagementConfiguration.ReadWrite.All"):
        start_restore_from_backup(backup_set, [item.id], tenant, mode="keep", user=manager)


def test_a_name_taken_by_another_type_is_a_conflict_and_is_not_written(connected_tenant, graph_simulator, manager,
                                                                        make_workspace):
    workspace = make_workspace()
    source = ready(connected_tenant(workspace))
    target = ready(connected_tenant(workspace))
    backup_set = backup_now(source)
    policy = graph_simulator.objects(str(source.external_id), "deviceConfigurations")[0]
    for existing in graph_simulator.objects(str(target.external_id), "deviceConfigurations"):
        if existing["displayName"] == policy["displayName"]:
            graph_simulator.delete_object(str(target.external_id), "deviceConfigurations", existing["id"])
    other_type = next(o for o in graph_simulator.objects(str(target.external_id), "deviceConfigurations")
                      if o.get("@odata.type") != policy.get("@odata.type"))
    graph_simulator.change_object(str(target.external_id), "deviceConfigurations", other_type["id"],
                                  {"displayName": policy["displayName"]})
    item = items_by_name(backup_set, "deviceConfigurations")[policy["displayName"]]
    run = plan(backup_set, [item.id], target, manager)
    [planned] = run_items(run)
    assert planned.action == "conflict" and "not a" in planned.plan["reason"]
    graph_simulator.reset_write_log(str(target.external_id))
    run = execute_now(run, manager)
    assert graph_simulator.write_log(str(target.external_id)) == []
    assert run_items(run)[0].status == "skipped"


def test_a_name_taken_in_the_target_after_the_plan_stops_that_create(connected_tenant, graph_simulator, manager):
    tenant = ready(connected_tenant())
    external = str(tenant.external_id)
    backup_set = backup_now(tenant)
    victim = graph_simulator.objects(external, "deviceConfigurations")[0]
    graph_simulator.delete_object(external, "deviceConfigurations", victim["id"])
    item = items_by_name(backup_set)[victim["displayName"]]
    run = plan(backup_set, [item.id], tenant, manager, mode="skip")
    assert run_items(run)[0].action == "create"
    # Someone makes another object with that name before the restore is executed.
    other = {key: value for key, value in victim.items() if key not in ("id", "assignments")}
    other["description"] = "made by someone else meanwhile"
    graph_simulator.add_object(external, "deviceConfigurations", other)
    graph_simulator.reset_write_log(external)
    run = execute_now(run, manager)
    [done] = run_items(run)
    assert done.status == "failed" and "appeared in the target after the plan" in done.error
    assert graph_simulator.write_log(external) == []
