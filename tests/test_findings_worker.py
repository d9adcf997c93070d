"""The periodic evaluation, as the worker runs it: the app role, each tenant inside its own
workspace under row-level security, ids from the SECURITY DEFINER function (0016c)."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select, text

from app.extensions import db
from app.jobs import connected_queue, defer_in_transaction, set_worker_app
from app.models import Finding, Tenant, Workspace
from tests.conftest import make_test_app, migrated_database


@pytest.fixture(scope="module")
def two_workspaces(pg_cluster):
    owner, _owner_url, app_url = migrated_database(pg_cluster, "tenantatlas_findings_worker")
    with owner.app_context():
        workspaces = [Workspace(slug=f"eval-{i}", name=f"Eval {i}") for i in range(2)]
        db.session.add_all(workspaces)
        db.session.flush()
        tenants = [Tenant(workspace_id=w.id, external_id=uuid.uuid4(), name=f"{w.name} customer",
                          connection_status="consent_revoked") for w in workspaces]
        tenants.append(Tenant(workspace_id=workspaces[0].id, external_id=uuid.uuid4(), name="Archived",
                              connection_status="consent_revoked", status="archived"))
        db.session.add_all(tenants)
        db.session.commit()
        ids = [(t.id, t.workspace_id) for t in tenants]
        db.session.remove()
        db.engine.dispose()
    yield make_test_app(app_url), owner, ids
    set_worker_app(None)


def findings_by_tenant(owner):
    with owner.app_context():
        rows = db.session.execute(select(Finding.tenant_id, Finding.workspace_id, Finding.subject_key)).all()
        db.session.remove()
    return rows


def test_the_periodic_task_evaluates_every_active_tenant_in_its_own_workspace_once(two_workspaces):
    app, owner, ids = two_workspaces
    with app.app_context():
        assert db.session.scalar(text("SELECT current_user")) == "tenantatlas_app"
        for _ in range(2):  # the periodic task, queued twice: the second run adds nothing
            defer_in_transaction("evaluate_findings", queue="scheduler", timestamp=0)
            db.session.commit()
            set_worker_app(app)
            with connected_queue(app) as queue:
                queue.run_worker(queues=["scheduler"], wait=False, concurrency=1, install_signal_handlers=False)
    rows = findings_by_tenant(owner)
    active = {(tenant_id, workspace_id) for tenant_id, workspace_id in ids[:2]}
    assert {(tenant_id, workspace_id) for tenant_id, workspace_id, _ in rows} == active
    assert sorted(key for _, _, key in rows) == ["hygiene:consent_revoked"] * 2
