"""The demo's seeded backups are real backups: the payloads `flask seed-demo` stores are the objects
the Graph simulator serves for the same demo tenant, in the shape the backup engine stores, so
restoring one changes nothing that is unchanged. And a payload that is not complete for its family
is never written: the planner makes it a conflict and says why."""
from __future__ import annotations

import pytest
from sqlalchemy import select, text

from app.backup.payloads import normalized_payload
from app.demo.seed import seed_demo_data, tenant_external_id
from app.extensions import db
from app.graph.families import FAMILIES_BY_KEY
from app.models import BackupItem, BackupPayload, BackupSet, Tenant
from tests.graph_support import graph_settings, graph_simulator  # noqa: F401
from tests.sync_support import backup_now, connected_tenant, graph_app, restore_step, sync_now  # noqa: F401
from tests.test_restore_engine import execute_now, items_by_name, manager, plan, ready, run_items  # noqa: F401

TIMESTAMPS = ("createdDateTime", "lastModifiedDateTime")


def without_timestamps(body: dict) -> dict:
    # The seed and the simulator each say "now" at their own start.
    return {**body, "object": {key: value for key, value in body["object"].items() if key not in TIMESTAMPS}}


def seeded_demo_tenant(graph_simulator) -> tuple[Tenant, BackupSet]:  # noqa: F811
    """A demo tenant (active, its latest backup completed, with app protection and Settings Catalog
    items), known to the simulator and connected; and that backup set."""
    seed_demo_data(echo=lambda line: None)
    for key in range(1, 61):
        tenant = db.session.scalar(select(Tenant).where(Tenant.external_id == tenant_external_id(key)))
        if tenant.status != "active":
            continue
        latest = db.session.scalars(select(BackupSet).where(BackupSet.tenant_id == tenant.id)
                                    .order_by(BackupSet.started_at.desc())).first()
        families = set((latest.families or {}) if latest else {})
        if latest.status == "completed" and {"settingsCatalog", "iosAppProtection", "compliancePolicies"} <= families:
            break
    else:
        pytest.fail("no demo tenant with a completed backup of every kind")
    graph_simulator.add_tenant(str(tenant.external_id), name=tenant.name)
    tenant.connection_status = "connected"
    db.session.commit()
    return ready(tenant), latest


def test_a_demo_backup_holds_what_a_backup_of_the_simulators_tenant_stores(db_session, graph_app, graph_simulator):
    tenant, seeded = seeded_demo_tenant(graph_simulator)
    taken = backup_now(tenant)
    assert taken.status == "completed", taken.error

    def payloads(backup_set):
        rows = db.session.execute(select(BackupItem.graph_id, BackupItem.family, BackupPayload.body)
                                  .join(BackupPayload, BackupPayload.id == BackupItem.payload_id)
                                  .where(BackupItem.tenant_id == tenant.id, BackupItem.id.in_(backup_set.item_ids)))
        return {graph_id: (family, body) for graph_id, family, body in rows}

    seeded_payloads, taken_payloads = payloads(seeded), payloads(taken)
    assert len(seeded_payloads) == seeded.item_count > 10
    for graph_id, (family, body) in seeded_payloads.items():
        taken_family, taken_body = taken_payloads[graph_id]
        assert family == taken_family
        assert without_timestamps(body) == without_timestamps(taken_body), graph_id
        assert normalized_payload(FAMILIES_BY_KEY[family], body) == normalized_payload(FAMILIES_BY_KEY[family], taken_body)


def test_restoring_a_demo_backup_into_its_tenant_keeps_types_platforms_and_settings(
        db_session, graph_app, graph_simulator, manager):  # noqa: F811
    tenant, seeded = seeded_demo_tenant(graph_simulator)
    external = str(tenant.external_id)
    by_name = items_by_name(seeded)
    catalog = next(item for item in by_name.values() if item.family == "settingsCatalog")
    graph_simulator.change_object(external, "settingsCatalog", catalog.graph_id, {"description": "drifted"})
    run = plan(seeded, list(seeded.item_ids), tenant, manager)
    assert run.status == "planned", run.error
    items = run_items(run)
    assert {item.source_graph_id: item.action for item in items if item.action != "skip"} == {catalog.graph_id: "update"}
    [update] = [item for item in items if item.action == "update"]
    assert [row["path"].lower() for row in update.plan["diff"]] == ["description"]
    before = graph_simulator.objects(external, "settingsCatalog")
    run = execute_now(run, manager)
    assert run.status == "succeeded", run.error
    after = {obj["id"]: obj for obj in graph_simulator.objects(external, "settingsCatalog")}
    restored = after[catalog.graph_id]
    original = next(obj for obj in before if obj["id"] == catalog.graph_id)
    assert restored["description"] != "drifted"
    for key in ("@odata.type", "platforms", "technologies", "settings"):
        assert restored[key] == original[key], key


@pytest.mark.parametrize("damage, lacking", [
    (lambda body: body["object"].pop("@odata.type"), "its type (@odata.type)"),
    (lambda body: body["object"].pop("displayName"), "its name (displayName)"),
])
def test_a_device_configuration_payload_without_its_type_or_name_is_a_conflict_never_written(
        connected_tenant, graph_simulator, manager, damage, lacking):  # noqa: F811
    tenant = ready(connected_tenant())
    external = str(tenant.external_id)
    backup_set = backup_now(tenant)
    item = next(iter(items_by_name(backup_set, "deviceConfigurations").values()))
    payload = db.session.get(BackupPayload, item.payload_id)
    body = dict(payload.body, object=dict(payload.body["object"]))
    damage(body)
    payload.body = body
    db.session.commit()
    graph_simulator.change_object(external, "deviceConfigurations", item.graph_id, {"description": "drifted"})
    run = plan(backup_set, [item.id], tenant, manager)
    [planned] = run_items(run)
    assert planned.action == "conflict"
    assert lacking in planned.plan["reason"] and "not written" in planned.plan["reason"]
    graph_simulator.reset_write_log(external)
    run = execute_now(run, manager)
    assert graph_simulator.write_log(external) == []
    assert run_items(run)[0].status == "skipped"


def test_a_settings_catalog_payload_without_settings_is_a_conflict_never_written(connected_tenant, graph_simulator,
                                                                                 manager):  # noqa: F811
    tenant = ready(connected_tenant())
    external = str(tenant.external_id)
    backup_set = backup_now(tenant)
    item = next(iter(items_by_name(backup_set, "settingsCatalog").values()))
    payload = db.session.get(BackupPayload, item.payload_id)
    payload.body = {key: value for key, value in payload.body.items() if key != "settings"}
    db.session.commit()
    run = plan(backup_set, [item.id], tenant, manager)
    [planned] = run_items(run)
    assert planned.action == "conflict" and "its settings" in planned.plan["reason"]
    graph_simulator.reset_write_log(external)
    execute_now(run, manager)
    assert graph_simulator.write_log(external) == []
