"""The schema: migrations round-trip, match the models, and the database enforces the rules."""
from __future__ import annotations

import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import (
    BackupItem, BackupPayload, BackupSet, InventoryItem, RestoreRun, InventoryLink, Policy, PolicyVersion, TENANT_OWNED_MODELS, Tenant, User,
    Workspace, WorkspaceMembership,
)
from tests.conftest import make_test_app

TENANT_OWNED_TABLES = {
    "policies", "policy_versions", "backup_sets", "backup_items", "restore_runs", "backup_schedules",
    "inventory_items", "inventory_links", "entra_groups", "findings", "entra_role_definitions",
    "tenant_permissions",
}
# Tables created after the workspace rollout, born with workspace_id NOT NULL and RLS (0009).
BORN_BOUND_TABLES = {"sync_runs", "consent_requests", "backup_payloads", "restore_items"}


@pytest.fixture(scope="module")
def scratch_app(pg_cluster):
    return make_test_app(pg_cluster.create_database("tenantatlas_migrations"))


def _tables(app) -> set[str]:
    with app.app_context():
        return set(inspect(db.engine).get_table_names()) - {"alembic_version"}


def test_upgrade_downgrade_upgrade_round_trip(scratch_app):
    with scratch_app.app_context():
        upgrade()
    assert TENANT_OWNED_TABLES | {"users", "workspaces", "workspace_memberships", "tenants", "audit_logs"} <= _tables(
        scratch_app)
    with scratch_app.app_context():
        downgrade(revision="base")
    assert _tables(scratch_app) == set()
    with scratch_app.app_context():
        upgrade()
    assert TENANT_OWNED_TABLES <= _tables(scratch_app)


def not_the_job_queue(name, type_, parent_names) -> bool:
    """procrastinate's tables (migration 0010) are the job queue library's, not models."""
    return not (type_ == "table" and name.startswith("procrastinate"))


def test_migrated_schema_matches_the_models(app):
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_name": not_the_job_queue})
        diff = compare_metadata(context, db.metadata)
    assert diff == []


def test_the_tenant_owned_models_are_the_rollout_tables_and_those_born_bound():
    assert {model.__tablename__ for model in TENANT_OWNED_MODELS} == TENANT_OWNED_TABLES | BORN_BOUND_TABLES


def test_tenant_owned_tables_are_bound_to_the_workspace_of_their_tenant(app):
    with app.app_context():
        inspector = inspect(db.engine)
        for table in TENANT_OWNED_TABLES | BORN_BOUND_TABLES:
            columns = {column["name"]: column for column in inspector.get_columns(table)}
            assert columns["tenant_id"]["nullable"] is False, table
            assert columns["workspace_id"]["nullable"] is False, table
            leading = {index["column_names"][0] for index in inspector.get_indexes(table)}
            assert {"tenant_id", "workspace_id"} <= leading, table
            keys = {(tuple(fk["constrained_columns"]), fk["referred_table"], tuple(fk["referred_columns"]),
                     fk["options"].get("onupdate")) for fk in inspector.get_foreign_keys(table)}
            assert (("tenant_id", "workspace_id"), "tenants", ("id", "workspace_id"), "CASCADE") in keys, table
            assert (("workspace_id",), "workspaces", ("id",), None) in keys, table


def test_the_baseline_revision_has_no_workspace_id_on_tenant_owned_tables(scratch_app):
    with scratch_app.app_context():
        downgrade(revision="base")
        upgrade(revision="0001_baseline")
        inspector = inspect(db.engine)
        for table in TENANT_OWNED_TABLES:
            assert "workspace_id" not in {column["name"] for column in inspector.get_columns(table)}, table
        upgrade()


def _refused(db_session, *objects):
    db_session.add_all(objects)
    with pytest.raises(IntegrityError):
        db_session.commit()
    db_session.rollback()


def test_email_is_unique_case_insensitively(db_session, make_user):
    make_user("unique@example.test")
    _refused(db_session, User(email="unique@example.test", name="Again", password_hash="x"))
    # Upper case can never be stored, so it cannot slip past the unique key either.
    _refused(db_session, User(email="UNIQUE@example.test", name="Again", password_hash="x"))


def test_workspace_slug_is_unique_and_url_safe(db_session, make_workspace):
    make_workspace("acme")
    _refused(db_session, Workspace(slug="acme", name="Acme again"))
    _refused(db_session, Workspace(slug="Not Safe", name="Spaces"))


def test_one_membership_per_user_and_workspace_and_known_roles(db_session, make_user, make_workspace, add_member):
    user, workspace = make_user(), make_workspace()
    add_member(workspace, user, "owner")
    _refused(db_session, WorkspaceMembership(workspace_id=workspace.id, user_id=user.id, role="readonly"))
    _refused(db_session, WorkspaceMembership(workspace_id=make_workspace().id, user_id=user.id, role="admin"))


def test_an_unverified_tenant_id_is_unique_inside_its_workspace_only(db_session, make_workspace, make_tenant):
    external_id, home = uuid.uuid4(), make_workspace()
    make_tenant(home, external_id=external_id)
    _refused(db_session, Tenant(workspace_id=home.id, external_id=external_id, name="Twin"))
    make_tenant(make_workspace(), external_id=external_id)  # another workspace may claim it, unproved


def test_a_tenant_id_proved_by_consent_is_unique_across_workspaces(db_session, make_workspace, make_tenant):
    from datetime import datetime, timezone

    external_id = uuid.uuid4()
    verified = make_tenant(make_workspace(), external_id=external_id)
    verified.consented_at = datetime.now(timezone.utc)
    db_session.commit()
    claim = make_tenant(make_workspace(), external_id=external_id)  # an unproved claim is allowed…
    claim.consented_at = datetime.now(timezone.utc)  # …but not a second proof
    with pytest.raises(IntegrityError):
        db_session.commit()
    db_session.rollback()


def test_tenant_needs_a_workspace(db_session):
    _refused(db_session, Tenant(workspace_id=None, external_id=uuid.uuid4(), name="Orphan"))


def test_policy_graph_id_is_unique_per_tenant_only(db_session, make_workspace, make_tenant):
    workspace = make_workspace()
    tenant_a, tenant_b = make_tenant(workspace), make_tenant(workspace)
    fields = dict(graph_id="g-1", policy_type="deviceConfiguration", platform="windows10", display_name="P")
    db_session.add_all([Policy(tenant_id=tenant_a.id, **fields), Policy(tenant_id=tenant_b.id, **fields)])
    db_session.commit()
    _refused(db_session, Policy(tenant_id=tenant_a.id, **fields))


def test_policy_version_number_is_unique_per_policy(db_session, make_workspace, make_tenant):
    tenant = make_tenant(make_workspace())
    policy = Policy(tenant_id=tenant.id, graph_id="g", policy_type="t", platform="ios", display_name="P")
    db_session.add(policy)
    db_session.commit()
    version = dict(tenant_id=tenant.id, policy_id=policy.id, version_number=1, snapshot={}, content_hash="0" * 64)
    db_session.add(PolicyVersion(**version))
    db_session.commit()
    _refused(db_session, PolicyVersion(**version))


def test_a_child_row_cannot_point_at_a_parent_of_another_tenant(db_session, make_workspace, make_tenant):
    workspace = make_workspace()
    tenant_a, tenant_b = make_tenant(workspace), make_tenant(workspace)
    policy_a = Policy(tenant_id=tenant_a.id, graph_id="g", policy_type="t", platform="ios", display_name="A")
    backup_a = BackupSet(tenant_id=tenant_a.id, name="B", status="completed", triggered_by="user")
    item_a = InventoryItem(tenant_id=tenant_a.id, object_type="device", graph_id="d1", display_name="D1")
    item_b = InventoryItem(tenant_id=tenant_b.id, object_type="device", graph_id="d2", display_name="D2")
    db_session.add_all([policy_a, backup_a, item_a, item_b])
    db_session.commit()
    _refused(db_session, PolicyVersion(tenant_id=tenant_b.id, policy_id=policy_a.id, version_number=1, snapshot={},
                                       content_hash="0" * 64))
    payload_a = BackupPayload(tenant_id=tenant_a.id, content_hash="a" * 64, family="deviceConfigurations",
                              body={"object": {}}, size_bytes=2)
    db_session.add(payload_a)
    db_session.commit()
    _refused(db_session, BackupItem(tenant_id=tenant_b.id, family="deviceConfigurations", graph_id="g",
                                    display_name="x", payload_id=payload_a.id, content_hash="a" * 64))
    _refused(db_session, RestoreRun(tenant_id=tenant_b.id, source_tenant_id=tenant_b.id, backup_set_id=backup_a.id,
                                    status="planned"))
    _refused(db_session, InventoryLink(tenant_id=tenant_a.id, source_item_id=item_a.id, target_item_id=item_b.id,
                                       link_type="assigned"))


def test_a_restore_reads_from_a_tenant_of_its_own_workspace_only(db_session, make_workspace, make_tenant):
    home, elsewhere = make_workspace(), make_workspace()
    target, sibling, foreign = make_tenant(home), make_tenant(home), make_tenant(elsewhere)
    foreign_set = BackupSet(tenant_id=foreign.id, name="F", status="completed", triggered_by="user")
    sibling_set = BackupSet(tenant_id=sibling.id, name="S", status="completed", triggered_by="user")
    db_session.add_all([foreign_set, sibling_set])
    db_session.commit()
    db_session.add(RestoreRun(tenant_id=target.id, source_tenant_id=sibling.id, backup_set_id=sibling_set.id,
                              status="planned"))
    db_session.commit()  # a cross-tenant copy inside the workspace
    _refused(db_session, RestoreRun(tenant_id=target.id, source_tenant_id=foreign.id, backup_set_id=foreign_set.id,
                                    status="planned"))


def test_deleting_a_tenant_removes_its_rows(db_session, make_workspace, make_tenant):
    tenant = make_tenant(make_workspace())
    db_session.add(Policy(tenant_id=tenant.id, graph_id="g", policy_type="t", platform="ios", display_name="P"))
    db_session.commit()
    db_session.execute(text("DELETE FROM tenants WHERE id = :id"), {"id": tenant.id})
    assert db_session.execute(text("SELECT count(*) FROM policies WHERE tenant_id = :id"), {"id": tenant.id}).scalar() == 0
