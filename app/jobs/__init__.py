"""The job queue (procrastinate, on the application's own PostgreSQL) and its tasks.

Tasks are thin: they enter the job's workspace (row-level security) and call an
engine. A job is deferred on the request's own database connection, so it is
committed or rolled back together with the row it carries out (a sync run).

`connected_queue(app)` binds the queue to a Flask app's database; the
worker (`flask worker`) runs it as the web app's role.
"""
from __future__ import annotations

import contextlib
import logging
from datetime import timedelta

import procrastinate
from flask import Flask

from app.extensions import db

log = logging.getLogger(__name__)

# The tasks are declared on one app. Jobs are deferred on the caller's own connection (so
# its connector is not used then); a worker binds it to its database with `connected_queue`.
tasks = procrastinate.App(connector=procrastinate.PsycopgConnector())
SYNC_QUEUE = "sync"
BACKUP_QUEUE = "backup"
RESTORE_QUEUE = "restore"
SCHEDULER_QUEUE = "scheduler"
# How many due tenants one scheduler tick queues (the rest wait for the next tick).
SCHEDULE_BATCH = 500

# The Flask app the worker's tasks run in (set by `flask worker` and by tests).
_worker_flask_app: Flask | None = None


def conninfo_for(app: Flask) -> str:
    """libpq conninfo of the app's SQLAlchemy URL (the same role and database)."""
    from sqlalchemy.engine import make_url

    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


@contextlib.contextmanager
def connected_queue(app: Flask):
    """The queue app connected to `app`'s database (as its role), for a worker."""
    with tasks.replace_connector(procrastinate.PsycopgConnector(conninfo=conninfo_for(app))):
        yield tasks


def defer_in_transaction(task_name: str, *, queue: str, lock: str | None = None, **arguments) -> int:
    """Insert a job on the current request's (or command's) transaction: it exists iff that commits."""
    raw_connection = db.session.connection().connection.driver_connection
    deferrer = tasks.configure_task(task_name, queue=queue, lock=lock,
                                                      connection=raw_connection)
    return deferrer.defer(**arguments)


def enqueue_sync(run) -> int:
    """Queue the job that carries out sync run `run` (same transaction as the run's row)."""
    return defer_in_transaction("sync_tenant", queue=SYNC_QUEUE, lock=f"tenant-{run.tenant_id}",
                                sync_run_id=run.id, workspace_id=run.workspace_id)


def enqueue_backup(backup_set) -> int:
    """Queue the job that carries out a backup set. One Graph-heavy job per tenant at a time (the lock):
    a backup waits for the tenant's sync, and they share its rate limit."""
    return defer_in_transaction("backup_tenant", queue=BACKUP_QUEUE, lock=f"tenant-{backup_set.tenant_id}",
                                backup_set_id=backup_set.id, workspace_id=backup_set.workspace_id)


def enqueue_restore_step(run, step: str) -> int:
    """Queue planning ("plan_restore") or executing ("execute_restore") restore run `run`; like a
    backup, it waits for other Graph-heavy jobs of its target tenant."""
    return defer_in_transaction(step, queue=RESTORE_QUEUE, lock=f"tenant-{run.tenant_id}",
                                restore_run_id=run.id, workspace_id=run.workspace_id)


def set_worker_app(app: Flask | None) -> None:
    global _worker_flask_app
    _worker_flask_app = app


def _flask_app() -> Flask:
    if _worker_flask_app is None:
        raise RuntimeError("The worker's Flask app is not set (run jobs with `flask worker`)")
    return _worker_flask_app


@tasks.task(name="sync_tenant", queue=SYNC_QUEUE,
            retry=procrastinate.RetryStrategy(max_attempts=3, wait=30, retry_exceptions={ConnectionError, OSError}))
def sync_tenant(sync_run_id: int, workspace_id: int) -> str:
    """Carry out one sync run, inside its workspace."""
    from app.row_security import working_in_workspace
    from app.sync.runner import carry_out_sync_run

    app = _flask_app()
    with app.app_context(), working_in_workspace(workspace_id):
        return carry_out_sync_run(sync_run_id)


@tasks.task(name="backup_tenant", queue=BACKUP_QUEUE,
            retry=procrastinate.RetryStrategy(max_attempts=3, wait=30, retry_exceptions={ConnectionError, OSError}))
def backup_tenant(backup_set_id: int, workspace_id: int) -> str:
    """Carry out one backup, inside its workspace."""
    from app.backup.runner import carry_out_backup
    from app.row_security import working_in_workspace

    app = _flask_app()
    with app.app_context(), working_in_workspace(workspace_id):
        return carry_out_backup(backup_set_id)


def _restore_step(step: str, restore_run_id: int, workspace_id: int) -> str:
    from app.restore.runner import carry_out_restore_step
    from app.row_security import working_in_workspace

    app = _flask_app()
    with app.app_context(), working_in_workspace(workspace_id):
        return carry_out_restore_step(step, restore_run_id)


@tasks.task(name="plan_restore", queue=RESTORE_QUEUE,
            retry=procrastinate.RetryStrategy(max_attempts=3, wait=10, retry_exceptions={ConnectionError, OSError}))
def plan_restore(restore_run_id: int, workspace_id: int) -> str:
    """Plan a restore: read the target, decide each item's action. Writes nothing to Graph."""
    return _restore_step("plan_restore", restore_run_id, workspace_id)


@tasks.task(name="execute_restore", queue=RESTORE_QUEUE,
            retry=procrastinate.RetryStrategy(max_attempts=3, wait=10, retry_exceptions={ConnectionError, OSError}))
def execute_restore(restore_run_id: int, workspace_id: int) -> str:
    """Write a planned restore; a retried job resumes it without repeating finished items."""
    return _restore_step("execute_restore", restore_run_id, workspace_id)


@tasks.periodic(cron="* * * * *", periodic_id="schedule-due-backups")
@tasks.task(name="schedule_due_backups", queue=SCHEDULER_QUEUE, queueing_lock="schedule-due-backups")
def schedule_due_backups(timestamp: int) -> int:
    """Every minute: end backups and restores whose job is gone, then start each due backup schedule."""
    from app.backup.schedules import queue_due_backups
    from app.jobs.orphans import end_orphaned_job_rows
    from app.sync.engine import utcnow

    app = _flask_app()
    with app.app_context():
        end_orphaned_job_rows()
        return queue_due_backups(limit=SCHEDULE_BATCH, now=utcnow())


@tasks.periodic(cron="*/5 * * * *", periodic_id="schedule-due-syncs")
@tasks.task(name="schedule_due_syncs", queue=SCHEDULER_QUEUE, queueing_lock="schedule-due-syncs")
def schedule_due_syncs(timestamp: int) -> int:
    """Every five minutes: end runs whose job is gone, then queue a sync for each connected,
    active tenant whose time has come."""
    from app.sync.runner import end_orphaned_runs, queue_due_syncs

    app = _flask_app()
    with app.app_context():
        end_orphaned_runs()  # first, so that a tenant whose run lost its job is due again
        return queue_due_syncs(limit=SCHEDULE_BATCH)


@tasks.periodic(cron="* * * * *", periodic_id="retry-stalled-jobs")
@tasks.task(name="retry_stalled_jobs", queue=SCHEDULER_QUEUE, pass_context=True,
            queueing_lock="retry-stalled-jobs")
async def retry_stalled_jobs(context, timestamp: int) -> int:
    """A worker killed mid-job stops sending heartbeats; its job is retried (and resumes its run)."""
    return await retry_stalled(context.app.job_manager, STALLED_AFTER)


STALLED_AFTER = timedelta(seconds=30)


async def retry_stalled(manager, stalled_after: timedelta) -> int:
    """Put back in the queue every job whose worker has sent no heartbeat for `stalled_after`."""
    stalled = list(await manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after.total_seconds()))
    for job in stalled:
        log.warning("retrying stalled job %s (%s)", job.id, job.task_name)
        await manager.retry_job(job)
    return len(stalled)


# --- findings, bulk runs and alerts (issue 13) -------------------------------------------------------

FINDINGS_QUEUE = "findings"
BULK_QUEUE = "bulk"
ALERTS_QUEUE = "alerts"


@tasks.task(name="evaluate_tenant_findings", queue=FINDINGS_QUEUE)
def evaluate_tenant_findings(tenant_id: int, workspace_id: int) -> str:
    """On demand (a baseline edited or assigned): one tenant's findings, inside its workspace."""
    from app.drift import evaluate_tenant_by_id
    from app.row_security import working_in_workspace

    app = _flask_app()
    with app.app_context(), working_in_workspace(workspace_id):
        return "evaluated" if evaluate_tenant_by_id(tenant_id) is not None else "missing"


def enqueue_evaluation(tenant_id: int, workspace_id: int) -> int:
    return defer_in_transaction("evaluate_tenant_findings", queue=FINDINGS_QUEUE, lock=f"findings-{tenant_id}",
                                tenant_id=tenant_id, workspace_id=workspace_id)


@tasks.periodic(cron="17 * * * *", periodic_id="evaluate-findings")
@tasks.task(name="evaluate_findings", queue=SCHEDULER_QUEUE, queueing_lock="evaluate-findings")
def evaluate_findings(timestamp: int) -> int:
    """Every hour: every active tenant's findings (a backup grows old without any sync)."""
    from app.drift import evaluate_everywhere

    app = _flask_app()
    with app.app_context():
        return evaluate_everywhere()


@tasks.task(name="bulk_run_item", queue=BULK_QUEUE,
            retry=procrastinate.RetryStrategy(max_attempts=3, wait=10, retry_exceptions={ConnectionError, OSError}))
def bulk_run_item(item_id: int, workspace_id: int) -> str:
    """One tenant of a bulk run, inside its workspace (app.bulk)."""
    from app.bulk import carry_out_item
    from app.row_security import working_in_workspace

    app = _flask_app()
    with app.app_context(), working_in_workspace(workspace_id):
        return carry_out_item(item_id)


def enqueue_bulk_item(item) -> int:
    return defer_in_transaction("bulk_run_item", queue=BULK_QUEUE, item_id=item.id, workspace_id=item.workspace_id)


@tasks.task(name="deliver_alert", queue=ALERTS_QUEUE)
def deliver_alert(alert_event_id: int, workspace_id: int) -> str:
    """Send one alert (email or webhook, with its retries), inside its workspace (app.alerts)."""
    from app.alerts.delivery import deliver
    from app.row_security import working_in_workspace

    app = _flask_app()
    with app.app_context(), working_in_workspace(workspace_id):
        return deliver(alert_event_id)


def enqueue_alert(event) -> int:
    return defer_in_transaction("deliver_alert", queue=ALERTS_QUEUE, alert_event_id=event.id,
                                workspace_id=event.workspace_id)
