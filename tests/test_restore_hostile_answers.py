"""Hostile or failing answers around a chunked restore: a $batch answer that names another object,
a sign-in outage during the last read-back, a target archived between chunks. Nothing is written on
a guess, and a run's outcome says what happened."""
from __future__ import annotations

import pytest
from sqlalchemy import update

from app.extensions import db
from app.graph.errors import ConsentError, GraphError
from app.graph.families import FAMILIES_BY_KEY
from app.models import Tenant
from app.restore import executor
from tests.graph_support import graph_settings, graph_simulator, make_graph_client, make_tenant_id, token_provider  # noqa: F401
from tests.sync_support import backup_now, connected_tenant, graph_app  # noqa: F401
from tests.test_restore_engine import execute_now, items_by_name, manager, plan, ready, run_items  # noqa: F401

CONFIGS = FAMILIES_BY_KEY["deviceConfigurations"]


def drifted(connected_tenant, graph_simulator, count):
    """A tenant, its backup, then `count` device configurations changed on the simulator."""
    tenant = ready(connected_tenant(policies_per_family=count))
    external = str(tenant.external_id)
    backup_set = backup_now(tenant)
    chosen = graph_simulator.objects(external, "deviceConfigurations")[:count]
    for obj in chosen:
        graph_simulator.change_object(external, "deviceConfigurations", obj["id"], {"description": "drifted"})
    items = items_by_name(backup_set)
    return tenant, backup_set, chosen, [items[obj["displayName"]].id for obj in chosen]


def test_get_objects_refuses_a_batch_answer_that_is_another_object(graph_simulator, make_tenant_id,
                                                                   make_graph_client):
    tenant_id = make_tenant_id(policies_per_family=3)
    ids = [item["id"] for item in graph_simulator.objects(tenant_id, "deviceConfigurations")][:2]
    client = make_graph_client(tenant_id)
    graph_simulator.inject("batch-swapped-objects", tenant_id=tenant_id)
    with pytest.raises(GraphError, match="another object"):
        client.get_objects(CONFIGS, ids)
    found = client.get_objects(CONFIGS, ids)  # an honest answer again
    assert {object_id: payload["object"]["id"] for object_id, payload in found.items()} == {i: i for i in ids}


def test_a_swapped_batch_answer_while_planning_plans_each_item_onto_its_own_object(connected_tenant, graph_simulator,
                                                                                   manager):
    tenant, backup_set, chosen, item_ids = drifted(connected_tenant, graph_simulator, 2)
    external = str(tenant.external_id)
    graph_simulator.inject("batch-swapped-objects", tenant_id=external)
    run = plan(backup_set, item_ids, tenant, manager)
    assert run.status == "planned", run.error
    assert {item.source_graph_id: item.target_graph_id for item in run_items(run)} == {
        obj["id"]: obj["id"] for obj in chosen}
    graph_simulator.reset_write_log(external)
    run = execute_now(run, manager)
    assert run.status == "succeeded", [(item.status, item.error) for item in run_items(run)]
    for obj in chosen:  # each object got its own backup back, not the other's
        after = graph_simulator.get_object(external, "deviceConfigurations", obj["id"])
        assert (after["displayName"], after.get("description")) == (obj["displayName"], obj.get("description"))


def test_a_swapped_batch_answer_while_executing_is_read_again_one_by_one(connected_tenant, graph_simulator, manager):
    tenant, backup_set, chosen, item_ids = drifted(connected_tenant, graph_simulator, 12)
    external = str(tenant.external_id)
    run = plan(backup_set, item_ids, tenant, manager)
    graph_simulator.inject("batch-swapped-objects", count=3, tenant_id=external)
    run = execute_now(run, manager)
    assert run.status == "succeeded", [(item.status, item.error) for item in run_items(run)]
    assert all(item.verified for item in run_items(run))
    written = sorted(write.object_id for write in graph_simulator.write_log(external) if write.operation != "assign")
    assert written == sorted(obj["id"] for obj in chosen)


def test_a_sign_in_outage_during_the_last_read_back_leaves_the_writes_unverified_not_failed(
        connected_tenant, graph_simulator, manager, monkeypatch):
    # The outage is made at the executor's read seam: the token provider caches its token, so the
    # simulator's token faults would never be asked for in the middle of a run.
    tenant, backup_set, chosen, item_ids = drifted(connected_tenant, graph_simulator, 3)
    run = plan(backup_set, item_ids, tenant, manager)
    calls = []
    original = executor.read_targets

    def read_targets(client, family, ids):
        calls.append(ids)
        if len(calls) == 2:  # the only chunk's read-back, after every write
            raise ConsentError("unavailable", None, "login.microsoftonline.com answered 503")
        return original(client, family, ids)

    monkeypatch.setattr(executor, "read_targets", read_targets)
    run = execute_now(run, manager)
    items = run_items(run)
    assert {item.status for item in items} == {"updated"}
    assert {item.verified for item in items} == {False}
    assert all("could not be read back" in item.error for item in items)
    assert run.status == "partial"


def test_a_target_archived_during_the_restore_stops_it_between_chunks(connected_tenant, graph_simulator, manager,
                                                                      monkeypatch):
    tenant, backup_set, chosen, item_ids = drifted(connected_tenant, graph_simulator, 12)
    run = plan(backup_set, item_ids, tenant, manager)
    original = executor._write_chunk

    def write_then_archive(*args, **kwargs):
        original(*args, **kwargs)
        db.session.execute(update(Tenant).where(Tenant.id == tenant.id).values(status="archived"))

    monkeypatch.setattr(executor, "_write_chunk", write_then_archive)
    run = execute_now(run, manager)
    statuses = [item.status for item in run_items(run)]
    assert statuses.count("updated") == 10 and statuses.count("not_run") == 2
    assert run.status == "partial" and "archived" in run.error
