"""Baselines built from a backup set: the same expected policies as from the live tenant when
the backup was taken, unaffected by the tenant's later changes, and only from the current
workspace's backups (forged ids are 404, bad fields a 400 that says why, nothing created)."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.drift.baselines import BuildRefused, build_from_backup, build_from_tenant
from app.extensions import db
from app.models import AuditLog, BackupItem, BackupSet
from app.operations_models import Baseline, BaselinePolicy
from app.row_security import working_in_workspace
from tests.conftest import csrf_token, enter, page, post_form, sign_in
from tests.graph_support import graph_settings, graph_simulator  # noqa: F401
from tests.sync_support import backup_now, connected_tenant, graph_app, sync_now  # noqa: F401


def content(baseline: Baseline) -> list[tuple]:
    """What a baseline expects, independent of ids and order."""
    rows = db.session.scalars(select(BaselinePolicy).where(BaselinePolicy.baseline_id == baseline.id))
    return sorted((p.policy_type, p.platform, p.name, sorted(p.settings.items(), key=repr), p.any_value,
                   p.expected_assignments) for p in rows)


def a_boolean_setting(raw: dict) -> str:
    return next(k for k, v in sorted(raw.items()) if isinstance(v, bool) and not k.startswith("@"))


@pytest.fixture
def golden_with_backup(connected_tenant, make_workspace):  # noqa: F811
    """A golden tenant, synced and backed up (nothing changed in between)."""
    workspace = make_workspace()
    golden = connected_tenant(workspace)
    assert sync_now(golden).status == "succeeded"
    backup_set = backup_now(golden)
    assert backup_set.status == "completed", backup_set.error
    return workspace, golden, backup_set


def test_a_baseline_from_a_backup_expects_what_one_from_the_live_tenant_then_expects(golden_with_backup):
    workspace, golden, backup_set = golden_with_backup
    with working_in_workspace(workspace.id):
        live = build_from_tenant(workspace.id, "From live", golden, None)
        backed_up = build_from_backup(workspace.id, "From backup", backup_set, golden, None)
        db.session.commit()
        expected = content(live)
        assert len(expected) >= 5  # every policy family of the simulator's demo tenant
        assert content(backed_up) == expected
        assert any(p[5] for p in expected), "assignment kinds are compared too"
        assert backed_up.version == 1 and backup_set.name in backed_up.source_label


def test_a_later_change_of_the_live_tenant_does_not_reach_a_baseline_built_from_the_older_backup(
        golden_with_backup, graph_simulator):  # noqa: F811
    workspace, golden, backup_set = golden_with_backup
    with working_in_workspace(workspace.id):
        before = content(build_from_tenant(workspace.id, "Live before", golden, None))
        db.session.commit()
    external_id = str(golden.external_id)
    raw = graph_simulator.objects(external_id, "deviceConfigurations")[0]
    key = a_boolean_setting(raw)
    graph_simulator.change_object(external_id, "deviceConfigurations", raw["id"], {key: not raw[key]})
    assert sync_now(golden).status == "succeeded"
    with working_in_workspace(workspace.id):
        after = content(build_from_tenant(workspace.id, "Live after", golden, None))
        from_old_backup = content(build_from_backup(workspace.id, "Old backup", backup_set, golden, None))
        db.session.commit()
    assert after != before  # the change reached the live tenant
    assert from_old_backup == before


def test_only_the_chosen_policies_of_a_backup_are_taken_and_foreign_items_are_refused(golden_with_backup):
    workspace, golden, backup_set = golden_with_backup
    items = db.session.execute(select(BackupItem.id, BackupItem.family, BackupItem.display_name).where(
        BackupItem.tenant_id == golden.id, BackupItem.id.in_(backup_set.item_ids))).all()
    policies = [i for i in items if i.family in ("deviceConfigurations", "compliancePolicies")]
    others = [i for i in items if i.family in ("groups", "assignmentFilters", "scopeTags")]
    assert policies and others
    with working_in_workspace(workspace.id):
        chosen = policies[:2]
        baseline = build_from_backup(workspace.id, "Two", backup_set, golden, None, item_ids=[i.id for i in chosen])
        db.session.flush()
        assert sorted(p[2] for p in content(baseline)) == sorted(i.display_name for i in chosen)
        for item_ids in ([], [others[0].id], [policies[0].id, 10**15]):
            with pytest.raises(BuildRefused):
                build_from_backup(workspace.id, "Refused", backup_set, golden, None, item_ids=item_ids)
        backup_set.status = "failed"
        with pytest.raises(BuildRefused):
            build_from_backup(workspace.id, "Failed backup", backup_set, golden, None)
        db.session.rollback()


def test_building_from_a_backup_through_the_pages(golden_with_backup, client, make_user, add_member):
    workspace, golden, backup_set = golden_with_backup
    manager = make_user(name="Manager")
    add_member(workspace, manager, "manager")
    sign_in(client, manager.email)
    enter(client, workspace)
    base = f"/admin/w/{workspace.slug}/baselines"
    assert "from-backup-link" in page(client, base)
    body = page(client, f"{base}/from-backup")
    assert golden.name in body
    body = page(client, f"{base}/from-backup?tenant={golden.external_id}")
    assert backup_set.name in body and f"backup_set={backup_set.id}" in body
    body = page(client, f"{base}/from-backup?backup_set={backup_set.id}")
    assert 'name="item"' in body and "Build baseline" in body

    response = post_form(client, f"{base}/from-backup", {"name": "Golden backup", "backup_set": str(backup_set.id),
                                                        "scope": "all", "severity": "high"})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    with working_in_workspace(workspace.id):
        baseline = db.session.scalar(select(Baseline).where(Baseline.workspace_id == workspace.id))
        assert response.headers["Location"].endswith(f"/baselines/{baseline.id}")
        assert baseline.severity == "high"
        built = content(baseline)
        assert built == content(build_from_tenant(workspace.id, "Live", golden, None))
        db.session.rollback()
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "baseline.create"))
    assert entry.details["after"]["backup_set"] == backup_set.id


# --- the world's two workspaces: scoping and bad input ------------------------------------------------------


def baselines_of(db_session, workspace) -> int:
    return db_session.scalar(select(func.count()).select_from(Baseline).where(Baseline.workspace_id == workspace.id))


def test_the_world_backup_builds_a_baseline_of_its_one_policy(ada, world, db_session):
    base = f"/admin/w/{world.a.slug}/baselines"
    response = post_form(ada, f"{base}/from-backup", {"name": "Alpha from backup",
                                                     "backup_set": str(world.ids_a["backup_set_id"]),
                                                     "scope": "chosen", "item": str(world.ids_a["backup_item_id"])})
    assert response.status_code == 302
    baseline = db_session.scalar(select(Baseline).where(Baseline.workspace_id == world.a.id))
    [item] = db_session.scalars(select(BaselinePolicy).where(BaselinePolicy.baseline_id == baseline.id))
    assert (item.name, item.policy_type) == ("ALPHA item", "deviceConfiguration")


def test_another_workspaces_backup_set_is_a_404_and_builds_nothing(ada, world, db_session):
    base = f"/admin/w/{world.a.slug}/baselines"
    theirs = str(world.ids_b["backup_set_id"])
    assert ada.get(f"{base}/from-backup?backup_set={theirs}").status_code == 404
    assert ada.get(f"{base}/from-backup?tenant={world.tenant_b.external_id}").status_code == 404
    response = post_form(ada, f"{base}/from-backup", {"name": "Stolen", "backup_set": theirs, "scope": "all"})
    assert response.status_code == 404
    assert "BRAVO" not in ada.get(f"{base}/from-backup").get_data(as_text=True)
    assert baselines_of(db_session, world.a) == baselines_of(db_session, world.b) == 0


@pytest.mark.parametrize("fields, message", [
    ({"name": "x", "scope": "all"}, "Choose a backup set"),
    ({"name": "x", "scope": "all", "backup_set": ""}, "Choose a backup set"),
    ({"name": "x", "scope": "all", "backup_set": "12abc"}, "not a backup set id"),
    ({"name": "x", "scope": "all", "backup_set": "9" * 40}, "not a backup set id"),
    ({"name": "", "scope": "all", "backup_set": "OURS"}, "This field is required"),
    ({"name": "x", "scope": "sideways", "backup_set": "OURS"}, "Not a valid choice"),
    ({"name": "x", "scope": "chosen", "backup_set": "OURS"}, "Choose at least one policy"),
    ({"name": "x", "scope": "chosen", "backup_set": "OURS", "item": "one"}, "not an item id"),
    ({"name": "x", "scope": "chosen", "backup_set": "OURS", "item": "THEIRS"}, "not one of this backup set"),
])
def test_empty_missing_or_malformed_fields_are_a_400_that_says_why(ada, world, db_session, fields, message):
    values = {"OURS": str(world.ids_a["backup_set_id"]), "THEIRS": str(world.ids_b["backup_item_id"])}
    data = {key: values.get(value, value) for key, value in fields.items()}
    response = post_form(ada, f"/admin/w/{world.a.slug}/baselines/from-backup", data)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert baselines_of(db_session, world.a) == 0


def test_a_running_backup_is_refused_with_a_message(ada, world, db_session):
    db_session.get(BackupSet, world.ids_a["backup_set_id"]).status = "running"
    db_session.commit()
    response = post_form(ada, f"/admin/w/{world.a.slug}/baselines/from-backup",
                         {"name": "Too early", "backup_set": str(world.ids_a["backup_set_id"]), "scope": "all"})
    assert response.status_code == 400
    assert "completed or partial" in response.get_data(as_text=True)
    assert baselines_of(db_session, world.a) == 0


def test_the_same_name_twice_is_a_form_error(ada, world, db_session):
    data = {"name": "Twice", "backup_set": str(world.ids_a["backup_set_id"]), "scope": "all"}
    assert post_form(ada, f"/admin/w/{world.a.slug}/baselines/from-backup", data).status_code == 302
    response = post_form(ada, f"/admin/w/{world.a.slug}/baselines/from-backup", data)
    assert response.status_code == 400 and "a baseline of that name already" in response.get_data(as_text=True)
    assert baselines_of(db_session, world.a) == 1


def test_an_operator_may_not_build_from_a_backup(app, world, db_session):
    client = app.test_client()
    sign_in(client, world.dual.email)  # operator in A
    enter(client, world.a)
    url = f"/admin/w/{world.a.slug}/baselines/from-backup"
    body = page(client, f"{url}?backup_set={world.ids_a['backup_set_id']}")  # any member may look
    assert "Only a manager or higher can build baselines" in body and "Build baseline</button>" not in body
    response = client.post(url, data={"name": "No", "backup_set": str(world.ids_a["backup_set_id"]), "scope": "all",
                                      "csrf_token": csrf_token(client)})
    assert response.status_code == 403
    assert baselines_of(db_session, world.a) == 0


def test_ticked_policies_with_every_policy_chosen_are_a_400_that_builds_nothing(ada, world, db_session):
    """Ticking boxes while "every policy" stays chosen once built the whole set: now refused, with the way out."""
    response = post_form(ada, f"/admin/w/{world.a.slug}/baselines/from-backup",
                         {"name": "Contradiction", "backup_set": str(world.ids_a["backup_set_id"]), "scope": "all",
                          "item": str(world.ids_a["backup_item_id"])})
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "1 policy is ticked but" in body and "Only the policies ticked below" in body
    assert f'value="{world.ids_a["backup_item_id"]}" id="item-{world.ids_a["backup_item_id"]}" checked' in body
    assert baselines_of(db_session, world.a) == 0


def test_every_policy_without_ticks_still_builds_the_whole_set(ada, world, db_session):
    response = post_form(ada, f"/admin/w/{world.a.slug}/baselines/from-backup",
                         {"name": "Everything", "backup_set": str(world.ids_a["backup_set_id"]), "scope": "all"})
    assert response.status_code == 302
    assert baselines_of(db_session, world.a) == 1


def test_the_policy_boxes_drive_the_scope_radio(ada, world):
    body = page(ada, f"/admin/w/{world.a.slug}/baselines/from-backup?backup_set={world.ids_a['backup_set_id']}")
    assert 'data-picks-scope="chosen"' in body
    assert 'data-scope-option="chosen"' in body and 'data-scope-option="all"' in body
    assert "Ticking a policy below chooses" in body


def test_a_policy_whose_payload_holds_no_settings_or_platform_is_named_in_a_warning(ada, world, db_session):
    """The world's backup payload is incomplete (a name, no type, no settings): built, but never silently."""
    response = post_form(ada, f"/admin/w/{world.a.slug}/baselines/from-backup",
                         {"name": "Hollow", "backup_set": str(world.ids_a["backup_set_id"]), "scope": "all"},
                         follow_redirects=True)
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "1 policy of this backup holds no settings or no known platform" in body and "“ALPHA item”" in body
    assert "No known platform and no settings" in body  # stays on the baseline's page, per policy


def test_hollow_policies_names_those_without_settings_or_platform():
    from app.drift.baselines import TenantPolicy, hollow_policies

    policies = [TenantPolicy(1, "deviceConfiguration", "windows10", "Fine", {"a": 1}),
                TenantPolicy(2, "deviceConfiguration", "windows10", "Empty", {}),
                TenantPolicy(3, "deviceCompliancePolicy", "unknown", "Typeless", {"a": 1})]
    assert hollow_policies(policies) == ["Empty", "Typeless"]
