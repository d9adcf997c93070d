"""The portfolio pages by seeking: every tenant exactly once, forward and back, for every sort;
cursors that cannot be edited or carried to another workspace; counts that say what they are."""
from __future__ import annotations

import csv
import html
import io
import re

import pytest
from itsdangerous import URLSafeSerializer
from sqlalchemy import and_, func, select, text

from app.extensions import db
from app.web.listing import CURSOR_SALT
from app.models import Tenant, TenantHealth
from app.web.workspace.portfolio import COUNT_CAP, portfolio_query
from tests.conftest import enter, sign_in

NOTICE = "That page link is not valid for this list"
TENANT_LINK = re.compile(r'tenant-name"[^>]*href="/admin/t/([0-9a-f-]{36})"')


def sort_names(app, workspace) -> list[str]:
    """The portfolio's sortable columns, read from the portfolio itself: a sort added later is covered."""
    with app.test_request_context("/"):
        return list(portfolio_query(workspace.id)[2])


def crowd(db_session, workspace, n: int = 60, prefix: str = "Crowd") -> None:
    """n tenants with equal sort keys in every column, NULL domains and backups, and some without
    a health row (as after a restore with triggers off), half of them tagged."""
    db_session.execute(text(
        """INSERT INTO tenants (workspace_id, external_id, name, primary_domain, status)
           SELECT :w, gen_random_uuid(), :p || ' ' || (g % 7),
                  CASE WHEN g % 4 = 0 THEN NULL ELSE 'd' || (g % 5) || '.example' END,
                  CASE WHEN g % 9 = 0 THEN 'archived' ELSE 'active' END
           FROM generate_series(1, :n) g"""), {"w": workspace.id, "n": n, "p": prefix})
    crowd_ids = "SELECT id, row_number() OVER (ORDER BY id) AS g FROM tenants WHERE workspace_id = :w AND name LIKE :p"
    params = {"w": workspace.id, "p": f"{prefix} %"}
    db_session.execute(text(
        f"""UPDATE tenant_health h SET policy_count = c.g % 3, open_critical = c.g % 2, open_high = c.g % 3,
                   open_medium = 0, open_low = c.g % 2, missing_permissions = c.g % 2,
                   last_backup_at = CASE WHEN c.g % 3 = 0 THEN NULL
                                         ELSE timestamptz '2026-11-01 10:00:00.123456+00' + (c.g % 4) * interval '1 day' END
            FROM ({crowd_ids}) c WHERE h.tenant_id = c.id"""), params)
    db_session.execute(text(f"DELETE FROM tenant_health WHERE tenant_id IN (SELECT id FROM ({crowd_ids}) c WHERE c.g % 11 = 0)"),
                       params)
    db_session.execute(text("INSERT INTO tags (workspace_id, name) VALUES (:w, :t) ON CONFLICT DO NOTHING"),
                       {"w": workspace.id, "t": f"{prefix} tag"})
    db_session.execute(text(
        f"""INSERT INTO tenant_tags (tenant_id, tag_id, workspace_id)
            SELECT c.id, t.id, :w FROM ({crowd_ids}) c JOIN tags t ON t.workspace_id = :w AND t.name = :t
            WHERE c.g % 2 = 0"""), {**params, "t": f"{prefix} tag"})
    db_session.commit()


def expected_order(app, workspace, sort: str, direction: str, *, tag_id: int | None = None) -> list[str]:
    """Every tenant (all statuses) in the order the sort promises, worked out here: each key column
    ranked by the database (its collation), keyed rows by (key, id), then NULL keys by id; all in
    the direction, so NULLs come last both ways."""
    with app.test_request_context("/"):
        columns = portfolio_query(workspace.id)[2][sort]
    columns = columns if isinstance(columns, tuple) else (columns,)
    ranks = [func.dense_rank().over(order_by=column.asc().nulls_last()) for column in columns]
    statement = (select(Tenant.external_id, Tenant.id, columns[0].is_(None), *ranks)
                 .outerjoin(TenantHealth, and_(TenantHealth.tenant_id == Tenant.id,
                                               TenantHealth.workspace_id == workspace.id))
                 .where(Tenant.workspace_id == workspace.id))
    if tag_id is not None:
        statement = statement.where(Tenant.id.in_(text(f"SELECT tenant_id FROM tenant_tags WHERE tag_id = {int(tag_id)}")))
    rows = db.session.execute(statement).all()
    descending = direction == "desc"
    keyed = sorted((r for r in rows if not r[2]), key=lambda r: (tuple(r[3:]), r[1]), reverse=descending)
    nulls = sorted((r for r in rows if r[2]), key=lambda r: r[1], reverse=descending)
    return [str(r[0]) for r in keyed + nulls]


def get(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.get_data(as_text=True)


def link(page: str, rel: str) -> str | None:
    match = re.search(rf'rel="{rel}" href="([^"]*)"', page)
    return html.unescape(match.group(1)) if match else None


def walk(client, url: str, rel: str) -> list[list[str]]:
    """The tenants of each page from `url` on, following the `rel` link (next or prev) to the end."""
    pages = []
    for _ in range(100):
        body = get(client, url)
        assert NOTICE not in body
        pages.append(TENANT_LINK.findall(body))
        url = link(body, rel)
        if url is None:
            return pages
    raise AssertionError("the walk did not end")


@pytest.fixture
def ada(client, world):
    sign_in(client, world.ada.email)
    enter(client, world.a)
    return client


def test_the_sort_cases_come_from_the_portfolio_itself(app, world):
    assert {"name", "domain", "external_id", "status", "policies", "last_backup", "findings",
            "missing_permissions"} <= set(sort_names(app, world.a))


@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_every_sort_lists_every_tenant_once_walking_forward_and_backward(app, ada, world, db_session, direction):
    crowd(db_session, world.a)
    base = f"/admin/w/{world.a.slug}/managed-tenants?status=all&dir={direction}"
    for sort in sort_names(app, world.a):
        expected = expected_order(app, world.a, sort, direction)
        assert len(expected) == 62
        forward = walk(ada, f"{base}&sort={sort}", "next")
        assert [len(page) for page in forward] == [25, 25, 12], sort
        assert sum(forward, []) == expected, sort
        backward = walk(ada, f"{base}&sort={sort}&last=1", "prev")
        # Last is the remainder, so paging back meets the very pages a forward walk showed.
        assert list(reversed(backward)) == forward, sort


def test_walking_with_the_tag_filter_lists_each_tagged_tenant_once(app, ada, world, db_session):
    crowd(db_session, world.a, n=120)
    tag_id = db_session.scalar(text("SELECT id FROM tags WHERE workspace_id = :w AND name = 'Crowd tag'"),
                               {"w": world.a.id})
    for sort in sort_names(app, world.a):
        for direction in ("asc", "desc"):
            expected = expected_order(app, world.a, sort, direction, tag_id=tag_id)
            url = f"/admin/w/{world.a.slug}/managed-tenants?status=all&tag={tag_id}&sort={sort}&dir={direction}"
            assert sum(walk(ada, url, "next"), []) == expected, (sort, direction)


def test_previous_after_next_returns_the_same_page(ada, world, db_session):
    crowd(db_session, world.a)
    base = f"/admin/w/{world.a.slug}/managed-tenants?status=all&sort=last_backup&dir=desc"
    first = get(ada, base)
    second = get(ada, link(first, "next"))
    third = get(ada, link(second, "next"))
    assert TENANT_LINK.findall(get(ada, link(third, "prev"))) == TENANT_LINK.findall(second)
    assert TENANT_LINK.findall(get(ada, link(second, "prev"))) == TENANT_LINK.findall(first)
    assert link(first, "prev") is None and link(third, "next") is None
    last = TENANT_LINK.findall(get(ada, link(first, "last")))
    assert last == TENANT_LINK.findall(third)  # Last: the remainder, the very page Next arrives at


def test_old_page_numbers_and_a_cursor_past_the_end_give_real_pages(ada, world, db_session):
    crowd(db_session, world.a)
    base = f"/admin/w/{world.a.slug}/managed-tenants?status=all"
    first = TENANT_LINK.findall(get(ada, base))
    assert TENANT_LINK.findall(get(ada, base + "&page=3")) == first  # a bookmark of a numbered page: the first
    last_page = get(ada, base + "&last=1")
    # The last row's own cursor ("after the last tenant"): nothing follows, so the last page.
    past = get(ada, link(get(ada, link(last_page, "prev")), "next"))
    assert TENANT_LINK.findall(past) == TENANT_LINK.findall(last_page)
    db_session.execute(text("DELETE FROM tenants WHERE workspace_id = :w AND name LIKE 'Crowd %' AND id > "
                            "(SELECT min(id) + 5 FROM tenants WHERE workspace_id = :w AND name LIKE 'Crowd %')"),
                       {"w": world.a.id})
    db_session.commit()
    after_delete = get(ada, link(get(ada, base), "next") or base)
    assert "Crowd" in after_delete and NOTICE not in after_delete


@pytest.mark.parametrize("cursor", ["!!!", "x" * 5000, "W10", "eyJhIjoxfQ.abc", ""])
def test_a_malformed_cursor_gives_the_first_page_and_says_so(ada, world, db_session, cursor):
    crowd(db_session, world.a)
    base = f"/admin/w/{world.a.slug}/managed-tenants?status=all"
    first = TENANT_LINK.findall(get(ada, base))
    for name in ("after", "before"):
        body = get(ada, f"{base}&{name}={cursor}")
        assert TENANT_LINK.findall(body) == first
        assert (NOTICE in body) == bool(cursor)


def test_an_edited_cursor_is_refused_and_the_first_page_shown(ada, world, db_session):
    crowd(db_session, world.a)
    base = f"/admin/w/{world.a.slug}/managed-tenants?status=all"
    first_page = get(ada, base)
    next_url = link(first_page, "next")
    token = re.search(r"after=([^&]+)", next_url).group(1)
    flipped = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
    body = get(ada, next_url.replace(token, flipped))
    assert NOTICE in body and TENANT_LINK.findall(body) == TENANT_LINK.findall(first_page)
    # A cursor of one sort used with another: refused, not misread.
    body = get(ada, next_url.replace("sort=name", "sort=policies") if "sort=name" in next_url
               else next_url + "&sort=policies")
    assert NOTICE in body


@pytest.mark.parametrize("payload", [
    ["scope", "name", "asc", 0, [7], 1],  # a number where the name is a string
    ["scope", "name", "asc", 0, ["a", "b"], 1],  # too many key values
    ["scope", "name", "asc", 1, [], 1],  # the NULL part of a key that is never NULL
    ["scope", "name", "asc", 0, ["a"], "1"],  # an id that is not a number
    ["scope", "last_backup", "asc", 0, ["yesterday"], 1],  # not a time
    ["scope", "last_backup", "asc", 0, ["2026-11-01T10:00:00"], 1],  # a time without its zone
    ["scope", "name", "asc", 0, ["a"], 1, "extra"],
    {"not": "a list"},
])
def test_a_signed_cursor_with_values_of_the_wrong_kind_is_refused_not_a_500(app, ada, world, payload):
    if isinstance(payload, list):
        payload = [world.a.id if value == "scope" else value for value in payload]
        sort = payload[1]
    else:
        sort = "name"
    token = URLSafeSerializer(app.secret_key, salt=CURSOR_SALT).dumps(payload)
    for name in ("after", "before"):
        body = get(ada, f"/admin/w/{world.a.slug}/managed-tenants?sort={sort}&{name}={token}")
        assert NOTICE in body


def test_a_cursor_of_another_workspace_is_refused_and_reveals_nothing(app, client, world, db_session):
    crowd(db_session, world.b, prefix="Bravo crowd")
    sign_in(client, world.bob.email)
    enter(client, world.b)
    bravo_next = link(get(client, f"/admin/w/{world.b.slug}/managed-tenants?status=all"), "next")
    token = re.search(r"after=([^&]+)", bravo_next).group(1)
    client = app.test_client()
    sign_in(client, world.dual.email)  # a member of both workspaces
    enter(client, world.a)
    body = get(client, f"/admin/w/{world.a.slug}/managed-tenants?status=all&after={token}")
    assert NOTICE in body and "Bravo crowd" not in body and "Bravo Secret" not in body
    # Even a cursor signed for A's scope that points at B's rows seeks among A's tenants only.
    bravo = db_session.execute(text("SELECT id, name FROM tenants WHERE workspace_id = :w ORDER BY name, id LIMIT 1"),
                               {"w": world.b.id}).one()
    forged = URLSafeSerializer(app.secret_key, salt=CURSOR_SALT).dumps([world.a.id, "name", "asc", 0, [bravo.name],
                                                                        bravo.id])
    body = get(client, f"/admin/w/{world.a.slug}/managed-tenants?status=all&before={forged}")
    assert "Bravo crowd" not in body and "Bravo Secret" not in body and "Alpha Customer One" in body


def test_the_count_is_exact_from_the_totals_and_capped_for_a_search(ada, world, db_session):
    crowd(db_session, world.a)
    body = get(ada, f"/admin/w/{world.a.slug}/managed-tenants")
    active = db_session.scalar(text("SELECT count(*) FROM tenants WHERE workspace_id = :w AND status = 'active'"),
                               {"w": world.a.id})
    assert f"25 shown ·\n      {active} active tenants" in body
    assert "62 tenants" in get(ada, f"/admin/w/{world.a.slug}/managed-tenants?status=all")
    assert "60 tenants match" in get(ada, f"/admin/w/{world.a.slug}/managed-tenants?status=all&q=crowd")
    crowd(db_session, world.a, n=COUNT_CAP + 5, prefix="Many")
    body = get(ada, f"/admin/w/{world.a.slug}/managed-tenants?status=all&q=many")
    assert f"more than {COUNT_CAP:,} match" in body
    assert f"every tenant this filter matches ({COUNT_CAP:,}+)" in body
    # Status alone is never capped: the kept totals are exact at any size.
    assert "1,067 tenants" in get(ada, f"/admin/w/{world.a.slug}/managed-tenants?status=all")


def test_the_csv_export_has_every_tenant_in_the_order_of_the_pages(ada, world, db_session):
    crowd(db_session, world.a)
    for sort, direction in (("last_backup", "desc"), ("domain", "asc"), ("findings", "desc")):
        query = f"status=all&sort={sort}&dir={direction}"
        pages = sum(walk(ada, f"/admin/w/{world.a.slug}/managed-tenants?{query}", "next"), [])
        response = ada.get(f"/admin/w/{world.a.slug}/managed-tenants.csv?{query}")
        assert response.status_code == 200
        rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))[1:]
        assert [row[1] for row in rows] == pages, sort
