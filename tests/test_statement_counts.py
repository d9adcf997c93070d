"""A page's statement count does not grow with its rows (no query per row)."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from tests.conftest import enter, sign_in

BULK_SQL = [
    """INSERT INTO policies (tenant_id, workspace_id, graph_id, policy_type, platform, display_name, settings)
       SELECT :t, :w, 'bulk-' || :p || g, 'deviceConfiguration', 'windows10', 'Bulk policy ' || g, '{"a": 1}'
       FROM generate_series(1, :n) g""",
    """INSERT INTO policy_versions (tenant_id, workspace_id, policy_id, version_number, snapshot, content_hash)
       SELECT p.tenant_id, p.workspace_id, p.id, v, jsonb_build_object('settings', jsonb_build_object('v', v)), repeat('0', 64)
       FROM policies p CROSS JOIN generate_series(1, 2) v WHERE p.tenant_id = :t AND p.graph_id LIKE 'bulk-' || :p || '%'""",
    """INSERT INTO backup_sets (tenant_id, workspace_id, name, status, started_at, item_count, triggered_by)
       SELECT :t, :w, 'Bulk backup ' || g, 'completed', now() - g * interval '1 hour', 1, 'schedule'
       FROM generate_series(1, :n) g""",
    """INSERT INTO backup_payloads (tenant_id, workspace_id, content_hash, family, body, size_bytes)
       SELECT :t, :w, md5(:p || g) || md5(:p || g), 'deviceConfigurations', jsonb_build_object('object', g), 10
       FROM generate_series(1, :n) g""",
    """INSERT INTO backup_items (tenant_id, workspace_id, family, graph_id, display_name, payload_id, content_hash)
       SELECT :t, :w, 'deviceConfigurations', 'bulk-' || :p || g, 'Bulk item ' || g, p.id, p.content_hash
       FROM generate_series(1, :n) g JOIN backup_payloads p ON p.tenant_id = :t AND p.content_hash = md5(:p || g) || md5(:p || g)""",
    """UPDATE backup_sets SET item_ids = item_ids || ARRAY(SELECT id FROM backup_items WHERE tenant_id = :t
                                                          AND graph_id LIKE 'bulk-' || :p || '%')
       WHERE id = (SELECT min(id) FROM backup_sets WHERE tenant_id = :t)""",
    """INSERT INTO restore_runs (tenant_id, workspace_id, source_tenant_id, backup_set_id, status)
       SELECT :t, :w, :t, (SELECT min(id) FROM backup_sets WHERE tenant_id = :t), 'succeeded'
       FROM generate_series(1, :n) g""",
    """INSERT INTO inventory_items (tenant_id, workspace_id, object_type, graph_id, display_name)
       SELECT :t, :w, 'device', 'bulk-' || :p || g, 'Bulk device ' || g FROM generate_series(1, :n) g""",
    """INSERT INTO entra_groups (tenant_id, workspace_id, graph_id, display_name, group_type, member_count)
       SELECT :t, :w, 'bulk-' || :p || g, 'Bulk group ' || g, 'security', g FROM generate_series(1, :n) g""",
    """INSERT INTO findings (tenant_id, workspace_id, kind, severity, title, status)
       SELECT :t, :w, 'drift', (ARRAY['low','medium','high','critical'])[1 + g % 4], 'Bulk finding ' || g, 'open'
       FROM generate_series(1, :n) g""",
    """INSERT INTO entra_role_definitions (tenant_id, workspace_id, graph_id, display_name, permissions)
       SELECT :t, :w, 'bulk-' || :p || g, 'Bulk role ' || g, '["x"]' FROM generate_series(1, :n) g""",
    """INSERT INTO tenant_permissions (tenant_id, workspace_id, permission_name, status)
       SELECT :t, :w, 'Bulk.Permission' || :p || g, 'missing' FROM generate_series(1, :n) g""",
    """INSERT INTO backup_schedules (tenant_id, workspace_id, name, frequency, retention_days)
       SELECT :t, :w, 'Bulk schedule ' || :p || g, 'daily', 30 FROM generate_series(1, :n) g""",
    """INSERT INTO audit_logs (workspace_id, tenant_id, action, target_type, target_id, target_name, details)
       SELECT :w, :t, 'bulk.action', 'backup_schedule', g::text, 'Bulk schedule ' || g,
              jsonb_build_object('before', jsonb_build_object('status', 'open'),
                                 'after', jsonb_build_object('status', 'acknowledged'), 'reason', 'bulk')
       FROM generate_series(1, :n) g""",
]

TENANT_LIST_PATHS = ("", "/policies", "/backups", "/backups/{backup_set_id}", "/restore-runs", "/schedules",
                     "/inventory", "/groups", "/findings?status=all", "/roles", "/permissions", "/audit",
                     "/policies/{policy_id}")


def add_rows(db_session, tenant, n: int) -> None:
    batch = uuid.uuid4().hex[:8] + "-"
    for statement in BULK_SQL:
        db_session.execute(text(statement), {"t": tenant.id, "w": tenant.workspace_id, "n": n, "p": batch})
    db_session.commit()


def add_tenants(db_session, workspace, n: int) -> None:
    """n tenants, each with a policy and an open finding, so every health column has work to do."""
    batch = uuid.uuid4().hex[:8]
    params = {"w": workspace.id, "n": n, "b": f"Bulk tenant {batch} %"}
    db_session.execute(text(
        """INSERT INTO tenants (workspace_id, external_id, name, primary_domain)
           SELECT :w, gen_random_uuid(), replace(:b, '%', g::text), 'bulk' || g || '.onmicrosoft.com'
           FROM generate_series(1, :n) g"""), params)
    tenant_ids = "SELECT id FROM tenants WHERE workspace_id = :w AND name LIKE :b"
    db_session.execute(text(
        f"""INSERT INTO policies (tenant_id, workspace_id, graph_id, policy_type, platform, display_name)
            SELECT id, :w, 'p', 'deviceConfiguration', 'ios', 'P' FROM ({tenant_ids}) t"""), params)
    db_session.execute(text(
        f"""INSERT INTO findings (tenant_id, workspace_id, kind, severity, title) SELECT id, :w, 'drift', 'low', 'F'
            FROM ({tenant_ids}) t"""), params)
    db_session.commit()


def statements_for(client, count_statements, url: str) -> int:
    with count_statements() as counter:
        response = client.get(url)
    assert response.status_code == 200, url
    return counter.count


@pytest.fixture
def member(client, world):
    sign_in(client, world.ada.email)
    enter(client, world.a)
    return client


def test_landing_statement_count_is_the_same_for_10_and_1000_tenants(member, world, db_session, count_statements):
    url = f"/admin/w/{world.a.slug}/managed-tenants?per_page=100&status=all"
    add_tenants(db_session, world.a, 8)
    small = statements_for(member, count_statements, url)
    add_tenants(db_session, world.a, 992)
    large = statements_for(member, count_statements, url)
    assert small == large
    assert large <= 8  # the page and its count in one statement, one for the tags and baselines (filter, bulk bar)


def test_every_portfolio_sort_pages_in_a_bounded_number_of_statements(app, member, world, db_session,
                                                                       count_statements):
    """Each sort, both ways, first page and the page after Next: never more statements with 300
    tenants than with 10 (at most two more than the default: the NULL-key rows, read at the end
    of the list, and for a health sort whether every tenant has its health row)."""
    from tests.test_portfolio_keyset import link, sort_names

    base = f"/admin/w/{world.a.slug}/managed-tenants?status=all"
    add_tenants(db_session, world.a, 8)
    small = {}
    for sort in sort_names(app, world.a):
        for direction in ("asc", "desc"):
            small[sort, direction] = statements_for(member, count_statements, f"{base}&sort={sort}&dir={direction}")
    add_tenants(db_session, world.a, 290)
    for (sort, direction), few in small.items():
        url = f"{base}&sort={sort}&dir={direction}"
        first = statements_for(member, count_statements, url)
        after_next = statements_for(member, count_statements, link(member.get(url).get_data(as_text=True), "next"))
        assert max(first, after_next) <= few <= 10, (sort, direction, few, first, after_next)


def test_workspace_audit_statement_count_is_the_same_for_few_and_many_entries(member, world, db_session,
                                                                             count_statements):
    """Names, changes and times come from each entry itself: no query per row."""
    url = f"/admin/w/{world.a.slug}/audit?per_page=100"
    add_rows(db_session, world.tenant_a, 3)
    small = statements_for(member, count_statements, url)
    add_rows(db_session, world.tenant_a, 120)
    assert statements_for(member, count_statements, url) == small


def test_switcher_search_statement_count_is_the_same_at_two_sizes(member, world, db_session, count_statements):
    url = f"/admin/w/{world.a.slug}/tenant-switcher/search?q=bulk"
    add_tenants(db_session, world.a, 5)
    small = statements_for(member, count_statements, url)
    add_tenants(db_session, world.a, 500)
    assert statements_for(member, count_statements, url) == small


@pytest.mark.parametrize("path", TENANT_LIST_PATHS)
def test_tenant_page_statement_count_does_not_grow_with_rows(member, world, db_session, count_statements, path):
    tenant = world.tenant_a
    ids = world.ids_a
    url = f"/admin/t/{tenant.external_id}" + path.format(**ids) + ("&" if "?" in path else "?") + "per_page=100"
    add_rows(db_session, tenant, 3)
    small = statements_for(member, count_statements, url)
    add_rows(db_session, tenant, 120)
    large = statements_for(member, count_statements, url)
    assert small == large, url
