"""/admin/workspaces: tenantless workspace management (list, create, switch, settings, members)."""
from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import BigInteger, column, func, select

from app.access import (
    act_in_workspace,
    require_platform_admin,
    require_strong_session,
    session_is_strong,
    require_role,
    set_current_workspace,
    workspace_access_by_id,
    workspace_access_by_slug,
)
from app.audit import record_audit
from app.extensions import db
from app.web.forms import (
    ActionForm,
    InvitationForm,
    MemberRoleForm,
    WorkspaceCreateForm,
    WorkspaceRenameForm,
    WorkspaceSwitchForm,
)
from app.web.account import invitations
from app.models import User, Workspace, WorkspaceInvitation, WorkspaceMembership

bp = Blueprint("workspaces", __name__, url_prefix="/admin/workspaces")


@bp.before_request
@login_required
def require_sign_in():
    """Workspace management needs a signed-in user; each view checks membership of its workspace."""
    slug = (request.view_args or {}).get("slug")
    if slug is not None:
        access = workspace_access_by_slug(slug)
        if access is None:
            abort(404)
        require_strong_session(access.workspace)
        g.workspace_access = access
        act_in_workspace(access.workspace.id)  # without making it the session's current one


def my_workspaces_with_counts(user_id: int):
    """The user's workspaces with their role and tenant counts, in one statement.

    Tenants of workspaces other than the current one are hidden by row-level security;
    the counts come from workspace_tenant_counts(), which returns counts only, and only
    for workspaces the user belongs to (migration 0006).
    """
    tenant_counts = (
        select(
            column("workspace_id", BigInteger), column("active", BigInteger), column("archived", BigInteger)
        )
        .select_from(func.workspace_tenant_counts(user_id))
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


@bp.get("")
def index():
    return render_template("workspaces/index.html", workspaces=my_workspaces_with_counts(current_user.id),
                           form=WorkspaceCreateForm())


@bp.post("")
def create():
    # Before the form is read: a refusal must not say whether the slug exists.
    require_platform_admin("create workspaces")
    form = WorkspaceCreateForm()
    if not form.validate_on_submit():
        return render_template("workspaces/index.html", workspaces=my_workspaces_with_counts(current_user.id),
                               form=form), 400
    if db.session.scalar(select(Workspace.id).where(Workspace.slug == form.slug.data)) is not None:
        form.slug.errors.append("This slug is taken. Choose another.")
        return render_template("workspaces/index.html", workspaces=my_workspaces_with_counts(current_user.id),
                               form=form), 400
    workspace = Workspace(slug=form.slug.data, name=form.name.data)
    db.session.add(workspace)
    db.session.flush()
    act_in_workspace(workspace.id)
    db.session.add(WorkspaceMembership(workspace_id=workspace.id, user_id=current_user.id, role="owner"))
    record_audit("workspace.create", actor=current_user, workspace=workspace, target_type="workspace",
                 target_id=workspace.id, target_name=workspace.name,
                 details={"before": None, "after": {"slug": workspace.slug, "name": workspace.name}})
    db.session.commit()
    set_current_workspace(workspace)
    flash(f"Workspace {workspace.name} created. You are its owner.", "success")
    return redirect(url_for("portfolio.managed_tenants", slug=workspace.slug))


@bp.post("/switch")
def switch():
    """The workspace switcher: make a workspace the user belongs to current."""
    form = WorkspaceSwitchForm()
    if not form.validate_on_submit():
        abort(400, "Choose a workspace from the list.")
    access = workspace_access_by_id(form.workspace_id.data)
    if access is None:
        abort(404)
    act_in_workspace(access.workspace.id)
    record_audit("workspace.switch", actor=current_user, workspace=access.workspace, target_type="workspace",
                 target_id=access.workspace.id, target_name=access.workspace.name)
    set_current_workspace(access.workspace)  # commits the audit entry with last_workspace_id
    db.session.commit()
    return redirect(url_for("portfolio.managed_tenants", slug=access.workspace.slug))


@bp.route("/<slug>/settings", methods=["GET", "POST"])
def settings(slug: str):
    access = g.workspace_access
    form = WorkspaceRenameForm(obj=access.workspace)
    if request.method == "POST":
        require_role("owner", "rename this workspace")
        if form.validate_on_submit():
            before = access.workspace.name
            if before == form.name.data:
                flash("Nothing changed.", "info")
                return redirect(url_for(".settings", slug=slug))
            access.workspace.name = form.name.data
            record_audit("workspace.rename", actor=current_user, workspace=access.workspace,
                         target_type="workspace", target_id=access.workspace.id, target_name=form.name.data,
                         details={"before": {"name": before}, "after": {"name": form.name.data}})
            db.session.commit()
            flash(f"Workspace renamed from {before} to {form.name.data}.", "success")
            return redirect(url_for(".settings", slug=slug))
        return render_template("workspaces/settings.html", form=form, action_form=ActionForm()), 400
    return render_template("workspaces/settings.html", form=form, action_form=ActionForm())


@bp.post("/<slug>/settings/security")
def security(slug: str):
    """Turn "members must use MFA or Microsoft sign-in" on or off (owners; audited)."""
    require_role("owner", "change the sign-in requirement")
    access = g.workspace_access
    if not ActionForm().validate_on_submit():
        abort(400)
    after = request.form.get("require_mfa") == "on"
    before = access.workspace.require_mfa
    if after and not session_is_strong():
        flash("Sign in with a second factor yourself first (set one up under Security), so that turning this on "
              "does not lock you out.", "danger")
        return redirect(url_for(".settings", slug=slug))
    if after != before:
        access.workspace.require_mfa = after
        record_audit("workspace.require_mfa", actor=current_user, workspace=access.workspace,
                     target_type="workspace", target_id=access.workspace.id, target_name=access.workspace.name,
                     details={"before": {"require_mfa": before}, "after": {"require_mfa": after}})
        db.session.commit()
    flash("Members must now use multi-factor authentication or Microsoft sign-in." if after else
          "Members may sign in with a password alone.", "success")
    return redirect(url_for(".settings", slug=slug))


def _members(workspace_id: int):
    return db.session.execute(
        select(WorkspaceMembership, User)
        .join(User, User.id == WorkspaceMembership.user_id)
        .where(WorkspaceMembership.workspace_id == workspace_id)
        .order_by(User.name, User.email)
    ).all()


def _render_members(invite_form=None, status=200, new_invitation=None):
    access = g.workspace_access
    pending = invitations.pending_invitations(access.workspace.id) if access.allows("owner") else []
    return render_template("workspaces/members.html", members=_members(access.workspace.id),
                           # formdata=None: after an invitation is sent its form starts empty again.
                           invite_form=invite_form or InvitationForm(formdata=None), role_form=MemberRoleForm(),
                           action_form=ActionForm(), pending_invitations=pending,
                           new_invitation=new_invitation), status


@bp.get("/<slug>/members")
def members(slug: str):
    return _render_members()


@bp.post("/<slug>/invitations")
def invite(slug: str):
    """Invite an email address; the answer is the same whether or not it has an account."""
    require_role("owner", "invite members")
    access = g.workspace_access
    form = InvitationForm()
    if not form.validate_on_submit():
        return _render_members(form, 400)
    already = db.session.scalar(select(User.name).join(WorkspaceMembership, WorkspaceMembership.user_id == User.id)
                                .where(WorkspaceMembership.workspace_id == access.workspace.id,
                                       User.email == form.email.data))
    if already is not None:  # the members table above says so anyway
        form.email.errors.append(f"{already} ({form.email.data}) is a member already. Change their role above.")
        return _render_members(form, 400)
    created = invitations.invite(access.workspace, form.email.data, form.role.data, current_user)
    db.session.commit()
    # Rendered, not redirected: the link exists only now (its token is stored hashed).
    return _render_members(new_invitation=created)


@bp.post("/<slug>/invitations/<int:invitation_id>/revoke")
def revoke_invitation(slug: str, invitation_id: int):
    require_role("owner", "revoke invitations")
    access = g.workspace_access
    if not ActionForm().validate_on_submit():
        abort(400)
    invitation = db.session.scalar(select(WorkspaceInvitation).where(
        WorkspaceInvitation.id == invitation_id, WorkspaceInvitation.workspace_id == access.workspace.id))
    if invitation is None:
        abort(404)
    if invitations.revoke(invitation, current_user, access.workspace):
        db.session.commit()
        flash(f"The invitation of {invitation.email} was revoked; its link no longer works.", "success")
    else:
        flash(f"The invitation of {invitation.email} was no longer pending.", "info")
    return redirect(url_for(".members", slug=slug))


def _membership_or_404(membership_id: int) -> WorkspaceMembership:
    membership = db.session.scalar(select(WorkspaceMembership).where(
        WorkspaceMembership.id == membership_id,
        WorkspaceMembership.workspace_id == g.workspace_access.workspace.id,
    ))
    if membership is None:
        abort(404)
    return membership


def _owner_count(workspace_id: int) -> int:
    # FOR UPDATE on the owners: two owners demoting each other at once cannot both succeed.
    return len(db.session.scalars(select(WorkspaceMembership.id).where(
        WorkspaceMembership.workspace_id == workspace_id, WorkspaceMembership.role == "owner",
    ).with_for_update()).all())


@bp.post("/<slug>/members/<int:membership_id>/role")
def change_role(slug: str, membership_id: int):
    require_role("owner", "change roles")
    access = g.workspace_access
    membership = _membership_or_404(membership_id)
    form = MemberRoleForm()
    if not form.validate_on_submit():
        abort(400, "Choose one of the listed roles.")
    before = membership.role
    if before == "owner" and form.role.data != "owner" and _owner_count(access.workspace.id) <= 1:
        flash("The last owner cannot be demoted. Make someone else owner first.", "danger")
        return redirect(url_for(".members", slug=slug))
    if before != form.role.data:
        membership.role = form.role.data
        record_audit("membership.role_change", actor=current_user, workspace=access.workspace,
                     target_type="user", target_id=membership.user_id,
                     target_name=membership.user.name, details={"before": {"role": before}, "after": {"role": form.role.data}})
        db.session.commit()
        flash(f"{membership.user.name} is now {form.role.data}.", "success")
    return redirect(url_for(".members", slug=slug))


@bp.post("/<slug>/members/<int:membership_id>/remove")
def remove_member(slug: str, membership_id: int):
    require_role("owner", "remove members")
    access = g.workspace_access
    membership = _membership_or_404(membership_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    if membership.role == "owner" and _owner_count(access.workspace.id) <= 1:
        flash("The last owner cannot be removed. Make someone else owner first.", "danger")
        return redirect(url_for(".members", slug=slug))
    record_audit("membership.remove", actor=current_user, workspace=access.workspace, target_type="user",
                 target_id=membership.user_id, target_name=membership.user.name,
                 details={"before": {"role": membership.role}, "after": None})
    name = membership.user.name
    db.session.delete(membership)
    db.session.commit()
    flash(f"{name} was removed from {access.workspace.name}.", "success")
    return redirect(url_for(".members", slug=slug))
