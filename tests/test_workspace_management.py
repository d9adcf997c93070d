"""/admin/workspaces: list, create, rename, members (with the last-owner rule)."""
from __future__ import annotations

import pytest

from sqlalchemy import select

from app.models import Workspace, WorkspaceMembership
from tests.conftest import csrf_token, enter, post_form, sign_in


def _role(db_session, workspace, user):
    return db_session.scalar(select(WorkspaceMembership.role).where(
        WorkspaceMembership.workspace_id == workspace.id, WorkspaceMembership.user_id == user.id))


def test_workspace_list_shows_only_my_workspaces_with_tenant_counts(client, world):
    sign_in(client, world.ada.email)
    page = client.get("/admin/workspaces").get_data(as_text=True)
    assert "Alpha MSP" in page and "Bravo MSP" not in page
    assert '<div class="stat">2</div>' in page  # two active tenants in Alpha


def _make_admin(db_session, user):
    user.is_admin = True
    db_session.commit()


def test_an_administrator_creating_a_workspace_becomes_its_owner_and_it_becomes_current(client, world, db_session):
    _make_admin(db_session, world.olivia)
    sign_in(client, world.olivia.email)
    response = post_form(client, "/admin/workspaces", {"name": "Olivia Ops", "slug": "olivia-ops"})
    assert response.headers["Location"] == "/admin/w/olivia-ops/managed-tenants"
    workspace = db_session.scalar(select(Workspace).where(Workspace.slug == "olivia-ops"))
    assert _role(db_session, workspace, world.olivia) == "owner"
    assert client.get("/admin").headers["Location"] == "/admin/w/olivia-ops/managed-tenants"


def test_an_administrator_creating_a_workspace_with_a_bad_or_taken_slug_gets_told_why(client, world, db_session):
    _make_admin(db_session, world.olivia)
    sign_in(client, world.olivia.email)
    response = post_form(client, "/admin/workspaces", {"name": "X", "slug": "Not Valid!"})
    assert response.status_code == 400 and "lower-case letters" in response.get_data(as_text=True)
    response = post_form(client, "/admin/workspaces", {"name": "X", "slug": world.a.slug})
    assert response.status_code == 400 and "This slug is taken" in response.get_data(as_text=True)
    response = post_form(client, "/admin/workspaces", {"name": "", "slug": ""})
    assert response.status_code == 400


def test_a_readonly_user_cannot_create_a_workspace_and_learns_nothing_about_slugs(client, world, db_session):
    sign_in(client, world.olivia.email)
    page = client.get("/admin/workspaces").get_data(as_text=True)
    assert "Create a workspace" not in page and "created by a platform administrator" in page
    for slug in (world.a.slug, "free-slug"):
        response = post_form(client, "/admin/workspaces", {"name": "X", "slug": slug})
        body = response.get_data(as_text=True)
        assert response.status_code == 403
        assert "Only a platform administrator can create workspaces" in body and "taken" not in body
    assert db_session.scalar(select(Workspace).where(Workspace.slug == "free-slug")) is None


def test_a_workspace_owner_who_is_no_administrator_cannot_create_a_workspace(client, world):
    sign_in(client, world.ada.email)
    assert post_form(client, "/admin/workspaces", {"name": "Ada Two", "slug": "ada-two"}).status_code == 403


def test_owner_renames_the_workspace(client, world, db_session):
    sign_in(client, world.ada.email)
    assert post_form(client, f"/admin/workspaces/{world.a.slug}/settings", {"name": "Alpha Prime"}).status_code == 302
    db_session.refresh(world.a)
    assert world.a.name == "Alpha Prime"
    assert post_form(client, f"/admin/workspaces/{world.a.slug}/settings", {"name": "x" * 500}).status_code == 400


def test_non_member_gets_404_on_management_pages(client, world):
    sign_in(client, world.olivia.email)
    for path in ("settings", "members"):
        assert client.get(f"/admin/workspaces/{world.a.slug}/{path}").status_code == 404
    assert post_form(client, f"/admin/workspaces/{world.a.slug}/invitations",
                     {"email": world.olivia.email, "role": "owner"}).status_code == 404


def test_owner_changes_and_removes_a_member(client, world, db_session, add_member):
    add_member(world.a, world.olivia, "operator")  # joined by invitation (tests/test_invitations.py)
    sign_in(client, world.ada.email)
    base = f"/admin/workspaces/{world.a.slug}/members"
    membership_id = db_session.scalar(select(WorkspaceMembership.id).where(
        WorkspaceMembership.workspace_id == world.a.id, WorkspaceMembership.user_id == world.olivia.id))
    assert post_form(client, f"{base}/{membership_id}/role", {"role": "manager"}).status_code == 302
    assert _role(db_session, world.a, world.olivia) == "manager"
    assert post_form(client, f"{base}/{membership_id}/remove").status_code == 302
    assert _role(db_session, world.a, world.olivia) is None


def test_last_owner_cannot_be_demoted_or_removed(client, world, db_session):
    sign_in(client, world.ada.email)
    base = f"/admin/workspaces/{world.a.slug}/members"
    own_id = db_session.scalar(select(WorkspaceMembership.id).where(
        WorkspaceMembership.workspace_id == world.a.id, WorkspaceMembership.user_id == world.ada.id))
    response = post_form(client, f"{base}/{own_id}/role", {"role": "readonly"}, follow_redirects=True)
    assert "The last owner cannot be demoted" in response.get_data(as_text=True)
    response = post_form(client, f"{base}/{own_id}/remove", follow_redirects=True)
    assert "The last owner cannot be removed" in response.get_data(as_text=True)
    assert _role(db_session, world.a, world.ada) == "owner"


def test_an_owner_can_step_down_once_there_is_another_owner(client, world, db_session):
    sign_in(client, world.ada.email)
    base = f"/admin/workspaces/{world.a.slug}/members"
    dual_id = db_session.scalar(select(WorkspaceMembership.id).where(
        WorkspaceMembership.workspace_id == world.a.id, WorkspaceMembership.user_id == world.dual.id))
    own_id = db_session.scalar(select(WorkspaceMembership.id).where(
        WorkspaceMembership.workspace_id == world.a.id, WorkspaceMembership.user_id == world.ada.id))
    post_form(client, f"{base}/{dual_id}/role", {"role": "owner"})
    post_form(client, f"{base}/{own_id}/role", {"role": "readonly"})
    assert _role(db_session, world.a, world.ada) == "readonly"


def test_membership_of_another_workspace_cannot_be_touched_by_id(client, world, db_session):
    sign_in(client, world.ada.email)
    bobs = db_session.scalar(select(WorkspaceMembership.id).where(WorkspaceMembership.user_id == world.bob.id))
    assert post_form(client, f"/admin/workspaces/{world.a.slug}/members/{bobs}/remove").status_code == 404
    assert _role(db_session, world.b, world.bob) == "owner"


def test_readonly_member_sees_members_but_no_controls(client, world, make_user, add_member):
    viewer = make_user("viewer@example.test", name="Viewer")
    add_member(world.a, viewer, "readonly")
    sign_in(client, viewer.email)
    page = client.get(f"/admin/workspaces/{world.a.slug}/members").get_data(as_text=True)
    assert "Ada" in page and "Add a member" not in page and "Remove" not in page
    enter(client, world.a)
    assert csrf_token(client)


@pytest.mark.parametrize("role", ["readonly", "operator", "manager"])
def test_settings_show_a_non_owner_the_name_read_only_without_a_field(client, world, make_user, add_member, role):
    member = make_user(f"{role}-settings@example.test", name=role.title())
    add_member(world.a, member, role)
    sign_in(client, member.email)
    page = client.get(f"/admin/workspaces/{world.a.slug}/settings").get_data(as_text=True)
    assert "Alpha MSP" in page and f"your role here is {role}" in page
    assert 'name="name"' not in page and "<form method=\"post\" novalidate>" not in page and ">Save<" not in page


def test_settings_offer_the_owner_the_name_field_and_save(client, world):
    sign_in(client, world.ada.email)
    page = client.get(f"/admin/workspaces/{world.a.slug}/settings").get_data(as_text=True)
    assert 'name="name"' in page and ">Save<" in page


def test_a_403_keeps_the_console_layout_and_a_404_stays_bare(client, world, make_user, add_member):
    viewer = make_user("viewer-403@example.test", name="Viewer")
    add_member(world.a, viewer, "readonly")
    sign_in(client, viewer.email)
    enter(client, world.a)
    forbidden = client.get(f"/admin/t/{world.tenant_a.external_id}/schedules/new")
    assert forbidden.status_code == 403
    body = forbidden.get_data(as_text=True)
    assert "Only an operator or higher can manage backup schedules" in body
    assert 'class="sidebar' in body and "Alpha MSP" in body
    missing = client.get(f"/admin/t/{world.tenant_b.external_id}").get_data(as_text=True)
    assert 'class="sidebar' not in missing and "Alpha MSP" not in missing
