"""Write-path enforcement of workspace isolation (rollout phase 1.5).

Every insert or update of a tenant-owned row through the ORM gets its
`workspace_id` from its tenant when it has none, and is refused when it has a
different one. Audit entries about a tenant always carry its workspace. One
`before_flush` listener does this for every TenantOwned model, with one
statement per flush for all the tenants involved.
"""
from __future__ import annotations

from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session

from .models import AuditLog, Tenant, TenantOwned


class WorkspaceMismatchError(ValueError):
    """A tenant-owned row names a workspace that is not its tenant's."""


def _needs_check(obj) -> bool:
    if isinstance(obj, TenantOwned):
        return True
    return isinstance(obj, AuditLog) and obj.tenant_id is not None


def _changed(obj) -> bool:
    state = inspect(obj)
    return state.pending or any(state.attrs[name].history.has_changes() for name in ("tenant_id", "workspace_id"))


@event.listens_for(Session, "before_flush")
def bind_rows_to_their_tenants_workspace(session: Session, flush_context, instances) -> None:
    rows = [obj for obj in (*session.new, *session.dirty) if _needs_check(obj) and _changed(obj)]
    if not rows:
        return
    tenant_ids = {obj.tenant_id for obj in rows if obj.tenant_id is not None}
    with session.no_autoflush:
        workspace_of = dict(session.execute(
            select(Tenant.id, Tenant.workspace_id).where(Tenant.id.in_(tenant_ids))
        ).all()) if tenant_ids else {}
    for obj in rows:
        if obj.tenant_id is None:
            continue  # the database refuses a missing tenant_id with its own NOT NULL
        expected = workspace_of.get(obj.tenant_id)
        if expected is None:
            raise WorkspaceMismatchError(f"{type(obj).__name__} refers to a tenant that does not exist.")
        if obj.workspace_id is None:
            obj.workspace_id = expected
        elif obj.workspace_id != expected:
            raise WorkspaceMismatchError(
                f"{type(obj).__name__} names workspace {obj.workspace_id}, but its tenant belongs to "
                f"workspace {expected}."
            )
