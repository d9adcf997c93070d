"""/admin/consent/callback: where the admin consent endpoint sends the browser back.

One fixed path (the redirect URI registered on the Entra app). Whatever the answer,
it is audited with the real actor; nothing is accepted that app.sync.connection
does not prove (signed state, this user, used once, the same tenant).
"""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .access import act_in_workspace, set_current_workspace, workspace_access_by_id
from .audit import record_audit
from .errors import render_error
from .extensions import db
from .graph.errors import ConsentError
from .models import Tenant
from .sync.connection import ConsentRefused, complete_connection, consume_nonce, read_state, same_tenant
from .sync.runner import request_sync

bp = Blueprint("consent", __name__, url_prefix="/admin/consent")


def _short(value: str | None, limit: int = 300) -> str:
    return (value or "").replace("\r", " ").replace("\n", " ")[:limit]


@bp.get("/callback")
@login_required
def callback():
    try:
        state = read_state(request.args.get("state", ""))
    except ConsentRefused as refused:
        current_app.logger.info("consent callback refused for user %s: %s", current_user.id, refused.audit_reason)
        return render_error(400, refused.message)
    access = workspace_access_by_id(state.workspace_id)
    if state.user_id != current_user.id or access is None:
        current_app.logger.info("consent callback of user %s for another user or workspace", current_user.id)
        return render_error(400, "This consent answer was started by another user or in a workspace you are not in. "
                                 "Start again from the tenant's page.")
    act_in_workspace(access.workspace.id)
    tenant = db.session.scalar(select(Tenant).where(Tenant.workspace_id == access.workspace.id,
                                                    Tenant.external_id == state.tenant_external_id))
    if tenant is None:
        abort(404)

    def refuse(message: str, reason: str, status: int = 400):
        record_audit("tenant.connect_refused", actor=current_user, tenant=tenant, target_type="tenant",
                     target_id=tenant.id, details={"reason": reason})
        db.session.commit()
        return render_error(status, message)

    try:
        consume_nonce(state, tenant)
    except ConsentRefused as refused:
        db.session.rollback()
        return refuse(refused.message, refused.audit_reason)
    db.session.commit()  # used, whatever happens next: an answer is never worth a second try
    if tenant.status == "archived":
        return refuse(f"{tenant.name} is archived; unarchive it before connecting.", "tenant archived")
    if not access.allows("manager"):
        return refuse(f"Only a manager or higher can connect a tenant; your role in {access.workspace.name} is "
                      f"{access.role}.", "role too small", 403)
    if request.args.get("error"):
        error, description = _short(request.args.get("error"), 64), _short(request.args.get("error_description"))
        return refuse(f"Consent was not granted for {tenant.name}: {error}. {description}".strip(),
                      f"consent error: {error}")
    if not same_tenant(request.args.get("tenant"), tenant):
        return refuse(f"Consent was granted in another tenant ({_short(request.args.get('tenant'), 40) or 'none'}), "
                      f"not in {tenant.name} ({tenant.external_id}). Sign in to the customer's tenant and try again.",
                      "tenant mismatch")
    try:
        missing = complete_connection(tenant, current_user.id)
        db.session.flush()
    except ConsentError as error:
        return refuse(f"Consent was recorded, but no token could be had for {tenant.name}: {error.message}",
                      f"token error: {error.kind}")
    except IntegrityError:  # ux_tenants_verified_external_id: proved already, in another workspace
        db.session.rollback()
        act_in_workspace(access.workspace.id)
        tenant = db.session.get(Tenant, tenant.id)
        return refuse(f"{tenant.name} ({tenant.external_id}) is already connected to TenantAtlas in another "
                      "workspace. A tenant is managed from one workspace at a time; ask the MSP that manages it, "
                      "or TenantAtlas support, to release it first.", "verified elsewhere", 409)
    record_audit("tenant.connect", actor=current_user, tenant=tenant, target_type="tenant", target_id=tenant.id,
                 details={"after": {"connection": tenant.connection_status,
                                    "permissions": tenant.granted_permissions, "missing": missing}})
    request_sync(tenant, "connect", current_user.id)
    set_current_workspace(access.workspace)
    db.session.commit()
    if missing:
        flash(f"{tenant.name} is connected, but {len(missing)} permission(s) needed for syncing are missing: "
              f"{', '.join(missing)}. Grant them on the Entra app and connect again.", "warning")
    else:
        flash(f"{tenant.name} is connected. The first sync is queued.", "success")
    return redirect(url_for("tenant.sync", tenant_ext=str(tenant.external_id)))
