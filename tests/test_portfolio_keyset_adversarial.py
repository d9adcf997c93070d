"""Adversarial checks of the portfolio's keyset paging (app/web/listing.py keyset_page)."""
from __future__ import annotations

import re

import pytest
from itsdangerous import URLSafeSerializer
from sqlalchemy import text

from app.web.listing import CURSOR_SALT
from tests.conftest import enter, sign_in
from tests.test_portfolio_keyset import NOTICE, TENANT_LINK, crowd, expected_order, get, link, sort_names, walk

HEALTH_SORTS = ("policies", "last_backup", "findings", "missing_permissions")


@pytest.fixture
def ada(client, world):
    sign_in(client, world.ada.email)
    enter(client, world.a)
    return client


def ext_ids(db_session, workspace, where="true"):
    return {str(r[0]) for r in db_session.execute(text(
        f"SELECT external_id FROM tenants WHERE workspace_id = :w AND {where}"), {"w": workspace.id})}


@pytest.mark.parametrize("sort", HEALTH_SORTS)
def test_a_tenant_written_with_triggers_off_is_still_listed_in_health_sorts(ada, world, db_session, sort):
    """The portfolio's outer join exists for tenants whose health row is missing (written with
    triggers off, before `flask refresh-tenant-health`). Those same writes skip the totals trigger,
    so every_tenant_has_health_row() compares health rows with equally stale totals, answers True,
    and the NULL-key part then excludes every tenant without a health row."""
    db_session.execute(text("SET LOCAL session_replication_role = replica"))
    db_session.execute(text(
        "INSERT INTO tenants (workspace_id, external_id, name) SELECT :w, gen_random_uuid(), 'Restored ' || g "
        "FROM generate_series(1, 3) g"), {"w": world.a.id})
    db_session.execute(text("SET LOCAL session_replication_role = origin"))
    db_session.commit()
    everyone = ext_ids(db_session, world.a)
    assert len(everyone) == 5
    by_name = set(sum(walk(ada, f"/admin/w/{world.a.slug}/managed-tenants?status=all&sort=name", "next"), []))
    assert by_name == everyone  # the name sort lists them
    for direction in ("asc", "desc"):
        listed = sum(walk(ada, f"/admin/w/{world.a.slug}/managed-tenants?status=all&sort={sort}&dir={direction}",
                          "next"), [])
        assert set(listed) == everyone, (sort, direction, len(listed))


@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_filters_search_and_per_page_change_mid_walk(app, ada, world, db_session, direction):
    crowd(db_session, world.a, n=130)
    tag_id = db_session.scalar(text("SELECT id FROM tags WHERE workspace_id = :w AND name = 'Crowd tag'"),
                               {"w": world.a.id})
    for sort in sort_names(app, world.a):
        expected = [e for e in expected_order(app, world.a, sort, direction, tag_id=tag_id)
                    if e in ext_ids(db_session, world.a, "status = 'active' AND name LIKE 'Crowd %'")]
        url = (f"/admin/w/{world.a.slug}/managed-tenants?status=active&tag={tag_id}&q=crowd"
               f"&sort={sort}&dir={direction}")
        body = get(ada, url)
        seen = TENANT_LINK.findall(body)
        url = link(body, "next").replace("per_page=25", "") + "&per_page=50"
        for _ in range(20):
            body = get(ada, url)
            assert NOTICE not in body
            seen += TENANT_LINK.findall(body)
            url = link(body, "next")
            if url is None:
                break
        assert seen == expected, sort
        # and back from the Last page at per_page=100
        back = walk(ada, f"/admin/w/{world.a.slug}/managed-tenants?status=active&tag={tag_id}&q=crowd"
                         f"&sort={sort}&dir={direction}&per_page=100&last=1", "prev")
        assert sum(reversed(back), []) == expected, sort


def test_writes_between_clicks_never_repeat_a_tenant_nor_skip_one_that_stayed(app, ada, world, db_session):
    crowd(db_session, world.a, n=80)
    for sort in ("name", "last_backup", "findings", "domain"):
        base = f"/admin/w/{world.a.slug}/managed-tenants?status=active&sort={sort}&dir=desc"
        body = get(ada, base)
        seen = TENANT_LINK.findall(body)
        stayed = ext_ids(db_session, world.a, "status = 'active'")
        step = 0
        while (url := link(body, "next")) is not None:
            step += 1
            # between clicks: archive one not yet shown, delete one shown, register one
            db_session.execute(text(
                "UPDATE tenants SET status = 'archived' WHERE id = (SELECT id FROM tenants WHERE workspace_id = :w "
                "AND status = 'active' AND NOT (external_id::text = ANY(:seen)) ORDER BY id LIMIT 1) "
                "RETURNING external_id"), {"w": world.a.id, "seen": seen})
            db_session.execute(text(
                "DELETE FROM tenants WHERE id = (SELECT id FROM tenants WHERE external_id::text = ANY(:seen) "
                "AND workspace_id = :w AND name LIKE 'Crowd %' ORDER BY id LIMIT 1)"), {"seen": seen, "w": world.a.id})
            db_session.execute(text(
                "INSERT INTO tenants (workspace_id, external_id, name) VALUES (:w, gen_random_uuid(), :n)"),
                {"w": world.a.id, "n": f"Late {sort} {step}"})
            db_session.commit()
            stayed &= ext_ids(db_session, world.a, "status = 'active'")
            body = get(ada, url)
            assert NOTICE not in body
            seen += TENANT_LINK.findall(body)
        assert len(seen) == len(set(seen)), sort
        assert stayed <= set(seen), sort
        db_session.execute(text("UPDATE tenants SET status = 'active' WHERE workspace_id = :w"), {"w": world.a.id})
        db_session.commit()


@pytest.mark.parametrize("cursor", ["%F0%9F%98%80" * 50, "a.b.c", ".eJyLjgUAARUAuQ.x", "%FF%FE",
                                    "W10." + "A" * 27, "0" * 2001])
def test_odd_cursors_are_never_a_500(ada, world, cursor):
    for name in ("after", "before"):
        for sort in ("name", "last_backup"):
            response = ada.get(f"/admin/w/{world.a.slug}/managed-tenants?sort={sort}&{name}={cursor}")
            assert response.status_code == 200
            assert NOTICE in response.get_data(as_text=True)


def test_a_cursor_signed_with_another_secret_or_salt_is_refused(app, ada, world, db_session):
    crowd(db_session, world.a)
    good = [world.a.id, "name", "asc", 0, ["Crowd 3"], 1]
    for secret, salt in (("another-secret", CURSOR_SALT), (app.secret_key, "itsdangerous"), (app.secret_key, "other")):
        token = URLSafeSerializer(secret, salt=salt).dumps(good)
        body = get(ada, f"/admin/w/{world.a.slug}/managed-tenants?status=all&after={token}")
        assert NOTICE in body


def test_cursors_carried_across_sort_direction_and_workspace_are_refused(app, client, world, db_session):
    crowd(db_session, world.a)
    crowd(db_session, world.b, prefix="Bravo crowd")
    sign_in(client, world.dual.email)
    enter(client, world.a)
    a_next = link(get(client, f"/admin/w/{world.a.slug}/managed-tenants?status=all&sort=findings"), "next")
    token = re.search(r"after=([^&]+)", a_next).group(1)
    for other in ("&sort=findings&dir=desc", "&sort=policies", "&sort=last_backup"):
        body = get(client, f"/admin/w/{world.a.slug}/managed-tenants?status=all{other}&after={token}")
        assert NOTICE in body, other
    enter(client, world.b)
    body = get(client, f"/admin/w/{world.b.slug}/managed-tenants?status=all&sort=findings&before={token}")
    assert NOTICE in body and "Alpha Customer" not in body and not re.search(r">Crowd \d", body)
    # the count shown is B's own
    b_count = db_session.scalar(text("SELECT count(*) FROM tenants WHERE workspace_id = :w"), {"w": world.b.id})
    assert f"{b_count} tenants" in body


def test_a_cursor_of_a_deleted_or_moved_tenant_continues_from_its_place(ada, world, db_session, make_workspace):
    crowd(db_session, world.a)
    base = f"/admin/w/{world.a.slug}/managed-tenants?status=all&sort=last_backup"
    first = get(ada, base)
    shown = TENANT_LINK.findall(first)
    nxt = link(first, "next")
    # the cursor's tenant (the last shown) leaves: deleted
    db_session.execute(text("DELETE FROM tenants WHERE external_id::text = :e"), {"e": shown[-1]})
    db_session.commit()
    body = get(ada, nxt)
    assert NOTICE not in body
    expected = expected_order(ada.application, world.a, "last_backup", "asc")
    assert TENANT_LINK.findall(body) == expected[24:49]


def test_bulk_on_everything_the_filter_matches_selects_exactly_the_filter(ada, world, db_session):
    from tests.conftest import csrf_token_from
    crowd(db_session, world.a, n=70)
    tag_id = db_session.scalar(text("SELECT id FROM tags WHERE workspace_id = :w AND name = 'Crowd tag'"),
                               {"w": world.a.id})
    url = f"/admin/w/{world.a.slug}/managed-tenants?status=all&tag={tag_id}&q=crowd%203&sort=findings&dir=desc"
    body = get(ada, link(get(ada, url), "next") or url)
    action = re.search(r'id="bulk-form"[^>]*action="([^"]+)"', body).group(1).replace("&amp;", "&")
    response = ada.post(action, data={"csrf_token": re.search(r'name="csrf_token"[^>]*value="([^"]+)"', body).group(1), "action": "sync", "scope": "filter"})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    run_id = int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    chosen = {str(r[0]) for r in db_session.execute(text(
        "SELECT t.external_id FROM bulk_run_items i JOIN tenants t ON t.id = i.tenant_id WHERE i.bulk_run_id = :r"),
        {"r": run_id})}
    expected = {str(r[0]) for r in db_session.execute(text(
        "SELECT t.external_id FROM tenants t JOIN tenant_tags tt ON tt.tenant_id = t.id AND tt.tag_id = :tag "
        "WHERE t.workspace_id = :w AND t.name ILIKE '%crowd 3%'"), {"w": world.a.id, "tag": tag_id})}
    assert chosen == expected and expected


def test_csv_with_tag_search_and_status_matches_the_walk(ada, world, db_session):
    import csv
    import io
    crowd(db_session, world.a, n=90)
    tag_id = db_session.scalar(text("SELECT id FROM tags WHERE workspace_id = :w AND name = 'Crowd tag'"),
                               {"w": world.a.id})
    for sort, direction in (("findings", "desc"), ("last_backup", "asc"), ("domain", "desc"), ("policies", "asc")):
        query = f"status=active&tag={tag_id}&q=crowd&sort={sort}&dir={direction}"
        pages = sum(walk(ada, f"/admin/w/{world.a.slug}/managed-tenants?{query}", "next"), [])
        body = get(ada, f"/admin/w/{world.a.slug}/managed-tenants?{query}")
        href = re.search(r'class="btn btn-sm btn-outline-secondary ms-auto export-csv" href="([^"]+)"', body).group(1)
        response = ada.get(href.replace("&amp;", "&"))
        rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))[1:]
        assert [row[1] for row in rows] == pages, sort
