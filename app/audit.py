"""Audit entries: who did what, where, to what; and how an entry reads on the audit pages."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flask import has_request_context, request

from sqlalchemy import text

from .extensions import db
from .models import AuditLog, Tenant

TARGET_NAME_LENGTH = 300


def record_audit(
    action: str,
    *,
    actor=None,
    workspace=None,
    tenant: Tenant | None = None,
    target_type: str | None = None,
    target_id: Any = None,
    target_name: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditLog:
    """Add an audit entry to the current transaction (the caller commits).

    An entry about a tenant always carries that tenant's workspace. `target_name` is the
    target's name now (a tenant's, a user's, a schedule's…): kept in the entry, so that it
    still reads once the target is renamed or deleted.
    """
    workspace_id = workspace.id if workspace is not None else None
    if tenant is not None:
        workspace_id = tenant.workspace_id
    values = dict(
        action=action,
        actor_user_id=getattr(actor, "id", None),
        workspace_id=workspace_id,
        tenant_id=tenant.id if tenant is not None else None,
        target_type=target_type,
        target_id=str(target_id) if target_id is not None else None,
        target_name=target_name[:TARGET_NAME_LENGTH] if target_name else None,
        details=details or {},
        ip_address=request.remote_addr if has_request_context() else None,
    )
    if workspace_id is None and values["actor_user_id"] is None:
        # Nobody's and no workspace's (a refused sign-in by someone unknown): row-level security
        # lets the web app's role write such an entry but not read it back, so no RETURNING.
        db.session.execute(text(
            "INSERT INTO audit_logs (action, target_type, target_id, target_name, details, ip_address) "
            "VALUES (:action, :target_type, :target_id, :target_name, CAST(:details AS jsonb), CAST(:ip AS inet))"),
            {**{key: values[key] for key in ("action", "target_type", "target_id", "target_name")},
             "details": json.dumps(values["details"], default=str), "ip": values["ip_address"]})
        return AuditLog(**values)
    entry = AuditLog(**values)
    db.session.add(entry)
    return entry


# --- reading an entry ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditChange:
    """An entry's details as people read them: what changed (before → after), and anything else."""

    changes: list[tuple[str, str, str]]  # (field, before, after)
    other: list[tuple[str, str]]  # (key, value)


def _shown(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return str(value)


def audit_change(details: Any) -> AuditChange:
    """Split `details` into before → after rows (one per field in either side) and other key/values.

    {"before": {"status": "open"}, "after": {"status": "acknowledged", "note": "…"}} gives
    status open → acknowledged and note — → "…". A side that is not an object (an older
    entry's {"before": null, "after": "operator"}) is one row named "value".
    """
    if not isinstance(details, dict):
        return AuditChange([], [("details", _shown(details))] if details else [])
    other = [(str(key), _shown(value)) for key, value in details.items() if key not in ("before", "after")]
    if "before" not in details and "after" not in details:
        return AuditChange([], other)
    before, after = details.get("before"), details.get("after")
    if isinstance(before, dict) or isinstance(after, dict):
        before_map = before if isinstance(before, dict) else {}
        after_map = after if isinstance(after, dict) else {}
        fields = list(dict.fromkeys([*before_map, *after_map]))
        changes = [(str(field), _shown(before_map.get(field)), _shown(after_map.get(field))) for field in fields]
    else:
        changes = [("value", _shown(before), _shown(after))]
    return AuditChange(changes, other)

