"""A worker killed mid-restore (SIGKILL): its job is retried and the restore ends succeeded, every
item written once. Real `flask worker` processes, a real simulator with latency.

Twenty items of a backup are restored into the tenant they came from: fourteen whose settings
drifted on the simulator (updates: PATCH, or PUT for the Settings Catalog) and six deleted
there (creates), across three families. The worker is killed at the worst moment, chosen
deterministically: Graph has done a write (the simulator recorded it) and holds its answer,
so the item is marked "writing" in the database and the worker never learns the outcome.
The stalled job is retried (what the scheduler's retry_stalled_jobs does) and resumes.

What is asserted on the simulator's write log (reset just before executing):
- a create is never repeated: one create per deleted item's name, the killed one included
  (the resumed run finds what the killed worker created, by name and content, and adopts it);
- every other object is written exactly once (an update, and a created object's assignments);
- the one update that was in flight may be written twice, and only that one: the resumed run
  sends it again, the same whole body from the backup, which leaves the object as one write
  would (an update is idempotent; a create is not, hence the adoption);
- nothing outside the selection is written.
And in the database: the run succeeded, every item created or updated and verified, each
audited once.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from app.extensions import db
from app.jobs import connected_queue, retry_stalled, set_worker_app
from app.models import AuditLog, BackupItem, BackupSet, RestoreItem, RestoreRun, Tenant, User, Workspace
from app.row_security import working_in_workspace
from tests.conftest import make_test_app, migrated_database
from tests.graph_support import settings_for

PROJECT_ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

FAMILIES = ("compliancePolicies", "deviceConfigurations", "settingsCatalog")
PER_FAMILY = 10
WRITES_BEFORE_THE_KILL = 4  # finished items before the one in flight
LATENCY_MS = 60  # per Graph request while executing: the restore takes seconds
HOLD_SECONDS = 4.0  # how long Graph sits on the answer to the write in flight (the worker is dead by then)


@pytest.fixture(scope="module")
def slow_simulator(tmp_path_factory):
    from simulator import Simulator

    simulator = Simulator.start(tmp_path_factory.mktemp("restore-kill-simulator"))
    yield simulator
    simulator.stop()


def wait_for(predicate, timeout: float = 60.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out waiting")


class AnswerHeld:
    """Graph does the first write of `operation` in `family` once `after` writes were done in the
    tenant, then sits on its answer: the worker is killed before it hears of it.

    The simulator records a write under its lock (writes.record); the answer leaves after the
    request is logged (Simulator._record), in the same thread: the hold happens there, outside
    the lock, so the simulator keeps answering everyone else."""

    def __init__(self, simulator, monkeypatch, tenant_id: str, family: str, operations: tuple[str, ...], after: int):
        from simulator import writes

        self.done = threading.Event()
        self.record = None
        local = threading.local()
        original_record, original_log = writes.record, simulator._record

        def record(tenant, method, family_, item, operation, status):
            original_record(tenant, method, family_, item, operation, status)
            if (tenant.tenant_id == tenant_id and family_.key == family and operation in operations
                    and not self.done.is_set() and self.record is None and len(tenant.writes) > after):
                self.record = tenant.writes[-1]
                local.hold = True

        def log_request(entry):
            original_log(entry)
            if getattr(local, "hold", False):
                local.hold = False
                self.done.set()
                time.sleep(HOLD_SECONDS)

        monkeypatch.setattr(writes, "record", record)
        monkeypatch.setattr(simulator, "_record", log_request)


@pytest.mark.parametrize("in_flight", [("compliancePolicies", ("create",)),
                                       ("settingsCatalog", ("replace", "update"))],
                         ids=["create-in-flight", "update-in-flight"])
def test_a_worker_killed_mid_restore_is_retried_and_writes_every_item_once(pg_cluster, slow_simulator, tmp_path,
                                                                            monkeypatch, in_flight):
    held_family, held_operations = in_flight
    owner, _owner_url, app_url = migrated_database(pg_cluster, "tenantatlas_kill_restore")
    external_id = str(uuid.uuid4())
    slow_simulator.add_tenant(external_id, name="Killed mid-restore", policies_per_family=PER_FAMILY)
    with owner.app_context():
        workspace = Workspace(slug="kill-restore", name="Kill restore")
        user = User(email="restorer@example.test", name="Rita Restorer", password_hash="x")
        db.session.add_all([workspace, user])
        db.session.flush()
        tenant = Tenant(workspace_id=workspace.id, external_id=uuid.UUID(external_id), name="Killed mid-restore",
                        connection_status="connected")
        db.session.add(tenant)
        db.session.commit()
        tenant_id, workspace_id, user_id = tenant.id, workspace.id, user.id
        db.session.remove()
    app = make_test_app(app_url, GRAPH_SETTINGS=settings_for(slow_simulator, certificate=True))

    from app.backup.engine import create_backup
    from app.backup.runner import carry_out_backup
    from app.restore.service import execute, start_restore_from_backup
    from app.sync.engine import create_run
    from app.sync.runner import carry_out_sync_run

    # Synced (the granted permissions are known) and backed up, in the foreground.
    with app.app_context(), working_in_workspace(workspace_id):
        sync = create_run(db.session.get(Tenant, tenant_id), "command")
        db.session.commit()
        assert carry_out_sync_run(sync.id) == "succeeded"
        backup_set = create_backup(db.session.get(Tenant, tenant_id), "command")
        db.session.commit()
        assert carry_out_backup(backup_set.id) == "completed"
        backup_set_id = backup_set.id
        items = db.session.scalars(select(BackupItem).where(BackupItem.tenant_id == tenant_id,
                                                            BackupItem.family.in_(FAMILIES))).all()
        items = sorted(items, key=lambda item: (item.family, item.display_name.lower(), item.id))
        db.session.remove()

    # Drift on the simulator: per family, two policies deleted and five changed, interleaved in the
    # order the restore writes them (creates and updates alternate). The last changed one is left
    # out of the selection: it must stay as it drifted.
    chosen, deleted, changed = [], {}, {}
    for family in FAMILIES:
        for index, item in enumerate([item for item in items if item.family == family][:7]):
            if index in (1, 4):
                slow_simulator.delete_object(external_id, family, item.graph_id)
                deleted[item.display_name] = item
            else:
                slow_simulator.change_object(external_id, family, item.graph_id, {"description": "drifted"})
                changed[item.graph_id] = item
            chosen.append(item)
    left_out = chosen.pop()
    del changed[left_out.graph_id]
    assert len(chosen) == 20 and len(deleted) == 6 and len(changed) == 14
    assert len({item.display_name for item in chosen}) == 20

    with app.app_context(), working_in_workspace(workspace_id):
        run = start_restore_from_backup(db.session.get(BackupSet, backup_set_id), [item.id for item in chosen],
                                        db.session.get(Tenant, tenant_id), mode="keep",
                                        user=db.session.get(User, user_id))
        db.session.commit()
        run_id = run.id

    def run_state():
        with owner.app_context():
            state = db.session.get(RestoreRun, run_id)
            statuses = Counter(db.session.scalars(select(RestoreItem.status).where(
                RestoreItem.restore_run_id == run_id)))
            result = (state.status, statuses, state.attempts)
            db.session.remove()
            return result

    environment = {**os.environ, **slow_simulator.environment(), "DATABASE_URL": app_url,
                   "SECRET_KEY": "kill-restore-test", "TENANTATLAS_ENV": "test",
                   "TENANTATLAS_INSTANCE_PATH": str(tmp_path)}
    worker_log = tmp_path / "worker.log"
    with open(worker_log, "wb") as log_file:
        worker = subprocess.Popen([str(Path(sys.executable).parent / "flask"), "worker", "--concurrency", "1",
                                   "--queue", "restore"], cwd=PROJECT_ROOT, env=environment,
                                  stdout=log_file, stderr=subprocess.STDOUT)
    try:
        # The worker plans the restore (nothing written), then executes it once a manager says so.
        wait_for(lambda: run_state()[0] == "planned")
        with owner.app_context():
            actions = Counter(db.session.scalars(select(RestoreItem.action).where(
                RestoreItem.restore_run_id == run_id)))
            db.session.remove()
        assert actions == {"update": 14, "create": 6}
        assert slow_simulator.write_log(external_id) == []
        planned_attempts = run_state()[2]
        held = AnswerHeld(slow_simulator, monkeypatch, external_id, held_family, held_operations,
                          after=WRITES_BEFORE_THE_KILL)
        slow_simulator.set_latency(LATENCY_MS)
        with app.app_context(), working_in_workspace(workspace_id):
            execute(db.session.get(RestoreRun, run_id), db.session.get(User, user_id))
            db.session.commit()
        assert held.done.wait(timeout=90), "the restore never reached the write to hold"
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
    print(worker_log.read_text()[-3000:])

    # Killed mid-restore: some items written, the held one "writing" (Graph did it; the worker never
    # heard), some not reached.
    status, statuses, attempts = run_state()
    assert status == "running" and attempts == planned_attempts + 1, (status, attempts)
    assert statuses["writing"] == 1 and statuses["planned"] >= 1, statuses
    assert statuses["created"] + statuses["updated"] >= WRITES_BEFORE_THE_KILL, statuses
    with owner.app_context():
        in_flight = db.session.scalar(select(RestoreItem).where(RestoreItem.restore_run_id == run_id,
                                                                RestoreItem.status == "writing"))
        assert in_flight.family == held_family and in_flight.display_name == held.record.name
        in_flight_action, in_flight_source = in_flight.action, in_flight.source_graph_id
        db.session.remove()
    assert in_flight_action == ("create" if "create" in held_operations else "update")

    async def retry():
        with connected_queue(app) as queue:
            async with queue.open_async():
                return await retry_stalled(queue.job_manager, timedelta(seconds=0))

    assert asyncio.run(retry()) == 1
    slow_simulator.set_latency(0)
    set_worker_app(app)
    try:
        with connected_queue(app) as queue:
            queue.run_worker(queues=["restore"], wait=False, concurrency=1, install_signal_handlers=False)
    finally:
        set_worker_app(None)

    status, statuses, attempts = run_state()
    assert (status, attempts) == ("succeeded", planned_attempts + 2), (status, attempts, statuses)
    assert statuses == {"updated": 14, "created": 6}
    with owner.app_context():
        done = db.session.scalars(select(RestoreItem).where(RestoreItem.restore_run_id == run_id)).all()
        assert all(item.verified for item in done), [(i.display_name, i.error) for i in done if not i.verified]
        audited = Counter(db.session.scalars(select(AuditLog.target_name).where(
            AuditLog.tenant_id == tenant_id, AuditLog.action.like("restore.item.%"))))
        assert audited == {item.display_name: 1 for item in done}, audited
        targets = {item.source_graph_id: item.target_graph_id for item in done}
        assignments_written = {item.target_graph_id for item in done if item.plan.get("assignments") is not None}
        db.session.remove()

    writes = slow_simulator.write_log(external_id)
    # A create is never repeated: one per deleted item, the one in flight included; and the
    # tenant holds each deleted policy once again.
    assert Counter(w.name for w in writes if w.operation == "create") == {name: 1 for name in deleted}
    for name, item in deleted.items():
        assert sum(1 for obj in slow_simulator.objects(external_id, item.family)
                   if (obj.get("displayName") or obj.get("name")) == name) == 1, name
    # Nothing outside the selection.
    assert {w.object_id for w in writes} <= set(targets.values())
    assert slow_simulator.get_object(external_id, left_out.family, left_out.graph_id)["description"] == "drifted"
    # Each drifted object is updated once; the update in flight (if that is what was killed) at most
    # twice, the same body sent again by the resumed run.
    updates = Counter(w.object_id for w in writes if w.operation in ("update", "replace"))
    expected = {targets[graph_id]: 1 for graph_id in changed}
    if in_flight_action == "update":
        held_target = targets[in_flight_source]
        assert updates[held_target] in (1, 2)
        expected[held_target] = updates[held_target]
        assert {w.operation for w in writes if w.object_id == held_target} == {held.record.operation}
    assert updates == expected
    # Assignments: written once, where the plan has them (the created policies: "keep" adds the
    # backup's assignments; the drifted ones kept theirs).
    assert Counter(w.object_id for w in writes if w.operation == "assign") == {target: 1 for target in
                                                                               assignments_written}
