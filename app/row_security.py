"""Row-level security context: every transaction of a request says whose rows it may see.

The database's policies (migration 0006) compare each row's workspace_id with the
transaction's `app.current_workspace_id`. It is set with set_config(..., true) at the
start of every transaction the app begins during a request, so it lives exactly as
long as the transaction: a pooled connection never carries one request's workspace
into the next. Outside requests, a job sets its workspace with `working_in_workspace`
(the worker connects as the app role too); commands run as the owner set nothing.
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar

from flask import has_request_context, session
from sqlalchemy import event
from sqlalchemy.orm import Session

from .validation import parse_database_id

SET_CONTEXT = ("SELECT set_config('app.current_workspace_id', %(workspace)s, true), "
               "set_config('app.current_user_id', %(user)s, true)")


# The workspace a job works in (app.jobs): every transaction it begins is limited to it.
_job_workspace_id: ContextVar[int | None] = ContextVar("job_workspace_id", default=None)


@contextlib.contextmanager
def working_in_workspace(workspace_id: int):
    """For a job: every transaction begun inside sees and writes only `workspace_id`'s rows."""
    token = _job_workspace_id.set(workspace_id)
    try:
        yield
    finally:
        _job_workspace_id.reset(token)


@event.listens_for(Session, "after_begin")
def set_row_level_context(session_, transaction, connection) -> None:
    if not has_request_context():
        workspace_id = _job_workspace_id.get()
        if workspace_id is not None:
            connection.exec_driver_sql(SET_CONTEXT, {"workspace": str(workspace_id), "user": ""})
        return
    from .access import acting_workspace_id

    workspace_id = acting_workspace_id()
    # The signed session cookie's user id; the user loader checks its token separately.
    user_id = parse_database_id(str(session.get("_user_id") or "").partition(":")[0])
    connection.exec_driver_sql(SET_CONTEXT, {
        "workspace": str(workspace_id) if workspace_id is not None else "",
        "user": str(user_id) if user_id is not None else "",
    })
