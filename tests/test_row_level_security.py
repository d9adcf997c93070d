"""Row-level security: the wall that holds even when a view or a query is wrong.

These tests connect for real, as the web app's role, to a database built as the owner.
"""
from __future__ import annotations

import uuid
from types import SimpleNamespace

import psycopg
import pytest
from sqlalchemy import text

from app.database import APP_ROLE
from app.extensions import db
from app.models import Tenant, User, Workspace, WorkspaceMembership
from app.passwords import hash_password
from app.rollout import TENANT_OWNED_TABLES
from tests.conftest import TEST_PASSWORD, make_test_app, migrated_database, populate_tenant_rows, sign_in


@pytest.fixture(scope="module")
def rls_database(pg_cluster):
    """Twenty workspaces of five tenants; rows of every kind in workspaces 1 and 2."""
    owner, owner_url, app_url = migrated_database(pg_cluster, "tenantatlas_rls")
    with owner.app_context():
        workspaces = [Workspace(slug=f"ws-{i:02d}", name=f"Workspace {i:02d}") for i in range(20)]
        user = User(email="dual@example.test", name="Dual", password_hash=hash_password(TEST_PASSWORD))
        db.session.add_all([*workspaces, user])
        db.session.flush()
        db.session.add_all(WorkspaceMembership(workspace_id=w.id, user_id=user.id, role="operator")
                           for w in workspaces[:2])
        tenants = [Tenant(workspace_id=w.id, external_id=uuid.uuid4(), name=f"{w.name} tenant {j}")
                   for w in workspaces for j in range(5)]
        db.session.add_all(tenants)
        db.session.commit()
        markers = {}
        for index in (0, 5):  # the first tenant of workspaces 0 and 1
            markers[tenants[index].workspace_id] = populate_tenant_rows(
                db.session, tenants[index], marker=f"MARK{index}")
        db.session.execute(text(
            "INSERT INTO policies (tenant_id, workspace_id, graph_id, policy_type, platform, display_name) "
            "SELECT t.id, t.workspace_id, 'bulk-' || g, 'deviceConfiguration', 'ios', 'Bulk ' || g "
            "FROM tenants t CROSS JOIN generate_series(1, 200) g"))
        db.session.commit()
        db.session.execute(text("ANALYZE"))
        db.session.commit()
        workspace_ids = [w.id for w in workspaces]
        tenant_refs = [SimpleNamespace(id=t.id, external_id=t.external_id, workspace_id=t.workspace_id)
                       for t in tenants]
        db.session.remove()
        db.engine.dispose()
    return {"owner_url": owner_url, "app_url": app_url, "workspaces": workspace_ids, "tenants": tenant_refs,
            "markers": markers}


def scalar(connection, statement, params=None):
    return connection.execute(statement, params).fetchone()[0]


def conninfo(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


def as_app(rls_database, workspace_id=None):
    connection = psycopg.connect(conninfo(rls_database["app_url"]))
    if workspace_id is not None:
        connection.execute("SELECT set_config('app.current_workspace_id', %s, false)", (str(workspace_id),))
        connection.commit()  # a session-level setting survives the tests' rollbacks only once committed
    return connection


def test_catalog_every_table_with_workspace_id_has_forced_rls_and_a_policy(rls_database):
    with psycopg.connect(conninfo(rls_database["owner_url"])) as connection:
        tables = [row[0] for row in connection.execute(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND column_name = 'workspace_id'")]
        assert set(TENANT_OWNED_TABLES) | {"tenants", "audit_logs"} <= set(tables)
        for table in tables:
            enabled, forced = connection.execute(
                "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = %s::regclass", (table,)).fetchone()
            policies = scalar(connection, "SELECT count(*) FROM pg_policies WHERE tablename = %s", (table,))
            assert enabled and forced and policies >= 1, table
        superuser, bypass = connection.execute(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone()
        assert not superuser and not bypass
        owned = scalar(connection, "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
            "WHERE r.rolname = %s", (APP_ROLE,))
        assert owned == 0


def test_an_unscoped_query_returns_only_the_current_workspaces_rows(rls_database):
    first, second = rls_database["workspaces"][:2]
    with psycopg.connect(conninfo(rls_database["owner_url"])) as owner:
        expected = {table: scalar(owner, f"SELECT count(*) FROM {table} WHERE workspace_id = %s", (first,))
                    for table in (*TENANT_OWNED_TABLES, "tenants")}
    with as_app(rls_database, first) as connection:
        for table, count in expected.items():
            assert scalar(connection, f"SELECT count(*) FROM {table}") == count, table
            assert scalar(connection, f"SELECT count(*) FROM {table} WHERE workspace_id = %s", (second,)) == 0, table
        names = [row[0] for row in connection.execute("SELECT display_name FROM policies WHERE display_name LIKE 'MARK%%'")]
        assert names and all(name.startswith("MARK0 ") for name in names)


def test_nothing_is_visible_when_no_workspace_is_set(rls_database):
    with as_app(rls_database) as connection:
        for table in (*TENANT_OWNED_TABLES, "tenants"):
            assert scalar(connection, f"SELECT count(*) FROM {table}") == 0, table
        connection.execute("SELECT set_config('app.current_workspace_id', '', false)")
        assert scalar(connection, "SELECT count(*) FROM policies") == 0


def test_writes_into_another_workspace_are_refused(rls_database):
    first, second = rls_database["workspaces"][:2]
    tenant_b = rls_database["tenants"][5]  # in the second workspace
    with as_app(rls_database, first) as connection:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute(
                "INSERT INTO findings (tenant_id, workspace_id, kind, severity, title) VALUES (%s, %s, 'x', 'low', 't')",
                (tenant_b.id, second))
        connection.rollback()
        assert connection.execute("UPDATE policies SET display_name = 'hijacked' WHERE workspace_id = %s",
                                  (second,)).rowcount == 0
        assert connection.execute("DELETE FROM findings WHERE workspace_id = %s", (second,)).rowcount == 0
        assert scalar(connection, "SELECT count(*) FROM tenants") == 5
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute("UPDATE tenants SET workspace_id = %s WHERE workspace_id = %s", (second, first))
        connection.rollback()
    with psycopg.connect(conninfo(rls_database["owner_url"])) as owner:
        assert scalar(owner, "SELECT count(*) FROM policies WHERE display_name = 'hijacked'") == 0


def test_a_pool_of_one_connection_serves_a_then_b_then_none_without_leaking(rls_database):
    web = make_test_app(rls_database["app_url"], SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 1, "max_overflow": 0})
    client = web.test_client()
    sign_in(client, "dual@example.test")
    first, second = rls_database["workspaces"][:2]
    tenant_a, tenant_b = rls_database["tenants"][0], rls_database["tenants"][5]

    def visible_outside_a_request():
        with web.app_context(), db.engine.connect() as connection:
            return (connection.execute(text("SELECT count(*) FROM policies")).scalar(),
                    connection.execute(text("SELECT current_setting('app.current_workspace_id', true)")).scalar())

    assert client.get("/admin/w/ws-00/managed-tenants").status_code == 200
    page = client.get(f"/admin/t/{tenant_a.external_id}/policies?q=MARK").get_data(as_text=True)
    assert "MARK0" in page and "MARK5" not in page
    assert visible_outside_a_request()[0] == 0

    assert client.get("/admin/w/ws-01/managed-tenants").status_code == 200
    page = client.get(f"/admin/t/{tenant_b.external_id}/policies?q=MARK").get_data(as_text=True)
    assert "MARK5" in page and "MARK0" not in page
    assert client.get(f"/admin/t/{tenant_a.external_id}/policies").status_code == 404
    count, setting = visible_outside_a_request()
    assert count == 0 and not setting

    client.post("/logout", data={})  # refused (no CSRF token): the session stays
    with client.session_transaction() as session:
        session.pop("current_workspace_id", None)
    assert client.get(f"/admin/t/{tenant_b.external_id}").status_code == 404
    assert visible_outside_a_request()[0] == 0
    with web.app_context():
        assert db.engine.pool.size() == 1


def test_the_policy_uses_the_workspace_index(rls_database):
    first = rls_database["workspaces"][0]
    with as_app(rls_database, first) as connection:
        plan = "\n".join(row[0] for row in connection.execute("EXPLAIN SELECT * FROM policies"))
    assert "ix_policies_workspace_id_tenant_id" in plan, plan
    assert "Seq Scan" not in plan, plan
