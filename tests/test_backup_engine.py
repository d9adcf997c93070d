"""The backup engine against the Graph simulator, over real HTTPS sockets: every backed-up family
read with its relations, payloads stored once, partial and failed backups that say why."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.backup.engine import BACKUP_FAMILIES, BackupAlreadyActive, create_backup
from app.backup.payloads import normalized_payload
from app.extensions import db
from app.graph.families import FAMILIES_BY_KEY
from app.models import BackupItem, BackupPayload, BackupSet
from tests.graph_support import graph_settings, graph_simulator  # noqa: F401
from tests.sync_support import backup_now, connected_tenant, graph_app  # noqa: F401


def count(model, tenant) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(model.tenant_id == tenant.id))


def items_of(backup_set) -> list[BackupItem]:
    return list(db.session.scalars(select(BackupItem).where(BackupItem.tenant_id == backup_set.tenant_id,
                                                            BackupItem.id.in_(backup_set.item_ids))))


def test_a_backup_holds_every_object_of_every_backed_up_family_with_its_relations(connected_tenant, graph_simulator):
    tenant = connected_tenant()
    backup_set = backup_now(tenant)
    assert backup_set.status == "completed", backup_set.error
    items = items_of(backup_set)
    assert backup_set.item_count == len(items) == len(backup_set.item_ids)
    for family in BACKUP_FAMILIES:
        expected = graph_simulator.objects(str(tenant.external_id), family.key)
        held = {item.graph_id: item for item in items if item.family == family.key}
        assert set(held) == {obj["id"] for obj in expected}, family.key
        assert backup_set.families[family.key]["items"] == len(expected)
        for obj in expected:  # the stored payload reads as the object the simulator holds
            payload = db.session.get(BackupPayload, held[obj["id"]].payload_id)
            for relation in family.per_object:
                assert payload.body[relation] is not None
            raw = {key: value for key, value in obj.items() if key not in family.per_object}
            from app.graph.normalize import normalize_object
            assert normalized_payload(family, payload.body) == normalize_object(
                family, raw, {relation: obj[relation] for relation in family.per_object})


def test_the_groups_that_assignments_name_are_backed_up_as_references(connected_tenant, graph_simulator):
    tenant = connected_tenant()
    assigned = set()
    for family in BACKUP_FAMILIES:
        for obj in graph_simulator.objects(str(tenant.external_id), family.key):
            for assignment in obj.get("assignments") or []:
                if assignment.get("target", {}).get("groupId"):
                    assigned.add(assignment["target"]["groupId"])
    assert assigned, "the demo fixtures assign policies to groups"
    backup_set = backup_now(tenant)
    groups = [item for item in items_of(backup_set) if item.family == "groups"]
    assert {item.graph_id for item in groups} == assigned
    assert all(item.is_reference for item in groups)


def test_two_backups_of_an_unchanged_tenant_share_every_item_and_payload(connected_tenant):
    tenant = connected_tenant()
    first = backup_now(tenant)
    payloads, items = count(BackupPayload, tenant), count(BackupItem, tenant)
    second = backup_now(tenant)
    assert second.status == "completed"
    assert second.item_ids == first.item_ids
    assert (count(BackupPayload, tenant), count(BackupItem, tenant)) == (payloads, items)
    assert first.size_bytes > 0 and second.size_bytes == 0


def test_one_changed_policy_adds_one_item_and_one_payload(connected_tenant, graph_simulator):
    tenant = connected_tenant()
    first = backup_now(tenant)
    payloads, items = count(BackupPayload, tenant), count(BackupItem, tenant)
    target = graph_simulator.objects(str(tenant.external_id), "deviceConfigurations")[0]
    graph_simulator.change_object(str(tenant.external_id), "deviceConfigurations", target["id"],
                                  {"description": "changed for the test"})
    second = backup_now(tenant)
    assert (count(BackupPayload, tenant), count(BackupItem, tenant)) == (payloads + 1, items + 1)
    assert len(set(second.item_ids) - set(first.item_ids)) == 1
    assert len(set(first.item_ids) - set(second.item_ids)) == 1


def test_two_policies_with_one_name_are_two_items(connected_tenant, graph_simulator):
    tenant = connected_tenant()
    original = graph_simulator.objects(str(tenant.external_id), "compliancePolicies")[0]
    twin = {key: value for key, value in original.items() if key != "id"}
    twin["description"] = "same name, other object"
    twin_id = graph_simulator.add_object(str(tenant.external_id), "compliancePolicies", twin)
    backup_set = backup_now(tenant)
    named = [item for item in items_of(backup_set) if item.display_name == original["displayName"]]
    assert {item.graph_id for item in named} == {original["id"], twin_id}
    assert len({item.payload_id for item in named}) == 2


def test_a_failing_family_makes_the_backup_partial_and_says_which(connected_tenant, graph_simulator):
    tenant = connected_tenant()
    graph_simulator.inject("503", count=20, tenant_id=str(tenant.external_id),
                           path_contains="deviceCompliancePolicies")
    backup_set = backup_now(tenant)
    assert backup_set.status == "partial"
    assert backup_set.families["compliancePolicies"]["error"]
    assert FAMILIES_BY_KEY["compliancePolicies"].label in backup_set.error
    held = {item.family for item in items_of(backup_set)}
    assert "compliancePolicies" not in held and "deviceConfigurations" in held


def test_revoked_consent_fails_the_backup_and_it_holds_nothing(connected_tenant, graph_simulator):
    tenant = connected_tenant()
    graph_simulator.revoke_consent(str(tenant.external_id))
    backup_set = backup_now(tenant)
    assert backup_set.status == "failed" and backup_set.item_ids == [] and backup_set.error


def test_a_second_backup_cannot_start_while_one_is_pending(connected_tenant, db_session):
    tenant = connected_tenant()
    first = create_backup(tenant, "user")
    db_session.commit()
    with pytest.raises(BackupAlreadyActive) as active:
        create_backup(tenant, "user")
    assert active.value.backup_set.id == first.id


def test_a_backup_limited_to_chosen_families_keeps_the_filters_scope_tags_and_groups_they_refer_to(
        connected_tenant):
    tenant = connected_tenant()
    backup_set = backup_now(tenant, families=["settingsCatalog"])
    families = {item.family for item in items_of(backup_set)}
    assert families <= {"settingsCatalog", "groups", "assignmentFilters", "scopeTags"}
    assert {"settingsCatalog", "assignmentFilters", "scopeTags"} <= families
    assert set(backup_set.families) <= {"settingsCatalog", "groups", "assignmentFilters", "scopeTags"}


def test_backup_tenant_command_backs_up_in_the_foreground_with_exit_codes(connected_tenant, graph_simulator,
                                                                          graph_app):
    runner = graph_app.test_cli_runner()
    tenant = connected_tenant()
    result = runner.invoke(args=["backup-tenant", str(tenant.external_id)])
    assert result.exit_code == 0, result.output
    assert "completed:" in result.output and "settingsCatalog" in result.output
    graph_simulator.inject("503", count=20, tenant_id=str(tenant.external_id), path_contains="deviceCompliancePolicies")
    assert runner.invoke(args=["backup-tenant", str(tenant.external_id)]).exit_code == 3
    result = runner.invoke(args=["backup-tenant", str(tenant.external_id), "--family", "nonsense"])
    assert result.exit_code != 0 and "Unknown families: nonsense" in result.output
    graph_simulator.revoke_consent(str(tenant.external_id))
    result = runner.invoke(args=["backup-tenant", str(tenant.external_id)])
    assert result.exit_code == 1 and "failed" in result.output
    unconnected = connected_tenant(status="not_connected")
    result = runner.invoke(args=["backup-tenant", str(unconnected.external_id)])
    assert result.exit_code == 1 and "only an active, connected tenant" in result.output


def test_a_completed_backup_resolves_the_no_backup_finding_at_once(connected_tenant, db_session):
    """The tenant's pages never show "no successful backup" beside the backup that just completed:
    a backup re-evaluates the tenant's findings, as a sync does (not an hour later)."""
    from app.models import Finding
    from tests.sync_support import sync_now

    tenant = connected_tenant()
    assert sync_now(tenant).status == "succeeded"  # connected, never backed up: the finding
    finding = db.session.scalar(select(Finding).where(Finding.tenant_id == tenant.id, Finding.kind == "backup"))
    assert finding.status == "open"
    assert backup_now(tenant).status == "completed"
    db.session.expire_all()
    assert db.session.get(Finding, finding.id).status == "resolved"

