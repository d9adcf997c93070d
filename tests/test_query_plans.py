"""The portfolio and tenant-list queries use indexes, at a scale where PostgreSQL would
otherwise scan: each page's real statements are recorded and EXPLAINed as the app role."""
from __future__ import annotations

import uuid

import psycopg
import pytest
from sqlalchemy import event, text

from app.database import APP_ROLE
from app.extensions import db
from app.models import User, Workspace, WorkspaceMembership
from app.passwords import hash_password
from tests.conftest import TEST_PASSWORD, make_test_app, migrated_database, sign_in


@pytest.fixture(scope="module")
def large(pg_cluster):
    """Forty workspaces of 80 tenants, 40 policies each: 128,000 policies; one workspace is 2.5 %."""
    owner, owner_url, app_url = migrated_database(pg_cluster, "tenantatlas_plans")
    with owner.app_context():
        workspaces = [Workspace(slug=f"plan-{i}", name=f"Plan {i}") for i in range(40)]
        user = User(email="planner@example.test", name="Planner", password_hash=hash_password(TEST_PASSWORD))
        db.session.add_all([*workspaces, user])
        db.session.flush()
        db.session.add(WorkspaceMembership(workspace_id=workspaces[0].id, user_id=user.id, role="owner"))
        db.session.execute(text(
            "INSERT INTO tenants (workspace_id, external_id, name, primary_domain) "
            "SELECT w.id, gen_random_uuid(), 'Customer ' || w.id || '-' || g, 'c' || w.id || g || '.example' "
            "FROM workspaces w CROSS JOIN generate_series(1, 80) g"))
        db.session.execute(text(
            "INSERT INTO policies (tenant_id, workspace_id, graph_id, policy_type, platform, display_name) "
            "SELECT t.id, t.workspace_id, 'p' || g, 'deviceConfiguration', 'windows10', 'Policy ' || g "
            "FROM tenants t CROSS JOIN generate_series(1, 40) g"))
        for table, expression in (("findings", "'drift', 'low', 'Finding ' || g"),):
            db.session.execute(text(
                f"INSERT INTO {table} (tenant_id, workspace_id, kind, severity, title) "
                f"SELECT t.id, t.workspace_id, {expression} FROM tenants t CROSS JOIN generate_series(1, 3) g"))
        db.session.commit()
        db.session.execute(text("ANALYZE"))
        db.session.commit()
        tenant_ext = db.session.scalar(text(
            "SELECT external_id FROM tenants WHERE workspace_id = :w ORDER BY id LIMIT 1"), {"w": workspaces[0].id})
        slug = workspaces[0].slug
        db.session.remove()
        db.engine.dispose()
    return {"owner_url": owner_url, "app_url": app_url,
            "slug": slug, "tenant_ext": str(tenant_ext)}


def recorded_statements(large, paths: list[str]) -> list[tuple[str, dict, str]]:
    """(SQL, parameters, workspace setting) of every SELECT the app ran for `paths`."""
    web = make_test_app(large["app_url"])
    client = web.test_client()
    sign_in(client, "planner@example.test")
    client.get(f"/admin/w/{large['slug']}/managed-tenants")
    seen: list = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "set_config" not in statement:
            # Straight on the driver's connection: no SQLAlchemy event, no recursion.
            workspace = cursor.connection.execute(
                "SELECT current_setting('app.current_workspace_id', true)").fetchone()[0]
            seen.append((statement, parameters, workspace))

    with web.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        for path in paths:
            assert client.get(path).status_code == 200, path
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


def plans(url: str, statements) -> list[str]:
    found = []
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as connection:
        for statement, parameters, workspace in statements:
            connection.execute("SELECT set_config('app.current_workspace_id', %s, false)", (workspace or "",))
            rows = connection.execute("EXPLAIN " + statement, parameters).fetchall()
            found.append("\n".join(row[0] for row in rows))
        connection.rollback()
    return found


PAGES = ["/admin/w/{slug}/managed-tenants", "/admin/w/{slug}/managed-tenants?sort=policies&dir=desc",
         "/admin/w/{slug}/managed-tenants?q=customer&sort=findings", "/admin/w/{slug}/tenant-switcher/search?q=cust",
         "/admin/t/{tenant_ext}/policies", "/admin/t/{tenant_ext}/findings?status=all", "/admin/t/{tenant_ext}"]


def test_portfolio_and_tenant_list_queries_use_indexes(large):
    statements = recorded_statements(large, [page.format(**large) for page in PAGES])
    assert len(statements) > 10
    for plan in plans(large["app_url"], statements):
        for big_table in ("tenants", "tenant_health", "policies", "findings"):
            assert f"Seq Scan on {big_table}" not in plan, plan


def test_without_the_workspace_index_postgres_would_scan(large):
    """The scale is large enough to matter: drop the indexes that lead with workspace_id (in a
    transaction) and the plan scans."""
    statements = recorded_statements(large, [f"/admin/w/{large['slug']}/managed-tenants"])
    with psycopg.connect(large["owner_url"].replace("postgresql+psycopg://", "postgresql://", 1)) as connection:
        leading = connection.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'tenants' AND indexdef LIKE '%(workspace_id%'").fetchall()
        assert len(leading) >= 7  # name, external id, and the portfolio's sort indexes (0018)
        for (name,) in leading:
            connection.execute(f"DROP INDEX {name}")
        connection.execute(f"SET ROLE {APP_ROLE}")
        scanned = False
        for statement, parameters, workspace in statements:
            connection.execute("SELECT set_config('app.current_workspace_id', %s, true)", (workspace or "",))
            plan = "\n".join(r[0] for r in connection.execute("EXPLAIN " + statement, parameters).fetchall())
            scanned = scanned or "Seq Scan on tenants" in plan
        connection.rollback()
    assert scanned
