"""Restore safety, from the review of issue 12: nothing outside the selection is written, nothing widens
an assignment, no object is written twice, and a stale plan never overwrites what changed since."""
from __future__ import annotations

import copy

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import BackupItem, RestoreItem, RestoreRun, Tenant
from app.restore.service import execute, start_restore_from_backup
from tests.graph_support import graph_settings, graph_simulator  # noqa: F401
from tests.sync_support import backup_now, connected_tenant, graph_app  # noqa: F401


@pytest.fixture
def manager(make_user):
    return make_user(name="Reviewing Manager")


def ready(tenant):
    from tests.sync_support import sync_now
    run = sync_now(tenant)
    assert run.status == "succeeded", run.error
    return db.session.get(Tenant, tenant.id)


def items_of(backup_set):
    return db.session.scalars(select(BackupItem).where(BackupItem.tenant_id == backup_set.tenant_id,
                                                       BackupItem.id.in_(backup_set.item_ids))).all()


def plan(backup_set, item_ids, target, user, mode="keep"):
    from tests.sync_support import restore_step
    run = start_restore_from_backup(backup_set, item_ids, target, mode=mode, user=user)
    db.session.commit()
    restore_step(run.id, run.workspace_id, "plan_restore")
    db.session.expire_all()
    return db.session.get(RestoreRun, run.id)


def run_items(run):
    db.session.expire_all()
    return list(db.session.scalars(select(RestoreItem).where(RestoreItem.restore_run_id == run.id)
                                   .order_by(RestoreItem.position)))


def execute_now(run, user):
    from tests.sync_support import restore_step
    run = db.session.get(RestoreRun, run.id)
    execute(run, user)
    db.session.commit()
    restore_step(run.id, run.workspace_id, "execute_restore")
    db.session.expire_all()
    return db.session.get(RestoreRun, run.id)


def twin(obj: dict, **changes) -> dict:
    """A second object with the same name and type (relations inline, no id)."""
    copied = {k: copy.deepcopy(v) for k, v in obj.items() if k not in ("id", "createdDateTime", "lastModifiedDateTime",
                                                                       "version")}
    copied.update(changes)
    copied["assignments"] = []
    return copied


def test_restoring_a_deleted_policy_never_overwrites_a_live_same_named_policy_outside_the_selection(
        connected_tenant, graph_simulator, manager):
    """Same tenant. A and B share a display name (the issue's "duplicate display names overwriting each
    other"). B is deleted; restoring B (only B selected) must create B, not overwrite A."""
    tenant = connected_tenant()
    external = str(tenant.external_id)
    a = graph_simulator.objects(external, "deviceConfigurations")[0]
    b_id = graph_simulator.add_object(external, "deviceConfigurations", twin(a, description="B's own settings"))
    tenant = ready(tenant)
    backup_set = backup_now(tenant)
    b_item = next(i for i in items_of(backup_set) if i.graph_id == b_id)
    graph_simulator.delete_object(external, "deviceConfigurations", b_id)

    run = plan(backup_set, [b_item.id], tenant, manager, mode="skip")
    [planned] = run_items(run)
    graph_simulator.reset_write_log(external)
    execute_now(run, manager)
    touched = {(w.family, w.object_id) for w in graph_simulator.write_log(external)}
    assert ("deviceConfigurations", a["id"]) not in touched, "policy A (not selected) was overwritten with B's content"
    assert graph_simulator.get_object(external, "deviceConfigurations", a["id"]).get("description") == \
        a.get("description")


def test_an_unmatched_exclusion_group_does_not_widen_the_assignment(connected_tenant, graph_simulator, manager,
                                                                    make_workspace):
    """Cross tenant. Source policy: All devices, EXCEPT group 'Break glass'. The target has no such group:
    writing 'All devices' without the exclusion applies the policy to exactly the devices it excluded."""
    workspace = make_workspace()
    source = connected_tenant(workspace)
    target = connected_tenant(workspace, name="Fabrikam Target")
    src = str(source.external_id)
    glass = graph_simulator.add_object(src, "groups", {"displayName": "Break glass devices (review)",
                                                       "securityEnabled": True, "mailEnabled": False,
                                                       "groupTypes": []})
    policy = graph_simulator.objects(src, "compliancePolicies")[0]
    graph_simulator.change_object(src, "compliancePolicies", policy["id"], {"displayName": "Review wipe policy",
        "assignments": [
            {"target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"}},
            {"target": {"@odata.type": "#microsoft.graph.exclusionGroupAssignmentTarget", "groupId": glass}}]})
    source, target = ready(source), ready(target)
    backup_set = backup_now(source)
    item = next(i for i in items_of(backup_set) if i.graph_id == policy["id"])
    run = plan(backup_set, [item.id], target, manager, mode="replace")
    [planned] = run_items(run)
    kinds = [a["target"]["@odata.type"] for a in planned.plan.get("assignments") or []]
    assert not ("#microsoft.graph.allDevicesAssignmentTarget" in kinds
                and "#microsoft.graph.exclusionGroupAssignmentTarget" not in kinds), \
        "the include is written without its exclusion: the policy now targets the excluded devices"


def test_keep_mode_does_not_remove_assignments_the_target_gained_after_the_plan(connected_tenant, graph_simulator,
                                                                                manager):
    """Keep = 'add the backup's assignments; keep the target's own'. The union is computed at plan time and
    written with assign (which REPLACES); an assignment added in the target between plan and execute is deleted."""
    tenant = ready(connected_tenant())
    external = str(tenant.external_id)
    backup_set = backup_now(tenant)
    policy = next(p for p in graph_simulator.objects(external, "deviceConfigurations") if p.get("assignments"))
    # The target lost one of the backup's assignments: the keep-mode plan adds it back.
    graph_simulator.change_object(external, "deviceConfigurations", policy["id"],
                                  {"description": "drifted", "assignments": policy["assignments"][1:]})
    item = next(i for i in items_of(backup_set) if i.graph_id == policy["id"])
    run = plan(backup_set, [item.id], tenant, manager, mode="keep")
    assert run_items(run)[0].plan.get("assignments") is not None
    [planned] = run_items(run)
    # Someone assigns the policy to a new group after the plan was made, before it is executed.
    used = {a["target"].get("groupId") for a in policy["assignments"]}
    group = next(g["id"] for g in graph_simulator.objects(external, "groups") if g["id"] not in used)
    current = graph_simulator.get_object(external, "deviceConfigurations", policy["id"]).get("assignments") or []
    # planned assignments must not be None for the bug to show: force an assignments change in the plan
    graph_simulator.change_object(external, "deviceConfigurations", policy["id"], {"assignments": current + [
        {"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": group}}]})
    execute_now(run, manager)
    after = graph_simulator.get_object(external, "deviceConfigurations", policy["id"]).get("assignments") or []
    assert any(a["target"].get("groupId") == group for a in after), \
        "keep mode deleted the target's own assignment added after the plan"


def test_two_selected_items_never_resolve_to_one_target_object(connected_tenant, graph_simulator, manager,
                                                               make_workspace):
    """Cross tenant. The source has two policies named alike (A, B: two items, as the issue requires); the target
    has one object of that name (C). Both are planned 'update C': C is written twice, the last one wins."""
    workspace = make_workspace()
    source = connected_tenant(workspace)
    target = connected_tenant(workspace, name="Fabrikam Target")
    src, tgt = str(source.external_id), str(target.external_id)
    a = graph_simulator.objects(src, "deviceConfigurations")[0]
    b_id = graph_simulator.add_object(src, "deviceConfigurations", twin(a, description="B's settings"))
    for existing in graph_simulator.objects(tgt, "deviceConfigurations"):
        if existing["displayName"] == a["displayName"]:
            graph_simulator.delete_object(tgt, "deviceConfigurations", existing["id"])
    c_id = graph_simulator.add_object(tgt, "deviceConfigurations", twin(a, description="C, the target's own",
                                                                        roleScopeTagIds=["7"]))
    source, target = ready(source), ready(target)
    backup_set = backup_now(source)
    chosen = [i.id for i in items_of(backup_set) if i.graph_id in (a["id"], b_id)]
    run = plan(backup_set, chosen, target, manager, mode="skip")
    planned = run_items(run)
    graph_simulator.reset_write_log(tgt)
    execute_now(run, manager)
    writes = [(w.operation, w.object_id) for w in graph_simulator.write_log(tgt)]
    assert sum(1 for _, object_id in writes if object_id == c_id) <= 1, "one target object written by two items"


def test_a_resumed_create_of_an_object_whose_name_has_a_double_space_is_not_made_twice(connected_tenant,
                                                                                       graph_simulator, manager):
    """find_by_name/_already_created look for display_name_of(...) (whitespace collapsed, control characters
    replaced, cut at 400): Graph's exact-match $filter never finds the object the first attempt created, so the
    resumed create posts it again."""
    from app.graph.families import FAMILIES_BY_KEY
    from app.graph.writable import writable_body
    from app.models import BackupPayload
    from tests.sync_support import restore_step

    tenant = connected_tenant()
    external = str(tenant.external_id)
    victim = graph_simulator.objects(external, "deviceConfigurations")[0]
    graph_simulator.change_object(external, "deviceConfigurations", victim["id"],
                                  {"displayName": "Review  BitLocker  baseline"})
    tenant = ready(tenant)
    backup_set = backup_now(tenant)
    graph_simulator.delete_object(external, "deviceConfigurations", victim["id"])
    item = next(i for i in items_of(backup_set) if i.graph_id == victim["id"])
    run = plan(backup_set, [item.id], tenant, manager, mode="skip")
    [planned] = run_items(run)
    assert planned.action == "create"
    run = db.session.get(RestoreRun, run.id)
    execute(run, manager)
    db.session.commit()
    # The first attempt: Graph created it, then the worker died before recording the result.
    body = db.session.get(BackupPayload, planned.payload_id).body
    graph_simulator.add_object(external, "deviceConfigurations",
                               writable_body(FAMILIES_BY_KEY["deviceConfigurations"], body, for_update=False))
    planned = run_items(run)[0]
    planned.status = "writing"
    db.session.get(RestoreRun, run.id).status = "running"
    db.session.commit()
    graph_simulator.reset_write_log(external)
    restore_step(run.id, run.workspace_id, "execute_restore")
    creates = [w for w in graph_simulator.write_log(external) if w.operation == "create"]
    named = [o for o in graph_simulator.objects(external, "deviceConfigurations")
             if o["displayName"] == "Review  BitLocker  baseline"]
    assert creates == [] and len(named) == 1
