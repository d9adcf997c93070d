"""The worker: jobs run by a real procrastinate worker, as the web app's role, each
inside its workspace under row-level security."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select, text

from app.extensions import db
from app.jobs import connected_queue, set_worker_app
from app.models import Policy, SyncRun, Tenant, Workspace
from app.row_security import working_in_workspace
from tests.conftest import make_test_app, migrated_database
from tests.graph_support import graph_settings, graph_simulator, settings_for  # noqa: F401


@pytest.fixture(scope="module")
def worker_database(pg_cluster, graph_simulator):  # noqa: F811
    """Two workspaces with one connected tenant each; the app role's app, pointed at the simulator."""
    owner, owner_url, app_url = migrated_database(pg_cluster, "tenantatlas_worker")
    settings = settings_for(graph_simulator)
    with owner.app_context():
        workspaces = [Workspace(slug=f"worker-{i}", name=f"Worker {i}") for i in range(2)]
        db.session.add_all(workspaces)
        db.session.flush()
        tenants = [Tenant(workspace_id=w.id, external_id=uuid.uuid4(), name=f"{w.name} tenant",
                          connection_status="connected") for w in workspaces]
        db.session.add_all(tenants)
        db.session.commit()
        refs = [(t.id, t.workspace_id, str(t.external_id)) for t in tenants]
        db.session.remove()
        db.engine.dispose()
    for _tenant_id, _workspace_id, external_id in refs:
        graph_simulator.add_tenant(external_id, name="Worker tenant")
    app = make_test_app(app_url, GRAPH_SETTINGS=settings)
    yield app, owner, refs
    set_worker_app(None)


def run_queued_jobs(app) -> None:
    set_worker_app(app)
    with connected_queue(app) as queue:
        queue.run_worker(queues=["sync"], wait=False, concurrency=1, install_signal_handlers=False)


def test_a_queued_sync_is_carried_out_by_the_worker_as_the_app_role(worker_database, graph_simulator):  # noqa: F811
    from app.sync.runner import request_sync

    app, owner, refs = worker_database
    tenant_id, workspace_id, external_id = refs[0]
    graph_simulator.reset_log()
    with app.app_context(), working_in_workspace(workspace_id):
        assert db.session.scalar(text("SELECT current_user")) == "tenantatlas_app"
        tenant = db.session.get(Tenant, tenant_id)
        run, created = request_sync(tenant, "user")
        db.session.commit()
        run_id = run.id
    run_queued_jobs(app)
    # Every Graph call of the job was for its own tenant.
    assert {r["tenant_id"] for r in graph_simulator.requests if r.get("server") != "login"} == {external_id}
    with owner.app_context():
        run = db.session.get(SyncRun, run_id)
        assert run.status == "succeeded", run.error
        assert db.session.scalar(select(func.count()).select_from(Policy).where(Policy.tenant_id == tenant_id)) > 0
        db.session.remove()


def test_a_job_cannot_touch_another_workspaces_run(worker_database):
    """A job whose workspace is not its run's finds nothing: row-level security hides the run."""
    app, owner, refs = worker_database
    (tenant_a, workspace_a, _), (_tenant_b, workspace_b, _) = refs
    with owner.app_context():
        run = SyncRun(tenant_id=tenant_a, workspace_id=workspace_a, trigger="user", status="queued")
        db.session.add(run)
        db.session.commit()
        run_id = run.id
        db.session.remove()
    with app.app_context():
        from app.jobs import defer_in_transaction

        with working_in_workspace(workspace_b):
            defer_in_transaction("sync_tenant", queue="sync", sync_run_id=run_id, workspace_id=workspace_b)
            db.session.commit()
    run_queued_jobs(app)
    with owner.app_context():
        run = db.session.get(SyncRun, run_id)
        assert run.status == "queued" and run.attempts == 0
        db.session.delete(run)
        db.session.commit()
        db.session.remove()


def test_the_scheduler_queues_due_connected_active_tenants_in_their_own_workspaces(worker_database):
    from app.sync.runner import queue_due_syncs

    app, owner, refs = worker_database
    with owner.app_context():
        workspace = db.session.get(Workspace, refs[0][1])
        extra = [Tenant(workspace_id=workspace.id, external_id=uuid.uuid4(), name=f"Scheduler {kind}",
                        connection_status=status, status=tenant_status)
                 for kind, status, tenant_status in (("archived", "connected", "archived"),
                                                     ("never connected", "not_connected", "active"),
                                                     ("revoked", "consent_revoked", "active"))]
        db.session.add_all(extra)
        db.session.flush()
        paused = Tenant(workspace_id=workspace.id, external_id=uuid.uuid4(), name="Scheduler paused",
                        connection_status="failing", sync_paused_at=func.now())
        db.session.add(paused)
        db.session.execute(text("UPDATE tenants SET next_sync_at = now() - interval '1 minute'"))
        db.session.execute(text("DELETE FROM sync_runs"))
        db.session.commit()
        skipped = {t.id for t in (*extra, paused)}
        db.session.remove()
    with app.app_context():
        assert queue_due_syncs(limit=100) == 2
        assert queue_due_syncs(limit=100) == 0  # next_sync_at moved on
    with owner.app_context():
        runs = db.session.execute(select(SyncRun.tenant_id, SyncRun.workspace_id, SyncRun.trigger)).all()
        assert {(tenant_id, workspace_id, "schedule") for tenant_id, workspace_id, _ in refs} == set(runs)
        assert not skipped & {tenant_id for tenant_id, _, _ in runs}
        db.session.execute(text("DELETE FROM sync_runs"))
        db.session.execute(text("DELETE FROM procrastinate_jobs"))
        db.session.commit()
        db.session.remove()


def test_a_run_whose_job_is_gone_is_ended_and_its_tenant_can_sync_again(worker_database):
    from app.sync.runner import end_orphaned_runs, request_sync

    app, owner, refs = worker_database
    tenant_id, workspace_id, _external = refs[1]
    with owner.app_context():
        db.session.execute(text("DELETE FROM sync_runs"))
        db.session.execute(text("DELETE FROM procrastinate_jobs"))
        orphan = SyncRun(tenant_id=tenant_id, workspace_id=workspace_id, trigger="user", status="running",
                         started_at=func.now() - text("interval '1 hour'"))
        db.session.add(orphan)
        db.session.commit()
        orphan_id = orphan.id
        db.session.remove()
    with app.app_context():
        assert end_orphaned_runs() == 1
        assert end_orphaned_runs() == 0
        with working_in_workspace(workspace_id):
            run, created = request_sync(db.session.get(Tenant, tenant_id), "user")
            db.session.commit()
            assert created
            new_run_id = run.id
    with owner.app_context():  # an hour old, but its job is still to do: no orphan
        db.session.execute(text("UPDATE sync_runs SET created_at = now() - interval '1 hour' WHERE id = :r"),
                           {"r": new_run_id})
        db.session.commit()
        db.session.remove()
    with app.app_context():
        assert end_orphaned_runs(older_than_minutes=1) == 0
    with owner.app_context():
        ended = db.session.get(SyncRun, orphan_id)
        assert ended.status == "failed" and "ended without finishing" in ended.error
        assert db.session.get(Tenant, tenant_id).consecutive_failures == 1
        db.session.execute(text("DELETE FROM sync_runs"))
        db.session.execute(text("DELETE FROM procrastinate_jobs"))
        db.session.execute(text("UPDATE tenants SET consecutive_failures = 0, connection_status = 'connected', "
                                "connection_error = NULL"))
        db.session.commit()
        db.session.remove()
