"""Carrying out restore steps in the worker: the Graph context, and failures recorded on the run."""
from __future__ import annotations

import logging

from app.extensions import db
from app.models import RestoreRun
from app.sync.engine import utcnow
from app.sync.runner import GraphNotConfigured, graph_settings, token_provider

from .executor import execute_restore
from .planner import RestoreContext, plan_restore

log = logging.getLogger(__name__)
STEPS = {"plan_restore": plan_restore, "execute_restore": execute_restore}


def restore_context() -> RestoreContext:
    from app.graph.client import GraphClient

    settings = graph_settings()
    return RestoreContext(
        token_provider=token_provider(),
        client_factory=lambda tenant_id, provider: GraphClient(settings, tenant_id, token_provider=provider),
    )


def carry_out_restore_step(step: str, run_id: int) -> str:
    try:
        run = STEPS[step](run_id, restore_context())
        return run.status if run is not None else "missing"
    except GraphNotConfigured as error:
        db.session.rollback()
        return _fail(run_id, str(error))
    except Exception as error:  # recorded on the run; the traceback goes to the log
        log.exception("restore run %s: %s failed unexpectedly", run_id, step)
        db.session.rollback()
        return _fail(run_id, f"Internal error ({type(error).__name__}); the worker log has the details.")


def _fail(run_id: int, message: str) -> str:
    run = db.session.get(RestoreRun, run_id)
    if run is not None and run.is_active:
        run.status, run.finished_at, run.error = "failed", utcnow(), message[:1000]
        db.session.commit()
    return "failed"
