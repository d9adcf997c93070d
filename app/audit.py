"""Audit entries: who did what, where, to what."""
from __future__ import annotations

from typing import Any

from flask import has_request_context, request

from .extensions import db
from .models import AuditLog, Tenant


def record_audit(
    action: str,
    *,
    actor=None,
    workspace=None,
    tenant: Tenant | None = None,
    target_type: str | None = None,
    target_id: Any = None,
    details: dict[str, Any] | None = None,
) -> AuditLog:
    """Add an audit entry to the current transaction (the caller commits).

    An entry about a tenant always carries that tenant's workspace.
    """
    workspace_id = workspace.id if workspace is not None else None
    if tenant is not None:
        workspace_id = tenant.workspace_id
    entry = AuditLog(
        action=action,
        actor_user_id=getattr(actor, "id", None),
        workspace_id=workspace_id,
        tenant_id=tenant.id if tenant is not None else None,
        target_type=target_type,
        target_id=str(target_id) if target_id is not None else None,
        details=details or {},
        ip_address=request.remote_addr if has_request_context() else None,
    )
    db.session.add(entry)
    return entry
