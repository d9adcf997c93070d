"""A worker killed mid-sync (SIGKILL): its job is retried and the run ends with the rows an
uninterrupted run makes. Real `flask worker` processes, a real simulator with latency."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.jobs import connected_queue, retry_stalled, set_worker_app
from app.models import Policy, PolicyVersion, SyncRun, Tenant, Workspace
from app.row_security import working_in_workspace
from tests.conftest import make_test_app, migrated_database
from tests.graph_support import settings_for

PROJECT_ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slow_simulator(tmp_path_factory):
    from simulator import Simulator

    simulator = Simulator.start(tmp_path_factory.mktemp("slow-simulator"), latency_ms=30)
    yield simulator
    simulator.stop()


def wait_for(predicate, timeout: float = 60.0, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out waiting")


def test_a_worker_killed_mid_sync_is_retried_and_ends_as_an_uninterrupted_run(pg_cluster, slow_simulator, tmp_path):
    owner, _owner_url, app_url = migrated_database(pg_cluster, "tenantatlas_kill")
    external_id = str(uuid.uuid4())
    slow_simulator.add_tenant(external_id, name="Killed mid-sync", policies_per_family=30)
    with owner.app_context():
        workspace = Workspace(slug="kill-test", name="Kill test")
        db.session.add(workspace)
        db.session.flush()
        tenant = Tenant(workspace_id=workspace.id, external_id=uuid.UUID(external_id), name="Killed mid-sync",
                        connection_status="connected")
        db.session.add(tenant)
        db.session.commit()
        tenant_id, workspace_id = tenant.id, workspace.id
        db.session.remove()
    app = make_test_app(app_url, GRAPH_SETTINGS=settings_for(slow_simulator, certificate=True))

    from app.sync.runner import request_sync

    with app.app_context(), working_in_workspace(workspace_id):
        run, _created = request_sync(db.session.get(Tenant, tenant_id), "user")
        db.session.commit()
        run_id = run.id

    def run_state():
        with owner.app_context():
            state = db.session.get(SyncRun, run_id)
            result = (state.status, len(state.families), state.attempts)
            db.session.remove()
            return result

    environment = {**os.environ, **slow_simulator.environment(), "DATABASE_URL": app_url, "SECRET_KEY": "kill-test",
                   "TENANTATLAS_ENV": "test", "TENANTATLAS_INSTANCE_PATH": str(tmp_path)}
    worker = subprocess.Popen([str(Path(sys.executable).parent / "flask"), "worker", "--concurrency", "1",
                               "--queue", "sync"], cwd=PROJECT_ROOT, env=environment,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Killed once it has written some families, well before the end.
        wait_for(lambda: run_state()[0] == "running" and 1 <= run_state()[1] < 5)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    status, done, attempts = run_state()
    assert status == "running" and done < 9 and attempts == 1

    async def retry():
        with connected_queue(app) as queue:
            async with queue.open_async():
                return await retry_stalled(queue.job_manager, timedelta(seconds=0))

    assert asyncio.run(retry()) == 1
    set_worker_app(app)
    try:
        with connected_queue(app) as queue:
            queue.run_worker(queues=["sync"], wait=False, concurrency=1, install_signal_handlers=False)
    finally:
        set_worker_app(None)
    status, done, attempts = run_state()
    assert (status, done, attempts) == ("succeeded", 9, 2)

    with owner.app_context():
        policies = db.session.scalar(select(func.count()).select_from(Policy).where(Policy.tenant_id == tenant_id))
        versions = db.session.execute(select(PolicyVersion.policy_id, func.count()).where(
            PolicyVersion.tenant_id == tenant_id).group_by(PolicyVersion.policy_id)).all()
        served = sum(len(slow_simulator.objects(external_id, key)) for key in (
            "settingsCatalog", "deviceConfigurations", "compliancePolicies", "iosAppProtection", "androidAppProtection"))
        assert policies == served and len(versions) == served and all(count == 1 for _, count in versions)
        db.session.remove()
    # An uninterrupted run over the same tenant now finds nothing to write: the same end state.
    from app.sync.runner import carry_out_sync_run
    from app.sync.engine import create_run

    with app.app_context(), working_in_workspace(workspace_id):
        again = create_run(db.session.get(Tenant, tenant_id), "command")
        db.session.commit()
        assert carry_out_sync_run(again.id) == "succeeded"
        again = db.session.get(SyncRun, again.id)
        assert all(counts["new"] == 0 and counts["changed"] == 0 and counts["deleted"] == 0
                   for counts in again.families.values())
