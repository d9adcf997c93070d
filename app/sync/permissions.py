"""Which application permissions a tenant granted, against what each feature needs.

Read from the `roles` claim of the app-only token (app.graph.credentials). A
ReadWrite permission includes its Read one, as Microsoft Graph documents for the
DeviceManagement* permissions, so "DeviceManagementConfiguration.Read.All" is
satisfied by either.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select

from app.extensions import db
from app.graph.families import required_permissions
from app.models import Tenant, TenantPermission

READ, WRITE = "read", "write"


def satisfied(permission: str, granted: set[str]) -> bool:
    if permission in granted:
        return True
    return ".Read." in permission and permission.replace(".Read.", ".ReadWrite.") in granted


def permission_rows(granted: set[str]) -> list[tuple[str, str, str]]:
    """(permission, tier, "granted" | "missing") for every permission a feature needs."""
    rows, seen = [], set()
    for tier in (READ, WRITE):
        for name in required_permissions(tier):
            if name not in seen:
                seen.add(name)
                rows.append((name, tier, "granted" if satisfied(name, granted) else "missing"))
    return rows


def missing_read_permissions(granted: set[str]) -> list[str]:
    return [name for name in required_permissions(READ) if not satisfied(name, granted)]


def record_permissions(tenant: Tenant, granted: set[str], now: datetime) -> list[str]:
    """Store what the token granted; the tenant's permission rows become the real comparison.

    Returns the read-tier permissions still missing (syncing needs them).
    """
    tenant.granted_permissions = sorted(granted)
    tenant.permissions_checked_at = now
    wanted = {name: status for name, _tier, status in permission_rows(granted)}
    existing = {row.permission_name: row for row in db.session.scalars(
        select(TenantPermission).where(TenantPermission.tenant_id == tenant.id))}
    stale = [name for name in existing if name not in wanted]
    if stale:
        db.session.execute(delete(TenantPermission).where(TenantPermission.tenant_id == tenant.id,
                                                          TenantPermission.permission_name.in_(stale)))
    for name, status in wanted.items():
        row = existing.get(name)
        if row is None:
            db.session.add(TenantPermission(tenant_id=tenant.id, workspace_id=tenant.workspace_id,
                                            permission_name=name, status=status, checked_at=now))
        elif row.status != status:  # unchanged rows are not rewritten (Tenant.permissions_checked_at says when)
            row.status, row.checked_at = status, now
    missing = missing_read_permissions(granted)
    tenant.connection_status = "missing_permissions" if missing else "connected"
    return missing
