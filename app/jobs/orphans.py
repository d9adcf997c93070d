"""Backups and restores whose job is gone (migration 0014's orphaned_job_rows): ended as failed,
inside their workspace, so that they never hold their tenant's one active slot."""
from __future__ import annotations

import logging

from sqlalchemy import text

from app.extensions import db

log = logging.getLogger(__name__)

ORPHAN_AFTER_MINUTES = 10
LOST_JOB = "The job carrying this {what} ended without finishing it; start it again."


def end_orphaned_job_rows(older_than_minutes: int = ORPHAN_AFTER_MINUTES) -> int:
    from app.models import BackupSet, RestoreRun
    from app.row_security import working_in_workspace
    from app.sync.engine import utcnow

    orphans = db.session.execute(text("SELECT kind, row_id, workspace_id FROM orphaned_job_rows(:m)"),
                                 {"m": older_than_minutes}).all()
    db.session.rollback()
    ended = 0
    for kind, row_id, workspace_id in orphans:
        with working_in_workspace(workspace_id):
            row = db.session.get(BackupSet if kind == "backup" else RestoreRun, row_id)
            if row is not None and row.is_active:
                log.warning("%s %s lost its job; ending it as failed", kind, row_id)
                row.status, row.finished_at = "failed", utcnow()
                row.error = LOST_JOB.format(what=kind)
                if kind == "backup":
                    row.item_ids, row.item_count = [], 0
                db.session.commit()
                ended += 1
            else:
                db.session.rollback()
    return ended
