"""Blueprints of workspace-wide pages (/admin/w/<slug>/...): one guard for all of them.

Every such blueprint takes the slug out of the URL, puts it back into links it builds, and
before each request requires membership of that workspace (app.access.require_workspace_member:
404 for anyone else, and the workspace becomes current). Role checks stay in the views
through app.access.require_role.
"""
from __future__ import annotations

from flask import Blueprint, g
from flask_login import login_required

from app.access import require_workspace_member


def workspace_blueprint(name: str, import_name: str, path: str = "") -> Blueprint:
    bp = Blueprint(name, import_name, url_prefix=f"/admin/w/<slug>{path}")

    @bp.url_value_preprocessor
    def take_slug(endpoint, values):
        g.workspace_slug = values.pop("slug", None) if values else None

    @bp.url_defaults
    def add_slug(endpoint, values):
        access = g.get("workspace_access")
        if "slug" not in values and access is not None:
            values["slug"] = access.workspace.slug

    @bp.before_request
    @login_required
    def require_membership():
        require_workspace_member(g.workspace_slug or "")

    return bp
