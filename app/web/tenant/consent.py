"""/admin/consent/callback: where the identity platform sends the browser back, twice.

One fixed path (the redirect URI registered on the Entra app) takes both answers of a
connection: the admin consent answer, then the sign-in of the administrator that proves
it (app.sync.connection). Whatever the answer, it is audited with the real actor;
nothing is accepted that app.sync.connection does not prove.
"""
from __future__ import annotations

from datetime import datetime, timezone

from flask import Blueprint, abort, current_app, flash, redirect, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select
from requests import RequestException
from sqlalchemy.exc import IntegrityError

from app.access import act_in_workspace, require_strong_session, set_current_workspace, workspace_access_by_id
from app.audit import record_audit
from app.web.errors import render_error
from app.extensions import db
from app.graph.errors import ConsentError
from app.models import Tenant
from app.sync.connection import (ConsentRefused, complete_connection, consume_nonce, finish_proof, read_state, same_tenant,
                              start_proof)
from app.alerts.rules import queue_tenant_connected
from app.sync.runner import request_sync

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
    require_strong_session(access.workspace)
    act_in_workspace(access.workspace.id)
    tenant = db.session.scalar(select(Tenant).where(Tenant.workspace_id == access.workspace.id,
                                                    Tenant.external_id == state.tenant_external_id))
    if tenant is None:
        abort(404)

    def refuse(message: str, reason: str, status: int = 400):
        tenant_now = db.session.get(Tenant, tenant_id)
        record_audit("tenant.connect_refused", actor=current_user, tenant=tenant_now, target_type="tenant",
                     target_id=tenant_id, target_name=tenant_name, details={"reason": reason})
        db.session.commit()
        return render_error(status, message)

    tenant_id, tenant_name = tenant.id, tenant.name

    if state.proof:
        return _connect_after_proof(access, tenant, refuse)
    try:
        consume_nonce(state, tenant)
    except ConsentRefused as refused:
        db.session.rollback()
        return refuse(refused.message, refused.audit_reason)
    db.session.commit()  # used, whatever happens next: an answer is never worth a second try
    if refused := _cannot_connect(access, tenant):
        return refuse(*refused)
    if request.args.get("error"):
        error, description = _short(request.args.get("error"), 64), _short(request.args.get("error_description"))
        return refuse(f"Consent was not granted for {tenant.name}: {error}. {description}".strip(),
                      f"consent error: {error}")
    if not same_tenant(request.args.get("tenant"), tenant):
        return refuse(f"Consent was granted in another tenant ({_short(request.args.get('tenant'), 40) or 'none'}), "
                      f"not in {tenant.name} ({tenant.external_id}). Sign in to the customer's tenant and try again.",
                      "tenant mismatch")
    # The answer above is not signed by Entra: the admin who consented now signs in to prove it.
    try:
        target = start_proof(tenant, state, url_for("consent.callback", _external=True))
    except (ConsentError, ValueError, RequestException) as error:
        return refuse(f"The sign-in that proves the consent could not start for {tenant.name}: "
                      f"{getattr(error, 'message', None) or type(error).__name__}", "proof not started")
    record_audit("tenant.consent_answered", actor=current_user, tenant=tenant, target_type="tenant",
                 target_id=tenant.id, target_name=tenant.name,
                 details={"before": None, "after": {"admin_consent": "answered", "next": "administrator sign-in"}})
    db.session.commit()
    return redirect(target)


def _cannot_connect(access, tenant) -> tuple[str, str, int] | None:
    if tenant.status == "archived":
        return f"{tenant.name} is archived; unarchive it before connecting.", "tenant archived", 400
    if not access.allows("manager"):
        return (f"Only a manager or higher can connect a tenant; your role in {access.workspace.name} is "
                f"{access.role}.", "role too small", 403)
    return None


def _connect_after_proof(access, tenant: Tenant, refuse):
    """The second answer: the administrator's sign-in. Only now is the tenant connected."""
    if refused := _cannot_connect(access, tenant):
        return refuse(*refused)
    try:
        claims = finish_proof(tenant, request.args.to_dict())
    except ConsentRefused as refused:
        return refuse(refused.message, refused.audit_reason)
    except (ConsentError, RequestException) as error:
        return refuse(f"The sign-in to {tenant.name} could not be verified: "
                      f"{getattr(error, 'message', None) or type(error).__name__}", "proof token error")
    admin = {"name": _short(str(claims.get("preferred_username") or claims.get("name") or ""), 120),
             "oid": _short(str(claims.get("oid") or ""), 64)}
    try:
        missing = complete_connection(tenant, current_user.id)
        db.session.flush()
    except ConsentError as error:
        return refuse(f"Consent was recorded, but no token could be had for {tenant.name}: {error.message}",
                      f"token error: {error.kind}")
    except IntegrityError:  # ux_tenants_verified_external_id: proved already, in another workspace
        db.session.rollback()
        act_in_workspace(access.workspace.id)
        return refuse(f"{tenant.name} ({tenant.external_id}) is already connected to TenantAtlas in another "
                      "workspace. A tenant is managed from one workspace at a time; ask the MSP that manages it, "
                      "or TenantAtlas support, to release it first.", "verified elsewhere", 409)
    record_audit("tenant.connect", actor=current_user, tenant=tenant, target_type="tenant", target_id=tenant.id,
                 target_name=tenant.name,
                 details={"after": {"connection": tenant.connection_status, "consented_by": admin,
                                    "permissions": tenant.granted_permissions, "missing": missing}})
    request_sync(tenant, "connect", current_user.id)
    queue_tenant_connected(tenant, datetime.now(timezone.utc))  # alert rules "a tenant newly connected" (sent by the worker)
    set_current_workspace(access.workspace)
    db.session.commit()
    if missing:
        flash(f"{tenant.name} is connected, but {len(missing)} permission(s) needed for syncing are missing: "
              f"{', '.join(missing)}. Grant them on the Entra app and connect again.", "warning")
    else:
        flash(f"{tenant.name} is connected. The first sync is queued.", "success")
    return redirect(url_for("tenant.sync", tenant_ext=str(tenant.external_id)))
