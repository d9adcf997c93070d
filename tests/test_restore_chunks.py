"""A restore executed a chunk of items at a time, against the Graph simulator: the chunk's targets
read together, each object written once, the chunk read back together; an error the code did not
expect ends the run instead of leaving it running with an item "writing"."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from app.extensions import db
from app.graph.client import GraphClient
from app.models import AuditLog, RestoreRun
from tests.graph_support import graph_settings, graph_simulator  # noqa: F401
from tests.sync_support import backup_now, connected_tenant, graph_app, restore_step  # noqa: F401
from tests.test_restore_engine import execute_now, items_by_name, plan, ready, run_items


@pytest.fixture
def manager(make_user):
    return make_user(name="Chunking Manager")


def api_requests(simulator, external: str, since: int) -> list:
    return [record for record in simulator.requests[since:] if record.server == "api" and record.tenant_id == external]


def drifted_configurations(simulator, tenant, count: int) -> list[dict]:
    external = str(tenant.external_id)
    chosen = simulator.objects(external, "deviceConfigurations")[:count]
    for obj in chosen:
        simulator.change_object(external, "deviceConfigurations", obj["id"], {"description": "drifted"})
    return chosen


def test_twelve_updates_cost_a_write_each_and_two_batched_reads_per_chunk(connected_tenant, graph_simulator, manager):
    tenant = ready(connected_tenant(policies_per_family=12))
    external = str(tenant.external_id)
    backup_set = backup_now(tenant)
    chosen = drifted_configurations(graph_simulator, tenant, 12)
    items = items_by_name(backup_set)
    run = plan(backup_set, [items[obj["displayName"]].id for obj in chosen], tenant, manager)
    assert run.summary["actions"] == {"update": 12}
    graph_simulator.reset_write_log(external)
    before = len(graph_simulator.requests)
    run = execute_now(run, manager)
    assert run.status == "succeeded", (run.error, [(i.status, i.error) for i in run_items(run)])
    done = run_items(run)
    assert {(item.status, item.verified) for item in done} == {("updated", True)}
    writes = graph_simulator.write_log(external)
    assert sorted(w.object_id for w in writes) == sorted(obj["id"] for obj in chosen)
    assert all(w.operation == "update" for w in writes)
    for obj in chosen:
        assert graph_simulator.get_object(external, "deviceConfigurations", obj["id"]).get("description") == \
            obj.get("description")
    # Chunks of 10 and 2: each read before its writes and read back after them, in one $batch
    # each (an object and its assignments, 2 inner requests an item): 12 writes + 4 round trips,
    # where one item at a time took 7 round trips an item.
    outer = [record for record in api_requests(graph_simulator, external, before) if not record.in_batch]
    assert sorted((record.method, record.path.rsplit("/", 1)[-1] == "$batch") for record in outer) == \
        [("PATCH", False)] * 12 + [("POST", True)] * 4
    audited = db.session.scalars(select(AuditLog.target_name).where(
        AuditLog.tenant_id == tenant.id, AuditLog.action == "restore.item.updated")).all()
    assert sorted(audited) == sorted(obj["displayName"] for obj in chosen)


def test_a_chunk_read_graph_fails_is_read_again_object_by_object(connected_tenant, graph_simulator, manager):
    tenant = ready(connected_tenant())
    external = str(tenant.external_id)
    backup_set = backup_now(tenant)
    chosen = drifted_configurations(graph_simulator, tenant, 3)
    items = items_by_name(backup_set)
    run = plan(backup_set, [items[obj["displayName"]].id for obj in chosen], tenant, manager)
    graph_simulator.inject("batch-inner-500", tenant_id=external, path_contains=f"{chosen[1]['id']}/assignments")
    run = execute_now(run, manager)
    assert run.status == "succeeded", (run.error, [(i.status, i.error) for i in run_items(run)])
    assert {(item.status, item.verified) for item in run_items(run)} == {("updated", True)}
    assert not graph_simulator.pending_faults()


def test_an_unexpected_error_mid_item_ends_the_run_with_no_item_left_writing(connected_tenant, graph_simulator,
                                                                            manager, monkeypatch):
    tenant = ready(connected_tenant())
    external = str(tenant.external_id)
    backup_set = backup_now(tenant)
    chosen = drifted_configurations(graph_simulator, tenant, 3)
    items = items_by_name(backup_set)
    run = plan(backup_set, [items[obj["displayName"]].id for obj in chosen], tenant, manager)
    order = [item.source_graph_id for item in run_items(run)]
    original = GraphClient.update_object
    calls = []

    def update_object(self, family, object_id, body):
        calls.append(object_id)
        if len(calls) == 2:  # the second item: marked "writing", then a bug
            raise RuntimeError("a bug in the middle of an item")
        return original(self, family, object_id, body)

    monkeypatch.setattr(GraphClient, "update_object", update_object)
    graph_simulator.reset_write_log(external)
    run = execute_now(run, manager)
    assert not run.is_active and run.status == "partial"
    assert "internal error (RuntimeError)" in run.error
    results = {item.source_graph_id: item for item in run_items(run)}
    first, second, third = (results[graph_id] for graph_id in order)
    assert first.status == "updated"
    assert second.status == "failed" and "may hold the write" in second.error
    assert third.status == "not_run"
    assert not [item for item in results.values() if item.status in ("planned", "writing")]
    assert [w.object_id for w in graph_simulator.write_log(external)] == [order[0]]
    assert run.summary["results"] == {"updated": 1, "failed": 1, "not_run": 1}
    # The first item's result and audit entry were committed before the error.
    assert db.session.scalar(select(db.func.count()).select_from(AuditLog).where(
        AuditLog.tenant_id == tenant.id, AuditLog.action == "restore.item.updated")) == 1
    assert db.session.get(RestoreRun, run.id).finished_at is not None
