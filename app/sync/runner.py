"""Starting and carrying out syncs: what the web, the commands and the worker call.

The engine (app.sync.engine) does the work; this module wires it to the process's
Graph credentials and to the job queue.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import select, text

from app.extensions import db
from app.graph.settings import GraphSettings
from app.models import SyncRun, Tenant
from app.sync.engine import SyncAlreadyActive, SyncContext, create_run, record_outcome, run_sync, utcnow

log = logging.getLogger(__name__)


class GraphNotConfigured(RuntimeError):
    pass


def graph_settings(app=None) -> GraphSettings:
    app = app or current_app
    return app.extensions["graph_settings"]


def token_provider(app=None):
    """One TokenProvider per process: its msal clients and in-memory tokens are reused by every sync."""
    from app.graph.credentials import TokenProvider

    app = app or current_app
    provider = app.extensions.get("graph_token_provider")
    if provider is None:
        settings = graph_settings(app)
        if not settings.configured:
            raise GraphNotConfigured("Microsoft Graph is not configured (GRAPH_CLIENT_ID and a certificate or secret).")
        provider = app.extensions["graph_token_provider"] = TokenProvider(settings)
    return provider


def sync_interval(app=None) -> timedelta:
    return timedelta(minutes=(app or current_app).config.get("SYNC_INTERVAL_MINUTES", 360))


def sync_context(progress=None) -> SyncContext:
    from app.graph.client import GraphClient

    settings = graph_settings()
    return SyncContext(
        token_provider=token_provider(),
        client_factory=lambda tenant_id, provider: GraphClient(settings, tenant_id, token_provider=provider),
        interval=sync_interval(), progress=progress,
    )


def request_sync(tenant: Tenant, trigger: str, user_id: int | None = None) -> tuple[SyncRun, bool]:
    """Queue a sync of `tenant` (run row and job in the caller's transaction, which commits).

    Returns (run, created): an already queued or running run is returned instead of a second one.
    """
    from app.jobs import enqueue_sync

    try:
        run = create_run(tenant, trigger, user_id)
    except SyncAlreadyActive as active:
        return active.run, False
    enqueue_sync(run)
    return run, True


def carry_out_sync_run(run_id: int, progress=None) -> str:
    """Run the engine on `run_id`; an unexpected error fails the run (recorded), never leaves it running.

    Whatever the outcome, the tenant's findings are evaluated afterwards (app.drift): a failed
    sync is a hygiene finding, a new policy version may be drift.
    """
    try:
        run = run_sync(run_id, sync_context(progress))
        status = run.status if run is not None else "missing"
    except GraphNotConfigured as error:
        db.session.rollback()
        status = _fail(run_id, str(error))
    except Exception as error:  # recorded on the run for the user; the traceback goes to the log
        log.exception("sync run %s failed unexpectedly", run_id)
        db.session.rollback()
        status = _fail(run_id, f"Internal error ({type(error).__name__}); the worker log has the details.")
    evaluate_after_sync(run_id)
    return status


def evaluate_after_sync(run_id: int) -> None:
    """The tenant's findings after its sync; a failure here is logged, never the sync's failure."""
    from app.drift import evaluate_after

    tenant_id = db.session.scalar(select(SyncRun.tenant_id).where(SyncRun.id == run_id))
    if tenant_id is None:
        db.session.rollback()
        return
    evaluate_after(tenant_id, f"sync run {run_id}")


def _fail(run_id: int, message: str) -> str:
    """A run that broke outside the engine's own handling ends failed, counted like any failure
    (so a tenant that always breaks pauses itself and says why)."""
    run = db.session.get(SyncRun, run_id)
    if run is not None and run.status in ("queued", "running"):
        record_outcome(run, db.session.get(Tenant, run.tenant_id), "failed", message, None, utcnow(), sync_interval())
    return "failed"


def queue_due_syncs(limit: int) -> int:
    """Queue a scheduled sync for each due tenant, each inside its own workspace."""
    from app.row_security import working_in_workspace

    due = db.session.execute(text("SELECT tenant_id, workspace_id FROM tenants_due_for_sync(:n)"), {"n": limit}).all()
    db.session.rollback()
    queued = 0
    for tenant_id, workspace_id in due:
        with working_in_workspace(workspace_id):
            tenant = db.session.scalar(select(Tenant).where(Tenant.id == tenant_id))
            if tenant is None:
                db.session.rollback()
                continue
            _run, created = request_sync(tenant, "schedule")
            tenant.next_sync_at = utcnow() + sync_interval()
            db.session.commit()
            queued += int(created)
    return queued


ORPHAN_AFTER_MINUTES = 10


def end_orphaned_runs(older_than_minutes: int = ORPHAN_AFTER_MINUTES) -> int:
    """Fail each run whose job ended without finishing it (migration 0013), inside its workspace:
    otherwise it would hold its tenant's one active slot and no sync could start again."""
    from app.row_security import working_in_workspace

    orphans = db.session.execute(text("SELECT sync_run_id, workspace_id FROM orphaned_sync_runs(:m)"),
                                 {"m": older_than_minutes}).all()
    db.session.rollback()
    ended = 0
    for run_id, workspace_id in orphans:
        with working_in_workspace(workspace_id):
            run = db.session.get(SyncRun, run_id)
            if run is not None and run.status in ("queued", "running"):
                log.warning("sync run %s lost its job; ending it as failed", run_id)
                record_outcome(run, db.session.get(Tenant, run.tenant_id), "failed",
                               "The job carrying this sync ended without finishing it; the next sync starts afresh.",
                               None, utcnow(), sync_interval())
                ended += 1
            else:
                db.session.rollback()
    return ended
