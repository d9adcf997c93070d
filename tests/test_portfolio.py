"""The portfolio landing: health table, search, sort, filter, pages, registration, archive."""
from __future__ import annotations

import html
import re
import uuid

import pytest

from sqlalchemy import select, text

from app.models import Tenant
from tests.conftest import enter, post_form, sign_in


def names_on(page: str) -> list[str]:
    return re.findall(r'class="[^"]*tenant-name"[^>]*>([^<]+)</a>', page)


def next_link(page: str, rel: str = "next") -> str:
    """The query string of the page's Next (or Previous, First, Last) link."""
    match = re.search(rf'rel="{rel}" href="[^"?]*(\?[^"]*)"', page)
    assert match, f"no {rel} link"
    return html.unescape(match.group(1))


def landing(client, world, query: str = "") -> str:
    response = client.get(f"/admin/w/{world.a.slug}/managed-tenants{query}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_landing_shows_health_columns(client, world, db_session):
    world.tenant_a.connection_status = "connected"  # a token has shown what is granted
    db_session.commit()
    sign_in(client, world.ada.email)
    page = landing(client, world)
    assert "Alpha Customer One" in page and "Bravo" not in page
    row = page[page.index("Alpha Customer One"):page.index("Alpha Customer Two")]
    assert "completed" in row  # last backup status
    # One open high finding: a letter and a count, spelled out for screen readers, not colour alone.
    assert '<span aria-hidden="true">H&nbsp;1</span><span class="visually-hidden">1 high</span>' in row
    assert '<span class="text-danger fw-semibold">1</span>' in row  # one missing permission
    # Never connected: whatever rows it has, nothing says a permission was checked.
    unconnected = page[page.index("Alpha Customer Two"):]
    unconnected = unconnected[:unconnected.index("</tr>")]
    assert "Never connected: no token has shown what is granted" in unconnected


def test_landing_search_by_name_domain_and_id(client, world, db_session):
    world.tenant_a2.primary_domain = "twocorp.onmicrosoft.com"
    db_session.commit()
    sign_in(client, world.ada.email)
    assert names_on(landing(client, world, "?q=one")) == ["Alpha Customer One"]
    assert names_on(landing(client, world, "?q=twocorp")) == ["Alpha Customer Two"]
    assert names_on(landing(client, world, f"?q={str(world.tenant_a.external_id)[:13]}")) == ["Alpha Customer One"]
    assert names_on(landing(client, world, "?q=%25%25")) == []


def test_landing_sorts_by_any_column_both_ways(client, world):
    sign_in(client, world.ada.email)
    assert names_on(landing(client, world, "?sort=name&dir=desc")) == ["Alpha Customer Two", "Alpha Customer One"]
    assert names_on(landing(client, world, "?sort=policies&dir=desc"))[0] == "Alpha Customer One"
    assert names_on(landing(client, world, "?sort=findings&dir=asc"))[0] == "Alpha Customer Two"
    for column in ("domain", "external_id", "status", "last_backup", "missing_permissions"):
        for direction in ("asc", "desc"):
            assert len(names_on(landing(client, world, f"?sort={column}&dir={direction}"))) == 2


def test_findings_sort_puts_the_worst_severity_first_whatever_the_counts(client, world, db_session):
    """Eleven open low findings are not worse than one medium (a weighted sum said they were)."""
    for tenant, severity, count in ((world.tenant_a, "low", 11), (world.tenant_a2, "medium", 1)):
        db_session.execute(text(
            "INSERT INTO findings (tenant_id, workspace_id, kind, severity, title) "
            "SELECT :t, :w, 'drift', :s, 'F' FROM generate_series(1, :n)"),
            {"t": tenant.id, "w": tenant.workspace_id, "s": severity, "n": count})
    db_session.execute(text("UPDATE findings SET status = 'resolved' WHERE severity = 'high'"))
    db_session.commit()
    sign_in(client, world.ada.email)
    assert names_on(landing(client, world, "?sort=findings&dir=desc")) == ["Alpha Customer Two", "Alpha Customer One"]


def test_landing_filters_by_status_and_paginates(client, world, make_tenant):
    for i in range(30):
        make_tenant(world.a, name=f"Paged {i:02d}", status="archived" if i % 10 == 0 else "active")
    sign_in(client, world.ada.email)
    first = names_on(landing(client, world, "?q=paged"))
    assert len(first) == 25 and "Paged 00" not in first
    second = names_on(landing(client, world, next_link(landing(client, world, "?q=paged"))))
    assert len(second) == 2 and not set(first) & set(second)
    assert len(names_on(landing(client, world, "?q=paged&status=archived"))) == 3
    assert len(names_on(landing(client, world, "?q=paged&status=all&per_page=50"))) == 30


def test_landing_tolerates_bad_query_values(client, world):
    sign_in(client, world.ada.email)
    for query in ("?page=abc", "?page=-5", "?page=99999999999999999999", "?per_page=7", "?sort=password_hash",
                  "?dir=sideways", "?status=deleted", "?q=" + "x" * 200, "?q=" + " " * 5000):
        assert client.get(f"/admin/w/{world.a.slug}/managed-tenants{query}").status_code == 200, query


@pytest.mark.parametrize("path", ["/admin/w/alpha-msp/managed-tenants", "/admin/w/alpha-msp/audit",
                                  "/admin/t/{ext}/policies", "/admin/t/{ext}/findings"])
def test_an_overlong_search_is_a_400_in_the_console_that_says_how_long_it_may_be(client, world, path):
    sign_in(client, world.ada.email)
    enter(client, world.a)
    response = client.get(path.format(ext=world.tenant_a.external_id) + "?q=" + "x" * 5000)
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "A search can be at most 200 characters; this one has 5,000." in body
    assert 'class="sidebar' in body  # the app's layout, not a bare error page


def test_an_overlong_switcher_search_is_a_json_400(client, world):
    sign_in(client, world.ada.email)
    response = client.get(f"/admin/w/{world.a.slug}/tenant-switcher/search?q={'x' * 5000}",
                          headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert "at most 200 characters" in response.get_json()["message"]


def test_register_tenant_needs_a_guid_and_answers_nothing_about_other_workspaces(client, world, db_session):
    sign_in(client, world.ada.email)
    url = f"/admin/w/{world.a.slug}/managed-tenants"
    response = post_form(client, url, {"external_id": "contoso", "name": "Bad"})
    assert response.status_code == 400 and "is not an Entra tenant id" in response.get_data(as_text=True)
    # Another workspace's registration of the id neither shows nor blocks (no oracle, no squatting):
    # only admin consent proves who manages a tenant.
    response = post_form(client, url, {"external_id": str(world.tenant_b.external_id), "name": "Claimed"})
    assert response.status_code == 302
    response = post_form(client, url, {"external_id": str(world.tenant_b.external_id), "name": "Again"})
    body = response.get_data(as_text=True)
    assert response.status_code == 400 and "registered in this workspace already" in body
    assert "Bravo" not in body
    assert db_session.get(Tenant, world.tenant_b.id).name == "Bravo Secret Customer"
    new_id = uuid.uuid4()
    response = post_form(client, url, {"external_id": str(new_id).upper(), "name": "Fresh Co",
                                       "primary_domain": "FreshCo.onmicrosoft.com"})
    assert response.status_code == 302
    tenant = db_session.scalar(select(Tenant).where(Tenant.external_id == new_id))
    assert (tenant.workspace_id, tenant.primary_domain) == (world.a.id, "freshco.onmicrosoft.com")


def test_archive_and_unarchive_only_tenants_of_this_workspace(client, world, db_session):
    sign_in(client, world.ada.email)
    base = f"/admin/w/{world.a.slug}/managed-tenants"
    assert post_form(client, f"{base}/{world.tenant_a2.external_id}/archive").status_code == 302
    db_session.refresh(world.tenant_a2)
    assert world.tenant_a2.status == "archived"
    assert post_form(client, f"{base}/{world.tenant_b.external_id}/archive").status_code == 404
    assert post_form(client, f"{base}/not-a-guid/archive").status_code == 404
    db_session.refresh(world.tenant_b)
    assert world.tenant_b.status == "active"
    assert post_form(client, f"{base}/{world.tenant_a2.external_id}/unarchive").status_code == 302
    db_session.refresh(world.tenant_a2)
    assert world.tenant_a2.status == "active"


def test_workspace_audit_log_shows_this_workspace_only(client, world):
    sign_in(client, world.bob.email)
    client.get(f"/admin/w/{world.b.slug}/managed-tenants")
    post_form(client, f"/admin/t/{world.tenant_b.external_id}/pin")
    ada = client.application.test_client()
    sign_in(ada, world.ada.email)
    page = ada.get(f"/admin/w/{world.a.slug}/audit").get_data(as_text=True)
    assert "tenant.pin" not in page and "Bravo" not in page


def test_landing_has_a_legend_for_the_severity_letters(client, world):
    sign_in(client, world.ada.email)
    page = landing(client, world)
    legend = page[page.index('class="severity-legend'):]
    legend = legend[:legend.index("</div>")]
    for letter, word in (("C", "Critical"), ("H", "High"), ("M", "Medium"), ("L", "Low")):
        assert f">{letter}</span>&nbsp;{word}" in legend


def test_a_new_workspace_is_told_what_to_do_first(client, world, make_workspace, make_user, add_member):
    fresh = make_workspace("fresh-msp", name="Fresh MSP")
    add_member(fresh, world.ada, "owner")
    viewer = make_user("fresh-viewer@example.test", name="Viewer")
    add_member(fresh, viewer, "readonly")
    sign_in(client, world.ada.email)
    body = client.get("/admin/w/fresh-msp/managed-tenants").get_data(as_text=True)
    assert "Fresh MSP has no tenants yet" in body and "Register your first customer tenant" in body
    assert "Register your first tenant" in body and "/admin/workspaces/fresh-msp/members" in body
    assert "No tenants in this view yet" not in body  # no empty table under the first steps
    # A filter that matches nothing in a workspace with tenants is not a new workspace.
    filtered = landing(client, world, "?q=nothing-like-this")
    assert "has no tenants yet" not in filtered and "No tenant matches." in filtered
    other = client.application.test_client()
    sign_in(other, viewer.email)
    body = other.get("/admin/w/fresh-msp/managed-tenants").get_data(as_text=True)
    assert "a manager or owner of Fresh MSP registers its customer tenants" in body
    assert "Register your first tenant" not in body
