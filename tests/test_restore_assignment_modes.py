"""Restoring an update with assignments "replace" or "skip", against the Graph simulator; the per-item
audit entries name the person who executed the restore."""
from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import AuditLog
from tests.graph_support import graph_settings, graph_simulator  # noqa: F401
from tests.sync_support import backup_now, connected_tenant, graph_app  # noqa: F401
from tests.test_restore_engine import execute_now, items_by_name, manager, plan, ready, run_items  # noqa: F401


def drifted_policy(connected_tenant, graph_simulator):
    tenant = ready(connected_tenant())
    external = str(tenant.external_id)
    backup_set = backup_now(tenant)
    policy = next(p for p in graph_simulator.objects(external, "deviceConfigurations") if p.get("assignments"))
    used = {a["target"].get("groupId") for a in policy["assignments"]}
    group = next(g["id"] for g in graph_simulator.objects(external, "groups") if g["id"] not in used)
    extra = {"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": group}}
    graph_simulator.change_object(external, "deviceConfigurations", policy["id"],
                                  {"description": "drifted", "assignments": policy["assignments"][1:] + [extra]})
    ready(tenant)
    item = items_by_name(backup_set)[policy["displayName"]]
    return tenant, external, backup_set, policy, group, item


def _groups(graph_simulator, external, policy):
    obj = graph_simulator.get_object(external, "deviceConfigurations", policy["id"])
    return {a["target"].get("groupId") for a in obj.get("assignments") or []}


def test_replace_mode_sets_the_backups_assignments_dropping_one_the_target_gained_and_audits_the_actor(connected_tenant, graph_simulator, manager):
    tenant, external, backup_set, policy, group, item = drifted_policy(connected_tenant, graph_simulator)
    run = execute_now(plan(backup_set, [item.id], tenant, manager, mode="replace"), manager)
    assert run.status == "succeeded", [(i.status, i.error) for i in run_items(run)]
    assert _groups(graph_simulator, external, policy) == {a["target"].get("groupId") for a in policy["assignments"]}
    entries = db.session.scalars(select(AuditLog).where(AuditLog.action.like("restore.item.%"),
                                                        AuditLog.tenant_id == tenant.id)).all()
    assert [e.actor_user_id for e in entries] == [manager.id]


def test_skip_mode_restores_the_settings_and_leaves_the_assignments_as_they_are(connected_tenant, graph_simulator, manager):
    tenant, external, backup_set, policy, group, item = drifted_policy(connected_tenant, graph_simulator)
    before = _groups(graph_simulator, external, policy)
    graph_simulator.reset_write_log(external)
    run = execute_now(plan(backup_set, [item.id], tenant, manager, mode="skip"), manager)
    assert run.status == "succeeded", [(i.status, i.error) for i in run_items(run)]
    assert _groups(graph_simulator, external, policy) == before and group in before
    assert all(w.operation != "assign" for w in graph_simulator.write_log(external))
