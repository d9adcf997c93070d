"""The signed-in admin shell: the overview and the sidebar's sections."""
from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, url_for
from flask_login import current_user, login_required
from sqlalchemy import func, select

from .extensions import db
from .models import Tenant, Workspace, WorkspaceMembership

bp = Blueprint("shell", __name__)

# The tenant areas of the sidebar: (endpoint argument, label, Bootstrap icon).
SECTIONS = (
    ("policies", "Policies", "shield-check"),
    ("backups", "Backups", "archive"),
    ("restore-runs", "Restore runs", "arrow-counterclockwise"),
    ("schedules", "Backup schedules", "calendar-check"),
    ("inventory", "Inventory", "boxes"),
    ("groups", "Groups", "people"),
    ("findings", "Findings", "exclamation-triangle"),
    ("roles", "Role definitions", "person-badge"),
    ("permissions", "Permissions", "key"),
    ("audit", "Audit log", "journal-text"),
)
SECTION_LABELS = {slug: label for slug, label, _ in SECTIONS}


@bp.app_context_processor
def shell_context():
    return {"sidebar_sections": SECTIONS}


@bp.before_request
@login_required
def require_sign_in():
    """Every page of the shell needs a signed-in user."""


def my_workspaces_with_counts(user_id: int):
    """The user's workspaces, their role and tenant counts, in one statement."""
    tenant_counts = (
        select(
            Tenant.workspace_id,
            func.count().filter(Tenant.status == "active").label("active"),
            func.count().filter(Tenant.status == "archived").label("archived"),
        )
        .group_by(Tenant.workspace_id)
        .subquery()
    )
    return db.session.execute(
        select(
            Workspace,
            WorkspaceMembership.role,
            func.coalesce(tenant_counts.c.active, 0).label("active_tenants"),
            func.coalesce(tenant_counts.c.archived, 0).label("archived_tenants"),
        )
        .join(WorkspaceMembership, WorkspaceMembership.workspace_id == Workspace.id)
        .outerjoin(tenant_counts, tenant_counts.c.workspace_id == Workspace.id)
        .where(WorkspaceMembership.user_id == user_id)
        .order_by(Workspace.name)
    ).all()


@bp.get("/")
def root():
    return redirect(url_for("shell.home"))


@bp.get("/admin")
def home():
    return render_template("shell/home.html", workspaces=my_workspaces_with_counts(current_user.id))


@bp.get("/admin/sections/<section>")
def section(section: str):
    if section not in SECTION_LABELS:
        abort(404)
    return render_template("shell/section.html", section=section, label=SECTION_LABELS[section])
