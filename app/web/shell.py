"""The signed-in shell: where /admin leads, and what every layout page shows in its bars."""
from __future__ import annotations

import zoneinfo
from datetime import datetime, timezone
from urllib.parse import urlencode

from flask import Blueprint, current_app, g, redirect, request, url_for
from flask_login import current_user, login_required

from app.access import current_workspace_id, membership_query, workspace_access_by_id
from app.audit import audit_change
from app.extensions import db
from app.models import Workspace
from app.web.workspace.switcher import switcher_marks
from app.validation import known_timezones

bp = Blueprint("shell", __name__)


@bp.get("/")
@login_required
def root():
    return redirect(url_for("shell.home"))


def redirect_to_current_landing():
    """The current workspace's landing, or the workspace list when none is current (or left)."""
    workspace_id = current_workspace_id()
    access = workspace_access_by_id(workspace_id) if workspace_id is not None else None
    if access is None:
        return redirect(url_for("workspaces.index"))
    return redirect(url_for("portfolio.managed_tenants", slug=access.workspace.slug))


@bp.get("/admin")
@login_required
def home():
    return redirect_to_current_landing()


def nav_workspaces():
    """The workspace switcher's entries: the user's workspaces (one statement, cached per request)."""
    if "nav_workspaces" not in g:
        g.nav_workspaces = db.session.execute(
            membership_query(current_user.id).order_by(Workspace.name)).all()
    return g.nav_workspaces


def nav_switcher_marks():
    """(pinned, recent) tenants of the workspace on screen, for the tenant switcher."""
    access = g.get("workspace_access")
    if access is None:
        return [], []
    if "nav_switcher_marks" not in g:
        g.nav_switcher_marks = switcher_marks(current_user.id, access.workspace.id)
    return g.nav_switcher_marks


def switch_target(tenant_ext: str) -> str:
    """Where choosing `tenant_ext` in the switcher goes: the same section on a tenant page, else its dashboard."""
    from app.web.tenant.tenant_pages import section_endpoint

    endpoint = request.endpoint or ""
    target = section_endpoint(endpoint) if endpoint.startswith("tenant.") else "tenant.dashboard"
    return url_for(target, tenant_ext=tenant_ext)


def current_query_suffix() -> str:
    """"?" and this request's query arguments, re-encoded (for redirects that keep them), or ""."""
    return "?" + urlencode(list(request.args.items(multi=True))) if request.args else ""


@bp.app_template_global()
def current_url(**query) -> str:
    """This page's URL with other query arguments (list pages' sort, search and paging links)."""
    return url_for(request.endpoint, **(request.view_args or {}), **query)


def user_timezone() -> zoneinfo.ZoneInfo | timezone:
    """The signed-in user's timezone (their setting), else UTC; a name no longer known reads as UTC."""
    name = getattr(current_user, "timezone", None) if current_user and current_user.is_authenticated else None
    if name and name in known_timezones():
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    return timezone.utc


bp.add_app_template_global(audit_change, "audit_change")


@bp.app_template_filter("in_user_timezone")
def in_user_timezone(value: datetime) -> datetime:
    """`value` in the user's timezone (a naive value is taken as UTC, as the database stores it)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(user_timezone())


@bp.app_context_processor
def shell_context():
    from app.web.workspace.portfolio import tenant_permalink_of_this_page
    from app.web.tenant.tenant_pages import SECTIONS, section_endpoint

    return {
        "nav_workspaces": nav_workspaces,
        "nav_switcher_marks": nav_switcher_marks,
        "switch_target": switch_target,
        "tenant_sections": SECTIONS,
        "current_section": section_endpoint(request.endpoint) if (request.endpoint or "").startswith("tenant.") else None,
        "workspace_access": g.get("workspace_access"),
        "tenant_access": g.get("tenant_access"),
        "graph_simulated": current_app.extensions["graph_settings"].simulated,
        "tenant_permalink": tenant_permalink_of_this_page,
    }
