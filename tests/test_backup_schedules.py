"""Backup schedules run by the real scheduler and worker, as the web app's role, each inside its
workspace; retention prunes what nothing refers to any more, and nothing else."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, text

from app.backup.schedules import apply_retention, prune_unreferenced, queue_due_backups
from app.extensions import db
from app.jobs import connected_queue, set_worker_app
from app.models import BackupItem, BackupPayload, BackupSchedule, BackupSet, PolicyVersion, Tenant, Workspace
from app.row_security import working_in_workspace
from tests.conftest import make_test_app, migrated_database
from tests.graph_support import graph_simulator, settings_for  # noqa: F401


@pytest.fixture(scope="module")
def schedule_database(pg_cluster, graph_simulator):  # noqa: F811
    """A workspace with a connected tenant (on the simulator) and an archived and a disconnected one."""
    owner, _owner_url, app_url = migrated_database(pg_cluster, "tenantatlas_backup_schedules")
    with owner.app_context():
        workspace = Workspace(slug="schedules", name="Schedules")
        db.session.add(workspace)
        db.session.flush()
        tenants = {kind: Tenant(workspace_id=workspace.id, external_id=uuid.uuid4(), name=f"{kind} tenant",
                                connection_status=connection, status=status)
                   for kind, connection, status in (("connected", "connected", "active"),
                                                    ("archived", "connected", "archived"),
                                                    ("disconnected", "not_connected", "active"))}
        db.session.add_all(tenants.values())
        db.session.commit()
        refs = {kind: (tenant.id, str(tenant.external_id)) for kind, tenant in tenants.items()}
        workspace_id = workspace.id
        db.session.remove()
        db.engine.dispose()
    for _tenant_id, external_id in refs.values():
        graph_simulator.add_tenant(external_id, name="Schedule tenant")
    app = make_test_app(app_url, GRAPH_SETTINGS=settings_for(graph_simulator))
    yield app, owner, workspace_id, refs
    set_worker_app(None)


@pytest.fixture
def clean(schedule_database):
    app, owner, workspace_id, refs = schedule_database
    yield schedule_database
    with owner.app_context():
        for table in ("backup_sets", "backup_schedules", "backup_items", "backup_payloads", "procrastinate_jobs"):
            db.session.execute(text(f"DELETE FROM {table}"))
        db.session.commit()
        db.session.remove()


def add_schedule(owner, tenant_id: int, *, next_run_at, frequency="daily", enabled=True, retention_days=30,
                 keep_last=3) -> int:
    with owner.app_context():
        schedule = BackupSchedule(tenant_id=tenant_id, name=f"Nightly {uuid.uuid4().hex[:6]}", frequency=frequency,
                                  next_run_at=next_run_at, is_enabled=enabled, retention_days=retention_days,
                                  keep_last=keep_last)
        db.session.add(schedule)
        db.session.commit()
        schedule_id = schedule.id
        db.session.remove()
    return schedule_id


def run_backup_jobs(app) -> None:
    set_worker_app(app)
    with connected_queue(app) as queue:
        queue.run_worker(queues=["backup"], wait=False, concurrency=1, install_signal_handlers=False)


def sets_of(owner, schedule_id):
    with owner.app_context():
        rows = db.session.scalars(select(BackupSet).where(BackupSet.schedule_id == schedule_id)
                                  .order_by(BackupSet.id)).all()
        db.session.expunge_all()
        db.session.remove()
        return rows


def test_a_schedule_that_missed_three_runs_runs_once_and_its_backup_is_carried_out(clean):
    app, owner, _workspace_id, refs = clean
    now = datetime.now(timezone.utc)
    schedule_id = add_schedule(owner, refs["connected"][0], next_run_at=now - timedelta(days=3))
    with app.app_context():
        assert queue_due_backups(limit=100, now=now) == 1
        assert queue_due_backups(limit=100, now=now) == 0  # next_run_at moved past now
    with owner.app_context():
        schedule = db.session.get(BackupSchedule, schedule_id)
        assert schedule.next_run_at > now and schedule.last_run_at is not None
        jobs = db.session.scalar(text("SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'backup_tenant'"))
        assert jobs == 1
        db.session.remove()
    run_backup_jobs(app)
    [backup_set] = sets_of(owner, schedule_id)
    assert backup_set.status == "completed", backup_set.error
    assert backup_set.triggered_by == "schedule" and backup_set.item_count > 0


def test_archived_disconnected_and_disabled_schedules_never_start_a_backup(clean):
    app, owner, _workspace_id, refs = clean
    past = datetime.now(timezone.utc) - timedelta(hours=2)
    schedules = [add_schedule(owner, refs["archived"][0], next_run_at=past),
                 add_schedule(owner, refs["disconnected"][0], next_run_at=past),
                 add_schedule(owner, refs["connected"][0], next_run_at=past, enabled=False)]
    with app.app_context():
        assert queue_due_backups(limit=100, now=datetime.now(timezone.utc)) == 0
    assert all(sets_of(owner, schedule_id) == [] for schedule_id in schedules)


def test_two_schedulers_at_once_start_one_backup(clean):
    """The second finds the schedule locked or no longer due."""
    from app.backup.schedules import take_due_schedule

    app, owner, workspace_id, refs = clean
    now = datetime.now(timezone.utc)
    schedule_id = add_schedule(owner, refs["connected"][0], next_run_at=now - timedelta(minutes=1))
    with app.app_context(), working_in_workspace(workspace_id):
        first = take_due_schedule(schedule_id, now)
        assert first is not None
        # A second session while the first still holds the lock: SKIP LOCKED finds nothing.
        other = db.create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
        with other.connect() as connection:
            connection.execute(text("SELECT set_config('app.current_workspace_id', :w, false)"), {"w": str(workspace_id)})
            locked = connection.execute(text("SELECT id FROM backup_schedules WHERE id = :s FOR UPDATE SKIP LOCKED"),
                                        {"s": schedule_id}).all()
            assert locked == []
        other.dispose()
        db.session.commit()
        assert take_due_schedule(schedule_id, now) is None  # no longer due
        db.session.rollback()


def count(owner, model, tenant_id) -> int:
    with owner.app_context():
        value = db.session.scalar(select(func.count()).select_from(model).where(model.tenant_id == tenant_id))
        db.session.remove()
        return value


def test_retention_deletes_expired_sets_and_prunes_only_what_nothing_refers_to(clean, graph_simulator):  # noqa: F811
    app, owner, workspace_id, refs = clean
    tenant_id, external_id = refs["connected"]
    now = datetime.now(timezone.utc)
    schedule_id = add_schedule(owner, tenant_id, next_run_at=now - timedelta(minutes=1), retention_days=30,
                               keep_last=1)
    changed = graph_simulator.objects(external_id, "deviceConfigurations")[0]
    for round_no in range(2):
        with owner.app_context():
            db.session.execute(text("UPDATE backup_schedules SET next_run_at = now() - interval '1 minute'"))
            db.session.commit()
            db.session.remove()
        with app.app_context():
            assert queue_due_backups(limit=10, now=datetime.now(timezone.utc)) == 1
        run_backup_jobs(app)
        if round_no == 0:
            graph_simulator.change_object(external_id, "deviceConfigurations", changed["id"],
                                          {"description": "changed between the backups"})
    old, new = sets_of(owner, schedule_id)
    assert old.status == new.status == "completed"
    only_old = set(old.item_ids) - set(new.item_ids)
    assert len(only_old) == 1
    with owner.app_context():
        # A policy version still points at the old payload of another object: that payload must stay.
        old_items = db.session.scalars(select(BackupItem).where(BackupItem.id.in_(only_old))).all()
        [stale] = old_items
        kept_payload = db.session.scalar(select(BackupItem.payload_id).where(BackupItem.id == new.item_ids[0]))
        db.session.execute(text("UPDATE backup_sets SET started_at = now() - interval '40 days' WHERE id = :s"),
                           {"s": old.id})
        db.session.commit()
        stale_payload = stale.payload_id
        db.session.remove()
    payloads_before = count(owner, BackupPayload, tenant_id)
    with app.app_context(), working_in_workspace(workspace_id):
        schedule = db.session.get(BackupSchedule, schedule_id)
        assert apply_retention(schedule, datetime.now(timezone.utc)) == 1
        db.session.commit()
    [remaining] = sets_of(owner, schedule_id)
    assert remaining.id == new.id
    with owner.app_context():
        assert db.session.get(BackupItem, stale.id) is None
        assert db.session.get(BackupPayload, stale_payload) is None
        assert db.session.get(BackupPayload, kept_payload) is not None
        db.session.remove()
    assert count(owner, BackupPayload, tenant_id) == payloads_before - 1


def test_pruning_keeps_a_payload_a_policy_version_refers_to(clean):
    app, owner, workspace_id, refs = clean
    tenant_id, _external_id = refs["connected"]
    with owner.app_context():
        payload = BackupPayload(tenant_id=tenant_id, content_hash="c" * 64, family="deviceConfigurations",
                                body={"object": {"displayName": "Versioned"}}, size_bytes=30)
        orphan = BackupPayload(tenant_id=tenant_id, content_hash="d" * 64, family="deviceConfigurations",
                               body={"object": {"displayName": "Nobody's"}}, size_bytes=30)
        db.session.add_all([payload, orphan])
        db.session.flush()
        db.session.execute(text(
            "INSERT INTO policies (tenant_id, workspace_id, graph_id, policy_type, platform, display_name) "
            "VALUES (:t, :w, 'versioned', 'deviceConfiguration', 'windows10', 'Versioned')"),
            {"t": tenant_id, "w": workspace_id})
        policy_id = db.session.scalar(text("SELECT id FROM policies WHERE graph_id = 'versioned' AND tenant_id = :t"),
                                      {"t": tenant_id})
        db.session.add(PolicyVersion(tenant_id=tenant_id, policy_id=policy_id, version_number=1, snapshot={},
                                     content_hash="c" * 64, payload_id=payload.id))
        db.session.commit()
        ids = payload.id, orphan.id
        db.session.remove()
    with app.app_context(), working_in_workspace(workspace_id):
        assert prune_unreferenced(tenant_id) == (0, 1)
        db.session.commit()
    with owner.app_context():
        assert db.session.get(BackupPayload, ids[0]) is not None and db.session.get(BackupPayload, ids[1]) is None
        db.session.execute(text("DELETE FROM policies WHERE graph_id = 'versioned'"))
        db.session.commit()
        db.session.remove()


def test_a_backup_whose_job_is_gone_is_ended_and_frees_its_tenant(clean):
    from app.jobs.orphans import end_orphaned_job_rows

    app, owner, _workspace_id, refs = clean
    tenant_id = refs["connected"][0]
    with owner.app_context():
        orphan = BackupSet(tenant_id=tenant_id, name="Lost", status="running", triggered_by="user",
                           started_at=func.now() - text("interval '1 hour'"))
        db.session.add(orphan)
        db.session.commit()
        orphan_id = orphan.id
        db.session.remove()
    with app.app_context():
        assert end_orphaned_job_rows() == 1
        assert end_orphaned_job_rows() == 0
    with owner.app_context():
        ended = db.session.get(BackupSet, orphan_id)
        assert ended.status == "failed" and "ended without finishing" in ended.error
        db.session.remove()
