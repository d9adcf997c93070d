"""The restore wizard's pages: the target and the items come from a form, so every forged value
is refused (another workspace's tenant is the same 404 as a missing one), and nothing is
planned unless every check holds."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.graph.families import required_permissions
from app.models import BackupItem, RestoreItem, RestoreRun
from tests.conftest import csrf_token, page, post_form, sign_in, enter, tenant_url

WRITE_TIER = sorted(set(required_permissions("read")) | set(required_permissions("write")))


@pytest.fixture
def restorable(world, db_session):
    """Tenants A and A2 connected with the write tier: restores may be planned into either."""
    for tenant in (world.tenant_a, world.tenant_a2, world.tenant_b):
        tenant.connection_status, tenant.granted_permissions = "connected", WRITE_TIER
    db_session.commit()
    return world


def runs(db_session) -> int:
    return db_session.scalar(select(func.count()).select_from(RestoreRun))


def wizard_url(world):
    return tenant_url(world.tenant_a, f"/backups/{world.ids_a['backup_set_id']}/restore")


def test_the_wizard_lists_the_sets_restorable_items_and_the_workspaces_tenants_only(ada, restorable):
    body = page(ada, wizard_url(restorable))
    assert "ALPHA item" in body
    assert str(restorable.tenant_a2.external_id) in body  # another tenant of the workspace: a target
    assert str(restorable.tenant_b.external_id) not in body and "Bravo" not in body


def test_planning_creates_a_run_with_exactly_the_chosen_item_in_the_chosen_target(ada, restorable, db_session):
    response = post_form(ada, wizard_url(restorable), {"item": str(restorable.ids_a["backup_item_id"]),
                                                       "target_tenant": str(restorable.tenant_a2.external_id),
                                                       "assignment_mode": "replace"})
    assert response.status_code == 302
    run = db_session.scalar(select(RestoreRun).order_by(RestoreRun.id.desc()))
    assert run.tenant_id == restorable.tenant_a2.id and run.source_tenant_id == restorable.tenant_a.id
    assert run.status == "planning" and run.assignment_mode == "replace"
    assert response.headers["Location"].endswith(
        f"/admin/t/{restorable.tenant_a2.external_id}/restore-runs/{run.id}")
    assert [item.source_graph_id for item in db_session.scalars(
        select(RestoreItem).where(RestoreItem.restore_run_id == run.id))] == [
        db_session.get(BackupItem,
                       restorable.ids_a["backup_item_id"]).graph_id]


def test_a_target_of_another_workspace_is_a_404_and_nothing_is_planned(ada, restorable, db_session):
    before = runs(db_session)
    response = post_form(ada, wizard_url(restorable), {"item": str(restorable.ids_a["backup_item_id"]),
                                                       "target_tenant": str(restorable.tenant_b.external_id),
                                                       "assignment_mode": "keep"})
    assert response.status_code == 404
    assert runs(db_session) == before


@pytest.mark.parametrize("target", ["not-a-guid", "", "00000000-0000-0000-0000-000000000000", "x" * 5000])
def test_a_malformed_or_unknown_target_is_refused_and_nothing_is_planned(ada, restorable, db_session, target):
    before = runs(db_session)
    response = post_form(ada, wizard_url(restorable), {"item": str(restorable.ids_a["backup_item_id"]),
                                                       "target_tenant": target, "assignment_mode": "keep"})
    assert response.status_code in (400, 404)
    assert runs(db_session) == before


def test_items_of_another_tenants_backup_are_not_restored_from_this_one(ada, restorable, db_session):
    before = runs(db_session)
    response = post_form(ada, wizard_url(restorable), {"item": str(restorable.ids_b["backup_item_id"]),
                                                       "target_tenant": str(restorable.tenant_a.external_id),
                                                       "assignment_mode": "keep"})
    assert response.status_code == 400
    assert "not in this backup set" in response.get_data(as_text=True)
    assert runs(db_session) == before


@pytest.mark.parametrize("item", ["abc", "-1", "1e5", "9" * 40])
def test_an_item_that_is_not_an_id_is_a_clear_400(ada, restorable, db_session, item):
    before = runs(db_session)
    response = post_form(ada, wizard_url(restorable), {"item": item, "target_tenant": str(restorable.tenant_a.external_id),
                                                       "assignment_mode": "keep"})
    assert response.status_code == 400 and "not an item id" in response.get_data(as_text=True)
    assert runs(db_session) == before


def test_an_unknown_assignment_mode_is_refused(ada, restorable, db_session):
    before = runs(db_session)
    response = post_form(ada, wizard_url(restorable), {"item": str(restorable.ids_a["backup_item_id"]),
                                                       "target_tenant": str(restorable.tenant_a.external_id),
                                                       "assignment_mode": "delete-everything"})
    assert response.status_code == 400 and "Not a valid choice" in response.get_data(as_text=True)
    assert runs(db_session) == before


def test_a_target_without_the_write_tier_is_explained_and_nothing_is_planned(ada, restorable, db_session):
    restorable.tenant_a2.granted_permissions = sorted(required_permissions("read"))
    db_session.commit()
    before = runs(db_session)
    response = post_form(ada, wizard_url(restorable), {"item": str(restorable.ids_a["backup_item_id"]),
                                                       "target_tenant": str(restorable.tenant_a2.external_id),
                                                       "assignment_mode": "keep"})
    body = response.get_data(as_text=True)
    assert response.status_code == 400 and "has not granted what restoring needs" in body
    assert "DeviceManagementConfiguration.ReadWrite.All" in body
    assert runs(db_session) == before


def test_an_operator_cannot_open_the_wizard_or_plan(app, restorable, db_session):
    before = runs(db_session)
    client = app.test_client()
    sign_in(client, restorable.dual.email)
    enter(client, restorable.a)
    assert client.get(wizard_url(restorable)).status_code == 403
    response = client.post(wizard_url(restorable), data={"csrf_token": csrf_token(client),
                                                         "item": str(restorable.ids_a["backup_item_id"]),
                                                         "target_tenant": str(restorable.tenant_a.external_id)})
    assert response.status_code == 403
    assert runs(db_session) == before


def test_another_workspaces_backup_set_is_a_404_at_every_step(ada, restorable):
    foreign = restorable.ids_b["backup_set_id"]
    for url in (f"/backups/{foreign}", f"/backups/{foreign}/restore",
                f"/restore-runs/{restorable.ids_b['restore_run_id']}"):
        assert ada.get(tenant_url(restorable.tenant_a, url)).status_code == 404, url
    response = post_form(ada, tenant_url(restorable.tenant_a, f"/backups/{foreign}/restore"),
                         {"item": str(restorable.ids_b["backup_item_id"]),
                          "target_tenant": str(restorable.tenant_a.external_id), "assignment_mode": "keep"})
    assert response.status_code == 404


def test_the_plan_shows_held_back_assignments_and_what_a_family_does_not_carry(ada, restorable, db_session):
    item = db_session.get(RestoreItem, restorable.ids_a["restore_item_id"])
    item.plan = {"reason": "2 setting(s) differ.", "note": "The policy's targeted apps are not restored: check them.",
                 "held_back": "Assignments are not restored: an excluded group has no match in the target."}
    db_session.commit()
    body = page(ada, tenant_url(restorable.tenant_a, f"/restore-runs/{restorable.ids_a['restore_run_id']}"))
    assert "an excluded group has no match in the target" in body and "targeted apps are not restored" in body


def test_back_up_now_on_a_tenant_that_is_not_connected_says_why_and_starts_nothing(ada, world, db_session):
    from app.models import BackupSet

    before = db_session.scalar(select(func.count()).select_from(BackupSet))
    response = post_form(ada, tenant_url(world.tenant_a, "/backups/run"), follow_redirects=True)
    assert "not connected to Microsoft Graph: a backup can run once it is connected" in response.get_data(as_text=True)
    assert db_session.scalar(select(func.count()).select_from(BackupSet)) == before


# --- the plan page's wording ------------------------------------------------------------------------


def planned_run(restorable, db_session, actions: dict[str, str], **run_changes) -> str:
    """Tenant A's run as planned, its one item with `actions["item"]`; returns its page URL."""
    run = db_session.get(RestoreRun, restorable.ids_a["restore_run_id"])
    item = db_session.get(RestoreItem, restorable.ids_a["restore_item_id"])
    run.status = "planned"
    run.summary = {"actions": {action: n for action, n in actions.items() if action != "item"}}
    for key, value in run_changes.items():
        setattr(run, key, value)
    item.action, item.status, item.verified = actions["item"], "planned", None
    item.plan = {"reason": "Identical in the target: nothing to write." if actions["item"] == "skip" else "1 setting(s) differ.",
                 "note": "Created with the block action Graph requires (after 0 hours).",
                 "diff": [{"path": "description", "left": "a", "right": "b", "status": "changed"}]}
    db_session.commit()
    return tenant_url(restorable.tenant_a, f"/restore-runs/{run.id}")


def test_a_skipped_item_shows_no_family_note_and_a_plan_writing_nothing_offers_no_execute(ada, restorable, db_session):
    body = page(ada, planned_run(restorable, db_session, {"item": "skip", "skip": 1}))
    assert "block action" not in body
    assert "Nothing to write" in body and "Execute the restore" not in body


def test_execute_asks_to_confirm_the_counts_and_the_target(ada, restorable, db_session):
    body = page(ada, planned_run(restorable, db_session, {"item": "update", "create": 3, "update": 16, "skip": 2}))
    assert f'data-confirm="Write 3 creates and 16 updates to {restorable.tenant_a.name}?"' in body
    assert "Execute the restore" in body and "block action" in body  # the item is written: its note shows


def test_a_version_restore_names_the_policy_and_version_and_its_column(ada, restorable, db_session):
    from app.models import Policy, PolicyVersion

    version = db_session.get(PolicyVersion, restorable.ids_a["version_b"])
    policy = db_session.get(Policy, restorable.ids_a["policy_id"])
    body = page(ada, planned_run(restorable, db_session, {"item": "update", "update": 1},
                                 backup_set_id=None, policy_version_id=version.id))
    assert f"version {version.version_number} of" in body and policy.display_name in body
    assert "From the version" in body and "From the backup" not in body


def target_option(body: str, tenant) -> str:
    import re

    [option] = re.findall(rf'<option[^>]*value="{tenant.external_id}"[^>]*>[^<]*', body)
    return option


def test_the_target_list_disables_tenants_that_cannot_take_the_restore_and_says_why(ada, restorable, db_session):
    restorable.tenant_a2.granted_permissions = sorted(required_permissions("read"))
    db_session.commit()
    option = target_option(page(ada, wizard_url(restorable)), restorable.tenant_a2)
    assert "disabled" in option and "lacks DeviceManagementConfiguration.ReadWrite.All" in option
    restorable.tenant_a2.connection_status = "not_connected"
    db_session.commit()
    body = page(ada, wizard_url(restorable))
    option = target_option(body, restorable.tenant_a2)
    assert "disabled" in option and "not connected" in option
    this = target_option(body, restorable.tenant_a)
    assert "disabled" not in this and "selected" in this
