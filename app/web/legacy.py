"""/admin/managed-tenants: the legacy URL space. It never renders a page; it only redirects.

A deep link to one tenant (numeric id or external id, with or without a trailing
section) resolves only within the current workspace; any other tenant is a 404.
What follows the section (a record id, `/edit`) and the query string are kept when
they lead to a page that exists (a tenant route, and a record of this tenant);
otherwise the link lands on the section's list.
"""
from __future__ import annotations

from flask import Blueprint, abort, redirect, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from app.access import current_workspace_id, parse_external_id
from app.extensions import db
from app.models import BackupSchedule, BackupSet, InventoryItem, Policy, RestoreRun, Tenant, WorkspaceMembership
from app.web.shell import current_query_suffix, redirect_to_current_landing
from app.web.tenant.tenant_pages import tenant_page_match
from app.validation import parse_database_id

bp = Blueprint("legacy", __name__, url_prefix="/admin/managed-tenants")

# Legacy section names -> today's tenant endpoints.
LEGACY_SECTIONS = {
    "": "tenant.dashboard", "dashboard": "tenant.dashboard", "view": "tenant.dashboard", "edit": "tenant.dashboard",
    "policies": "tenant.policies", "backups": "tenant.backups", "backup-sets": "tenant.backups",
    "restore-runs": "tenant.restore_runs", "restores": "tenant.restore_runs",
    "backup-schedules": "tenant.schedules", "schedules": "tenant.schedules",
    "inventory": "tenant.inventory", "groups": "tenant.groups", "findings": "tenant.findings",
    "drift": "tenant.findings", "roles": "tenant.roles", "role-definitions": "tenant.roles",
    "permissions": "tenant.permissions", "audit": "tenant.audit_log",
}
COLLECTION_WORDS = {"", "create", "new", "index"}
# The record a tenant route's id argument names: it must be one of the tenant's for the deep link to be kept.
RECORD_OF_ARGUMENT = {"policy_id": Policy, "backup_set_id": BackupSet, "restore_run_id": RestoreRun,
                      "schedule_id": BackupSchedule, "item_id": InventoryItem}





@bp.before_request
@login_required
def require_sign_in():
    """Signed-out visitors go to sign-in and come back here after it."""


def _tenant_in_current_workspace(reference: str) -> Tenant | None:
    workspace_id = current_workspace_id()
    if workspace_id is None:
        return None
    statement = (select(Tenant)
                 .join(WorkspaceMembership, (WorkspaceMembership.workspace_id == Tenant.workspace_id)
                       & (WorkspaceMembership.user_id == current_user.id))
                 .where(Tenant.workspace_id == workspace_id))
    external_id = parse_external_id(reference)
    if external_id is not None:
        return db.session.scalar(statement.where(Tenant.external_id == external_id))
    tenant_id = parse_database_id(reference)
    if tenant_id is not None:
        return db.session.scalar(statement.where(Tenant.id == tenant_id))
    return None


@bp.get("", defaults={"rest": ""}, strict_slashes=False)
@bp.get("/<path:rest>")
def redirect_legacy(rest: str):
    segments = [segment for segment in rest.split("/") if segment]
    if not segments or segments[0] in ("", "index"):
        landing = redirect_to_current_landing()
        if "/admin/w/" in landing.location:
            landing.location += current_query_suffix()  # the portfolio's search, sort and page
        return landing
    if segments[0] in COLLECTION_WORDS:
        return redirect_to_current_landing()
    reference, section = segments[0], (segments[1] if len(segments) > 1 else "")
    if parse_database_id(reference) is None and parse_external_id(reference) is None:
        return redirect_to_current_landing()
    tenant = _tenant_in_current_workspace(reference)
    if tenant is None:
        abort(404)
    endpoint = LEGACY_SECTIONS.get(section, "tenant.dashboard")
    section_url = url_for(endpoint, tenant_ext=str(tenant.external_id))
    deep_url = "/".join([section_url, *segments[2:]])
    if _is_page_of(tenant, deep_url):
        return redirect(deep_url + current_query_suffix())
    return redirect(section_url)


def _is_page_of(tenant: Tenant, path: str) -> bool:
    """Whether `path` is a tenant page (GET) whose records, if it names any, are this tenant's."""
    match = tenant_page_match(path)
    if match is None:
        return False
    for name, value in match[1].items():
        model = RECORD_OF_ARGUMENT.get(name)
        if model is not None and db.session.scalar(
                select(model.id).where(model.id == value, model.tenant_id == tenant.id)) is None:
            return False
    return True
