"""The workspace context and the hard rule for /admin/t/<tenant>."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from app.models import User, WorkspaceMembership
from tests.conftest import enter, post_form, sign_in, tenant_url


# --- the hard rule ----------------------------------------------------------------------------------


def test_member_with_the_tenants_workspace_current_sees_the_tenant(client, world):
    sign_in(client, world.ada.email)
    enter(client, world.a)
    response = client.get(tenant_url(world.tenant_a))
    assert response.status_code == 200
    assert "Alpha Customer One" in response.get_data(as_text=True)


def test_tenant_page_without_a_current_workspace_is_404(client, world):
    sign_in(client, world.ada.email)  # Ada has no last workspace yet: none is current
    assert client.get(tenant_url(world.tenant_a)).status_code == 404


def test_tenant_in_other_workspace_is_404(client, world):
    sign_in(client, world.dual.email)
    enter(client, world.b)
    assert client.get(tenant_url(world.tenant_a)).status_code == 404
    enter(client, world.a)
    assert client.get(tenant_url(world.tenant_a)).status_code == 200


def test_non_member_is_404_even_with_a_forged_current_workspace(client, world):
    sign_in(client, world.olivia.email)
    with client.session_transaction() as session:
        session["current_workspace_id"] = world.a.id
    assert client.get(tenant_url(world.tenant_a)).status_code == 404


def test_unknown_and_malformed_tenant_ids_are_404(client, world):
    sign_in(client, world.ada.email)
    enter(client, world.a)
    for ext in (str(uuid.uuid4()), "not-a-guid", "1", "x" * 5000, "%00", "../../etc/passwd"):
        assert client.get(f"/admin/t/{ext}/policies").status_code in (404, 400), ext


def test_membership_removed_mid_session_is_404(client, world, db_session):
    sign_in(client, world.dual.email)
    enter(client, world.a)
    assert client.get(tenant_url(world.tenant_a)).status_code == 200
    db_session.execute(WorkspaceMembership.__table__.delete().where(
        WorkspaceMembership.user_id == world.dual.id, WorkspaceMembership.workspace_id == world.a.id))
    db_session.commit()
    assert client.get(tenant_url(world.tenant_a)).status_code == 404
    assert client.get(f"/admin/w/{world.a.slug}/managed-tenants").status_code == 404


def test_every_denial_has_the_same_body(client, world, db_session):
    bodies = []
    sign_in(client, world.dual.email)
    bodies.append(client.get(tenant_url(world.tenant_a)).get_data(as_text=True))  # no current workspace
    enter(client, world.b)
    bodies.append(client.get(tenant_url(world.tenant_a)).get_data(as_text=True))  # other workspace current
    bodies.append(client.get(f"/admin/t/{uuid.uuid4()}").get_data(as_text=True))  # unknown tenant
    bodies.append(client.get("/admin/t/garbage").get_data(as_text=True))  # malformed
    with client.session_transaction() as session:
        session["current_workspace_id"] = world.a.id
    db_session.execute(WorkspaceMembership.__table__.delete().where(
        WorkspaceMembership.user_id == world.dual.id, WorkspaceMembership.workspace_id == world.a.id))
    db_session.commit()
    bodies.append(client.get(tenant_url(world.tenant_a)).get_data(as_text=True))  # membership removed
    assert len(set(bodies)) == 1
    assert "Alpha" not in bodies[0] and str(world.tenant_a.external_id) not in bodies[0]


def test_denials_are_logged_with_their_reason(client, world, caplog):
    sign_in(client, world.dual.email)
    enter(client, world.b)
    with caplog.at_level("INFO"):
        client.get(tenant_url(world.tenant_a))
    assert any("not in the current workspace" in record.getMessage() for record in caplog.records)


def test_a_child_record_of_another_tenant_is_404(client, world):
    sign_in(client, world.dual.email)
    enter(client, world.a)
    b = world.ids_b
    for path in (f"/policies/{b['policy_id']}", f"/backups/{b['backup_set_id']}",
                 f"/restore-runs/{b['restore_run_id']}", f"/schedules/{b['schedule_id']}/edit",
                 f"/inventory/{b['item_id']}",
                 f"/policies/{world.ids_a['policy_id']}/diff?a={b['version_a']}&b={b['version_b']}"):
        assert client.get(tenant_url(world.tenant_a, path)).status_code == 404, path
    response = post_form(client, tenant_url(world.tenant_a, f"/findings/{b['finding_id']}/acknowledge"))
    assert response.status_code == 404


def test_anonymous_visitor_of_a_tenant_page_is_sent_to_sign_in(client, world):
    response = client.get(tenant_url(world.tenant_a, "/policies"))
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_archived_tenant_stays_readable_but_leaves_the_switcher_and_default_landing(client, world, db_session):
    world.tenant_a2.status = "archived"
    db_session.commit()
    sign_in(client, world.ada.email)
    landing = enter(client, world.a).get_data(as_text=True)
    assert "Alpha Customer Two" not in landing
    assert "Alpha Customer Two" in client.get(f"/admin/w/{world.a.slug}/managed-tenants?status=archived").get_data(
        as_text=True)
    assert client.get(tenant_url(world.tenant_a2)).status_code == 200
    search = client.get(f"/admin/w/{world.a.slug}/tenant-switcher/search?q=Alpha").get_json()
    assert [r["name"] for r in search["results"]] == ["Alpha Customer One"]


# --- the workspace context ---------------------------------------------------------------------------


def test_visiting_a_workspace_makes_it_current_and_remembers_it(client, world, db_session):
    sign_in(client, world.dual.email)
    enter(client, world.b)
    with client.session_transaction() as session:
        assert session["current_workspace_id"] == world.b.id
    db_session.refresh(world.dual)
    assert world.dual.last_workspace_id == world.b.id


def test_sign_in_restores_the_last_workspace_while_still_a_member(client, world, db_session):
    world.dual.last_workspace_id = world.b.id
    db_session.commit()
    sign_in(client, world.dual.email)
    assert client.get("/admin").headers["Location"] == f"/admin/w/{world.b.slug}/managed-tenants"


def test_sign_in_does_not_restore_a_workspace_the_user_left(client, world, db_session):
    world.olivia.last_workspace_id = world.a.id
    db_session.commit()
    sign_in(client, world.olivia.email)
    with client.session_transaction() as session:
        assert "current_workspace_id" not in session
    assert client.get("/admin").headers["Location"] == "/admin/workspaces"


def test_unknown_slug_and_foreign_workspace_are_404(client, world):
    sign_in(client, world.ada.email)
    assert client.get("/admin/w/no-such-workspace/managed-tenants").status_code == 404
    assert client.get(f"/admin/w/{world.b.slug}/managed-tenants").status_code == 404
    assert client.get("/admin/w/" + "x" * 300 + "/managed-tenants").status_code == 404


def test_workspace_switcher_post_makes_the_chosen_workspace_current(client, world):
    sign_in(client, world.dual.email)
    enter(client, world.a)
    response = post_form(client, "/admin/workspaces/switch", {"workspace_id": world.b.id})
    assert response.headers["Location"] == f"/admin/w/{world.b.slug}/managed-tenants"
    assert client.get(tenant_url(world.tenant_b)).status_code == 200
    assert client.get(tenant_url(world.tenant_a)).status_code == 404


def test_workspace_switcher_refuses_a_workspace_of_others(client, world):
    sign_in(client, world.ada.email)
    assert post_form(client, "/admin/workspaces/switch", {"workspace_id": world.b.id}).status_code == 404
    assert post_form(client, "/admin/workspaces/switch", {"workspace_id": "abc"}).status_code == 400


def test_admin_goes_to_the_current_landing_or_the_workspace_list(client, world):
    sign_in(client, world.ada.email)
    assert client.get("/admin").headers["Location"] == "/admin/workspaces"
    enter(client, world.a)
    assert client.get("/admin").headers["Location"] == f"/admin/w/{world.a.slug}/managed-tenants"


# --- legacy routes -----------------------------------------------------------------------------------


def test_legacy_index_redirects_to_the_current_landing_or_workspaces(client, world):
    sign_in(client, world.ada.email)
    assert client.get("/admin/managed-tenants").headers["Location"] == "/admin/workspaces"
    assert client.get("/admin/managed-tenants/create").headers["Location"] == "/admin/workspaces"
    enter(client, world.a)
    for path in ("/admin/managed-tenants", "/admin/managed-tenants/", "/admin/managed-tenants/create"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"] == f"/admin/w/{world.a.slug}/managed-tenants"


def test_legacy_deep_links_resolve_within_the_current_workspace(client, world):
    sign_in(client, world.ada.email)
    enter(client, world.a)
    ext = str(world.tenant_a.external_id)
    cases = {
        f"/admin/managed-tenants/{world.tenant_a.id}": f"/admin/t/{ext}",
        f"/admin/managed-tenants/{ext}": f"/admin/t/{ext}",
        f"/admin/managed-tenants/{ext}/policies": f"/admin/t/{ext}/policies",
        f"/admin/managed-tenants/{world.tenant_a.id}/findings": f"/admin/t/{ext}/findings",
        f"/admin/managed-tenants/{ext}/edit": f"/admin/t/{ext}",
    }
    for legacy, modern in cases.items():
        response = client.get(legacy)
        assert response.status_code == 302, legacy
        assert response.headers["Location"] == modern


def test_legacy_deep_links_keep_their_sub_path_and_query_when_the_target_exists(client, world):
    sign_in(client, world.ada.email)
    enter(client, world.a)
    ext, ids = str(world.tenant_a.external_id), world.ids_a
    cases = {
        f"/admin/managed-tenants/{ext}/policies/{ids['policy_id']}": f"/admin/t/{ext}/policies/{ids['policy_id']}",
        f"/admin/managed-tenants/{ext}/policies?page=2&q=x": f"/admin/t/{ext}/policies?page=2&q=x",
        f"/admin/managed-tenants/{world.tenant_a.id}/backup-sets/{ids['backup_set_id']}?page=3":
            f"/admin/t/{ext}/backups/{ids['backup_set_id']}?page=3",
        f"/admin/managed-tenants/{ext}/backup-schedules/{ids['schedule_id']}/edit":
            f"/admin/t/{ext}/schedules/{ids['schedule_id']}/edit",
        f"/admin/managed-tenants/{ext}/findings?status=all": f"/admin/t/{ext}/findings?status=all",
        # No such record in this tenant, or no such page: the section's list instead.
        f"/admin/managed-tenants/{ext}/policies/{world.ids_b['policy_id']}": f"/admin/t/{ext}/policies",
        f"/admin/managed-tenants/{ext}/policies/99999999": f"/admin/t/{ext}/policies",
        f"/admin/managed-tenants/{ext}/policies/258/history?page=2": f"/admin/t/{ext}/policies",
        f"/admin/managed-tenants/{ext}/inventory/not-a-number%20": f"/admin/t/{ext}/inventory",
        "/admin/managed-tenants?q=alpha&page=2": f"/admin/w/{world.a.slug}/managed-tenants?q=alpha&page=2",
    }
    for legacy, modern in cases.items():
        response = client.get(legacy)
        assert response.status_code == 302, legacy
        assert response.headers["Location"] == modern, legacy
        assert client.get(modern).status_code == 200, modern


def test_legacy_deep_link_to_a_tenant_outside_the_current_workspace_is_404(client, world):
    sign_in(client, world.dual.email)
    for path in (f"/admin/managed-tenants/{world.tenant_a.id}", f"/admin/managed-tenants/{world.tenant_a.external_id}"):
        assert client.get(path).status_code == 404  # no current workspace
    enter(client, world.b)
    for path in (f"/admin/managed-tenants/{world.tenant_a.id}", f"/admin/managed-tenants/{world.tenant_a.external_id}",
                 f"/admin/managed-tenants/{uuid.uuid4()}", "/admin/managed-tenants/99999999999"):
        assert client.get(path).status_code == 404, path


def test_legacy_links_with_non_ascii_digits_are_not_tenant_ids(client, world):
    """Found by hypothesis: "²" passes str.isdigit() but not int(); other scripts' digits pass both."""
    sign_in(client, world.ada.email)
    enter(client, world.a)
    arabic_indic = "".join(chr(0x0660 + int(d)) for d in str(world.tenant_a.id))
    for reference in ("\u00b2", arabic_indic, "\uff11", "1\u00b2"):
        response = client.get(f"/admin/managed-tenants/{reference}")
        assert response.status_code == 302, reference
        assert response.headers["Location"] == "/admin/w/alpha-msp/managed-tenants"


def test_legacy_routes_send_signed_out_visitors_to_sign_in_and_back(client, world):
    response = client.get("/admin/managed-tenants/create")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")
    response = sign_in(client, world.ada.email, next_url="/admin/managed-tenants")
    assert response.headers["Location"] == "/admin/managed-tenants"
    assert client.get("/admin/managed-tenants").headers["Location"] == "/admin/workspaces"


# --- the tenant switcher ------------------------------------------------------------------------------


def test_switcher_search_returns_only_current_workspace_tenants(client, world):
    sign_in(client, world.dual.email)
    enter(client, world.a)
    results = client.get(f"/admin/w/{world.a.slug}/tenant-switcher/search?q=customer").get_json()["results"]
    assert sorted(r["name"] for r in results) == ["Alpha Customer One", "Alpha Customer Two"]
    results = client.get(f"/admin/w/{world.a.slug}/tenant-switcher/search?q=Bravo").get_json()["results"]
    assert results == []


def test_switcher_search_is_capped_at_twenty(client, world, make_tenant):
    for i in range(30):
        make_tenant(world.a, name=f"Bulk Customer {i:02d}")
    sign_in(client, world.ada.email)
    results = client.get(f"/admin/w/{world.a.slug}/tenant-switcher/search?q=bulk").get_json()["results"]
    assert len(results) == 20


def test_switcher_search_handles_wildcards_and_huge_input(client, world):
    sign_in(client, world.ada.email)
    assert client.get(f"/admin/w/{world.a.slug}/tenant-switcher/search?q=%25").get_json()["results"] == []
    assert client.get(f"/admin/w/{world.a.slug}/tenant-switcher/search?q=_").get_json()["results"] == []
    response = client.get(f"/admin/w/{world.a.slug}/tenant-switcher/search?q=" + "a" * 10000,
                          headers={"Accept": "application/json"})
    assert response.status_code == 400 and "at most 200 characters" in response.get_json()["message"]


def test_switcher_fragment_lists_only_current_workspace_recent_and_pinned(client, world):
    sign_in(client, world.dual.email)
    enter(client, world.b)
    client.get(tenant_url(world.tenant_b))  # a visit in B
    enter(client, world.a)
    client.get(tenant_url(world.tenant_a))  # a visit in A
    post_form(client, tenant_url(world.tenant_a2, "/pin"))
    fragment = client.get(f"/admin/w/{world.a.slug}/tenant-switcher").get_data(as_text=True)
    assert "Alpha Customer One" in fragment and "Alpha Customer Two" in fragment
    assert "Bravo" not in fragment
    page = client.get(tenant_url(world.tenant_a, "/policies")).get_data(as_text=True)
    assert "Bravo Secret Customer" not in page


def test_switcher_entries_keep_the_current_section(client, world):
    sign_in(client, world.ada.email)
    enter(client, world.a)
    client.get(tenant_url(world.tenant_a2))
    page = client.get(tenant_url(world.tenant_a, f"/policies/{world.ids_a['policy_id']}")).get_data(as_text=True)
    assert f'href="/admin/t/{world.tenant_a2.external_id}/policies"' in page
    assert 'data-switch-template="/admin/t/00000000-0000-0000-0000-000000000000/policies"' in page


def test_moving_a_tenant_takes_it_out_of_the_old_workspace_switcher(client, world, db_session):
    sign_in(client, world.dual.email)
    enter(client, world.a)
    client.get(tenant_url(world.tenant_a2))
    world.tenant_a2.workspace_id = world.b.id
    db_session.commit()
    fragment = client.get(f"/admin/w/{world.a.slug}/tenant-switcher").get_data(as_text=True)
    assert "Alpha Customer Two" not in fragment
    assert client.get(tenant_url(world.tenant_a2)).status_code == 404


def test_switcher_shows_users_own_marks_only(client, world, db_session):
    sign_in(client, world.ada.email)
    enter(client, world.a)
    client.get(tenant_url(world.tenant_a2))
    client.post("/logout", data={"csrf_token": ""})
    other = client.application.test_client()
    sign_in(other, world.dual.email)
    enter(other, world.a)
    fragment = other.get(f"/admin/w/{world.a.slug}/tenant-switcher").get_data(as_text=True)
    assert "Alpha Customer Two" not in fragment


def test_user_model_has_no_stale_current_workspace_after_removal(db_session, world):
    assert db_session.scalar(select(User.last_workspace_id).where(User.id == world.olivia.id)) is None


# --- workspace-qualified permalinks: /admin/w/<slug>/t/<tenant>/<section path> -----------------------


def permalink(workspace, tenant, rest: str = "") -> str:
    return f"/admin/w/{workspace.slug}/t/{tenant.external_id}{rest}"


def test_a_permalink_makes_its_workspace_current_and_opens_the_page_with_its_query(client, world):
    sign_in(client, world.dual.email)
    enter(client, world.b)  # another of Dual's workspaces is current: the bare tenant URL is a 404
    policy = world.ids_a["policy_id"]
    assert client.get(tenant_url(world.tenant_a, f"/policies/{policy}")).status_code == 404
    response = client.get(permalink(world.a, world.tenant_a, f"/policies/{policy}?q=x&page=2"))
    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/t/{world.tenant_a.external_id}/policies/{policy}?q=x&page=2"
    assert client.get(response.headers["Location"]).status_code == 200
    with client.session_transaction() as session:
        assert session["current_workspace_id"] == world.a.id
    bare = client.get(permalink(world.a, world.tenant_a))
    assert bare.headers["Location"] == f"/admin/t/{world.tenant_a.external_id}"


def test_a_permalink_is_the_same_404_for_anyone_else_and_for_any_mismatch(client, world):
    def body(url):
        response = client.get(url)
        assert response.status_code == 404, url
        return response.get_data(as_text=True)

    sign_in(client, world.bob.email)
    enter(client, world.b)
    reference = body(f"/admin/t/{uuid.uuid4()}")
    bodies = {
        body(permalink(world.a, world.tenant_a)),  # not a member of A
        body(permalink(world.b, world.tenant_a)),  # a member of B, but the tenant is A's
        body(f"/admin/w/{world.b.slug}/t/{uuid.uuid4()}/policies"),  # unknown tenant
        body(f"/admin/w/{world.b.slug}/t/{world.tenant_b.external_id}/no-such-section"),  # no such page
        body(f"/admin/w/{world.b.slug}/t/{world.tenant_b.external_id}/pin"),  # a POST-only action
        body(f"/admin/w/{world.b.slug}/t/garbage%0A/policies"),
    }
    assert bodies == {reference}
    assert "Alpha" not in reference


def test_tenant_pages_offer_a_copy_link_with_the_permalink(client, world):
    sign_in(client, world.ada.email)
    enter(client, world.a)
    page = client.get(tenant_url(world.tenant_a, "/findings?status=all")).get_data(as_text=True)
    assert f'href="/admin/w/{world.a.slug}/t/{world.tenant_a.external_id}/findings?status=all"' in page
    assert "Copy link" in page


# --- pasted tenant URLs: a trailing slash, a GUID in braces ---------------------------------------------


@pytest.mark.parametrize("pasted, canonical", [
    ("/admin/t/{ext}/", "/admin/t/{ext}"),
    ("/admin/t/{ext}/policies/", "/admin/t/{ext}/policies"),
    ("/admin/t/{ext}/findings/?status=all", "/admin/t/{ext}/findings?status=all"),
    ("/admin/t/%7B{ext}%7D", "/admin/t/{ext}"),
    ("/admin/t/{{{EXT}}}/policies?page=1", "/admin/t/{ext}/policies?page=1"),
    ("/admin/t/{{{ext}}}/policies/", "/admin/t/{ext}/policies"),
])
def test_a_pasted_tenant_url_redirects_to_the_canonical_one_for_its_member(client, world, pasted, canonical):
    ext = str(world.tenant_a.external_id)
    sign_in(client, world.ada.email)
    enter(client, world.a)
    response = client.get(pasted.format(ext=ext, EXT=ext.upper()))
    assert response.status_code == 301
    assert response.headers["Location"] == canonical.format(ext=ext)
    assert client.get(response.headers["Location"]).status_code == 200


@pytest.mark.parametrize("pasted", ["/admin/t/{ext}/", "/admin/t/{ext}/policies/", "/admin/t/%7B{ext}%7D",
                                    "/admin/t/{{{ext}}}/policies/"])
def test_a_pasted_tenant_url_is_the_same_404_for_anyone_else(client, world, pasted):
    sign_in(client, world.bob.email)
    enter(client, world.b)
    reference = client.get(f"/admin/t/{uuid.uuid4()}").get_data(as_text=True)
    response = client.get(pasted.format(ext=world.tenant_a.external_id))
    assert response.status_code == 404
    assert response.get_data(as_text=True) == reference


def test_a_trailing_slash_on_no_tenant_page_is_a_404(client, world):
    sign_in(client, world.ada.email)
    enter(client, world.a)
    for path in ("/nonsense/", "/nonsense", "/pin/", "/policies/diff/", "/nonsense/deeper/"):
        assert client.get(tenant_url(world.tenant_a, path)).status_code == 404, path
