"""Who may see what: the workspace context and the tenant rule, in one place.

The hard rule for /admin/t/<tenant>: served only when the session's current
workspace is set, the tenant belongs to it, and the user is a member of it.
Anything else is the same 404 (no oracle); the reason goes to the log.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from flask import abort, current_app, flash, g, redirect, request, session, url_for
from flask_login import current_user
from sqlalchemy import select, text

from .extensions import db
from .models import ROLES, Tenant, Workspace, WorkspaceMembership
from .validation import parse_guid

SESSION_WORKSPACE_KEY = "current_workspace_id"

# Each role can do what the roles after it can.
ROLE_RANK = {role: rank for rank, role in enumerate(reversed(ROLES))}  # readonly 0 … owner 3


@dataclass(frozen=True)
class WorkspaceAccess:
    workspace: Workspace
    role: str

    def allows(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


@dataclass(frozen=True)
class TenantAccess(WorkspaceAccess):
    tenant: Tenant


def current_workspace_id() -> int | None:
    value = session.get(SESSION_WORKSPACE_KEY)
    return value if isinstance(value, int) else None


def acting_workspace_id() -> int | None:
    """The workspace this request works in: the one its guard resolved, else the session's current one."""
    if "acting_workspace_id" in g:
        return g.acting_workspace_id
    return current_workspace_id()


def act_in_workspace(workspace_id: int) -> None:
    """From now on this request works in `workspace_id`: row-level security shows its rows.

    Set for the transaction in progress here, and for later ones of the request by the
    after_begin listener in app.row_security.
    """
    g.acting_workspace_id = workspace_id
    db.session.execute(text("SELECT set_config('app.current_workspace_id', :w, true)"), {"w": str(workspace_id)})


def act_as_user(user_id: int) -> None:
    """At sign-in, before the session knows the user: their own rows become visible."""
    db.session.execute(text("SELECT set_config('app.current_user_id', :u, true)"), {"u": str(user_id)})


def set_current_workspace(workspace: Workspace) -> None:
    """Make `workspace` current for this session and remember it for the next sign-in."""
    if session.get(SESSION_WORKSPACE_KEY) != workspace.id:
        session[SESSION_WORKSPACE_KEY] = workspace.id
    if current_user.last_workspace_id != workspace.id:
        current_user.last_workspace_id = workspace.id
        db.session.commit()


def clear_current_workspace() -> None:
    session.pop(SESSION_WORKSPACE_KEY, None)


def membership_query(user_id: int):
    return (
        select(Workspace, WorkspaceMembership.role)
        .join(WorkspaceMembership, WorkspaceMembership.workspace_id == Workspace.id)
        .where(WorkspaceMembership.user_id == user_id)
    )


def workspace_access_by_slug(slug: str) -> WorkspaceAccess | None:
    if len(slug) > 63:
        return None
    row = db.session.execute(membership_query(current_user.id).where(Workspace.slug == slug)).first()
    return WorkspaceAccess(row[0], row[1]) if row else None


def workspace_access_by_id(workspace_id: int) -> WorkspaceAccess | None:
    row = db.session.execute(membership_query(current_user.id).where(Workspace.id == workspace_id)).first()
    return WorkspaceAccess(row[0], row[1]) if row else None


def restore_workspace_at_sign_in(user) -> None:
    """At sign-in, the last workspace becomes current again if the user is still a member."""
    if user.last_workspace_id is None:
        return
    act_as_user(user.id)  # this transaction began before the session knew the user
    still_member = db.session.scalar(
        select(WorkspaceMembership.id).where(
            WorkspaceMembership.user_id == user.id,
            WorkspaceMembership.workspace_id == user.last_workspace_id,
        )
    )
    workspace = db.session.get(Workspace, user.last_workspace_id) if still_member is not None else None
    if workspace is not None and (not workspace.require_mfa or session_is_strong()):
        session[SESSION_WORKSPACE_KEY] = user.last_workspace_id


def session_is_strong() -> bool:
    """This session was proved with more than a password (a second factor, a passkey, Microsoft)."""
    row = getattr(current_user, "current_session", None)
    return bool(row is not None and row.strong)


def require_strong_session(workspace: Workspace) -> None:
    """A workspace that requires MFA is served only to sessions proved with more than a password.

    Called by every guard that lets a request into a workspace (require_workspace_member,
    require_tenant_access, the workspace management blueprint, the consent callback), after
    membership is known, so a stranger still gets the same 404. A member whose session is not
    strong is sent to prove a factor they have, or to enrol one; the workspace stops being
    current so that no page shows its data (the tenant switcher) meanwhile.
    """
    if not workspace.require_mfa or session_is_strong():
        return
    current_app.logger.info("Workspace %s requires MFA; user %s's session is password-only", workspace.id,
                            current_user.id)
    clear_current_workspace()
    next_url = request.full_path.rstrip("?") if request.method == "GET" else None
    if current_user.has_second_factor:
        flash(f"{workspace.name} requires multi-factor sign-in. Confirm it is you with your second factor.", "info")
        target = url_for("mfa.verify", next=next_url)
    else:
        flash(f"{workspace.name} requires members to use multi-factor authentication or Microsoft sign-in. Set up "
              "an authenticator app or a passkey to continue.", "warning")
        target = url_for("mfa.security", next=next_url)
    abort(redirect(target))


def require_workspace_member(slug: str) -> WorkspaceAccess:
    """For /admin/w/<slug>: the user's membership, or 404. Makes the workspace current."""
    access = workspace_access_by_slug(slug)
    if access is None:
        current_app.logger.info("404 workspace %r for user %s: not a member or unknown", slug[:80], current_user.id)
        abort(404)
    require_strong_session(access.workspace)
    g.workspace_access = access
    act_in_workspace(access.workspace.id)
    set_current_workspace(access.workspace)
    return access


def parse_external_id(value: str) -> uuid.UUID | None:
    return parse_guid(value)


def require_tenant_access(external_id: str) -> TenantAccess:
    """For /admin/t/<external_id>: tenant, workspace and role in one query, or 404."""
    tenant_uuid = parse_external_id(external_id)
    workspace_id = current_workspace_id()
    row = None
    if tenant_uuid is not None and workspace_id is not None:
        row = db.session.execute(
            select(Tenant, Workspace, WorkspaceMembership.role)
            .join(Workspace, Workspace.id == Tenant.workspace_id)
            .join(
                WorkspaceMembership,
                (WorkspaceMembership.workspace_id == Workspace.id)
                & (WorkspaceMembership.user_id == current_user.id),
            )
            .where(Tenant.external_id == tenant_uuid, Tenant.workspace_id == workspace_id)
        ).first()
    if row is None:
        current_app.logger.info(
            "404 tenant %r for user %s: %s", external_id[:80], current_user.id,
            _denial_reason(tenant_uuid, workspace_id),
        )
        abort(404)
    tenant, workspace, role = row
    require_strong_session(workspace)
    g.acting_workspace_id = workspace.id
    access = TenantAccess(workspace=workspace, role=role, tenant=tenant)
    g.workspace_access = access
    g.tenant_access = access
    return access


def _denial_reason(tenant_uuid: uuid.UUID | None, workspace_id: int | None) -> str:
    """Why a tenant page was refused, for operators' logs only (never shown).

    Row-level security hides other workspaces' tenants from this request too, so an
    unknown tenant and another workspace's tenant read the same here, as they should.
    """
    if tenant_uuid is None:
        return "malformed tenant id"
    if workspace_id is None:
        return "no current workspace"
    member = db.session.scalar(select(WorkspaceMembership.id).where(
        WorkspaceMembership.workspace_id == workspace_id, WorkspaceMembership.user_id == current_user.id))
    if member is None:
        return f"user is not a member of the current workspace {workspace_id}"
    return f"tenant is not in the current workspace {workspace_id} (unknown, or another workspace's)"


def require_role(role: str, action: str) -> None:
    """403 with a clear message when the member's role is too small for `action`."""
    access: WorkspaceAccess | None = g.get("workspace_access")
    if access is None:
        abort(404)
    if not access.allows(role):
        article = "an" if role[0] in "aeiou" else "a"
        abort(403, f"Only {article} {role} or higher can {action}; your role in {access.workspace.name} is {access.role}.")


def require_platform_admin(action: str) -> None:
    """403 with a clear message unless the signed-in user is a platform administrator.

    Administrators are platform-wide (users.is_admin), not a workspace role: they create
    workspaces and manage other administrators. Checked before anything about the request's
    data is looked at, so a refusal says nothing about what exists (no "slug is taken").
    """
    if not (current_user.is_authenticated and current_user.is_admin):
        abort(403, f"Only a platform administrator can {action}. Ask one of your TenantAtlas administrators.")
