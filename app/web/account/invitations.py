"""Invitations: how a person joins a workspace (and, when new, gets an account).

An owner invites an email address with a role (members page). The link carries a random
token; only its SHA-256 is stored. It works for 7 days, once, until revoked. The owner
always sees the link (so it works without mail) and it is emailed when SMTP_URL is set.
Inviting says nothing about whether the address already has an account: the answer is the
same either way.

The invitee opens the link and, signed in with that email's account, accepts; without an
account they set a name and password (or sign in with Microsoft, app/web/account/oidc.py). Accepting is
one conditional UPDATE (not accepted, not revoked, not expired), so a link works once even
when two browsers race. The workspace is unknown until the token is looked up:
invitation_by_token_hash (migration 0017_workspace_invitations) answers its id and
workspace for an exact hash, and the request then acts in that workspace as usual.
"""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from flask import Blueprint, abort, current_app, flash, redirect, render_template, session, url_for
from flask_login import current_user, login_required
from sqlalchemy import select, text, update

from app.access import act_in_workspace
from app.audit import record_audit
from app.extensions import db
from app.web.forms import ActionForm, InvitationRegisterForm
from app.mail import MailError, MailSettings, send_mail
from app.models import User, Workspace, WorkspaceInvitation, WorkspaceMembership
from app.passwords import hash_password

INVITATION_LIFETIME = timedelta(days=7)
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{43}")  # token_urlsafe(32)
SESSION_KEY = "pending_invitation"  # a token carried through "Sign in with Microsoft"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class InvitationRefused(Exception):
    """An invitation link that cannot be used; `message` says why, for the person holding it."""

    def __init__(self, message: str, reason: str, status: int = 410):
        super().__init__(message)
        self.message, self.reason, self.status = message, reason, status


@dataclass(frozen=True)
class NewInvitation:
    invitation: WorkspaceInvitation
    link: str
    mail_outcome: str  # what to tell the owner about the email


def pending_invitations(workspace_id: int) -> list[WorkspaceInvitation]:
    return db.session.scalars(select(WorkspaceInvitation).where(
        WorkspaceInvitation.workspace_id == workspace_id,
        WorkspaceInvitation.accepted_at.is_(None), WorkspaceInvitation.revoked_at.is_(None),
        WorkspaceInvitation.expires_at > utcnow(),
    ).order_by(WorkspaceInvitation.created_at.desc())).all()


def invite(workspace: Workspace, email: str, role: str, inviter: User) -> NewInvitation:
    """A new invitation (an earlier pending one for the same email is revoked); the caller commits.

    The same happens whether or not `email` has an account: nothing here looks it up.
    """
    now = utcnow()
    replaced = db.session.execute(
        update(WorkspaceInvitation)
        .where(WorkspaceInvitation.workspace_id == workspace.id, WorkspaceInvitation.email == email,
               WorkspaceInvitation.accepted_at.is_(None), WorkspaceInvitation.revoked_at.is_(None))
        .values(revoked_at=now).returning(WorkspaceInvitation.id)).scalars().all()
    token = secrets.token_urlsafe(32)
    invitation = WorkspaceInvitation(workspace_id=workspace.id, email=email, role=role, token_hash=token_hash(token),
                                     invited_by_user_id=inviter.id, expires_at=now + INVITATION_LIFETIME)
    db.session.add(invitation)
    db.session.flush()
    link = url_for("invitations.show", token=token, _external=True)
    record_audit("invitation.create", actor=inviter, workspace=workspace, target_type="invitation",
                 target_id=invitation.id, target_name=email,
                 details={"before": None, "after": {"email": email, "role": role,
                                                    "expires_at": invitation.expires_at.isoformat()},
                          **({"replaces": replaced} if replaced else {})})
    return NewInvitation(invitation, link, _send(invitation, workspace, inviter, link))


def _send(invitation: WorkspaceInvitation, workspace: Workspace, inviter: User, link: str) -> str:
    try:
        settings = MailSettings.from_environ()
    except ValueError as error:  # ConfigError: a malformed SMTP_URL
        return f"Email is misconfigured ({error}); send the link yourself."
    if settings is None:
        return "Email is not configured (SMTP_URL); send the link yourself."
    expires = invitation.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    body = (f"{inviter.name} ({inviter.email}) invited you to the workspace {workspace.name} on TenantAtlas, "
            f"as {invitation.role}.\n\nAccept the invitation before {expires}:\n{link}\n\n"
            "The link works once. If you did not expect this invitation, ignore this email.\n")
    try:
        # The owner waits for this answer, so one attempt: a failure is reported, the link shown.
        send_mail(invitation.email, f"Invitation to {workspace.name} on TenantAtlas", body, settings=settings,
                  attempts=1)
    except MailError as error:
        current_app.logger.warning("Invitation %s: email not sent: %s", invitation.id, error)
        return f"The email could not be sent ({error}); send the link yourself."
    return f"An email with the link was sent to {invitation.email}."


def revoke(invitation: WorkspaceInvitation, actor: User, workspace: Workspace) -> bool:
    """Revoke a pending invitation (caller commits); False when it was no longer pending."""
    done = db.session.execute(
        update(WorkspaceInvitation)
        .where(WorkspaceInvitation.id == invitation.id, WorkspaceInvitation.accepted_at.is_(None),
               WorkspaceInvitation.revoked_at.is_(None))
        .values(revoked_at=utcnow()).returning(WorkspaceInvitation.id)).first()
    if done is None:
        return False
    record_audit("invitation.revoke", actor=actor, workspace=workspace, target_type="invitation",
                 target_id=invitation.id, target_name=invitation.email,
                 details={"before": {"status": "pending"}, "after": {"status": "revoked"}})
    return True


def find(token: str) -> WorkspaceInvitation:
    """The invitation of a link, usable now; the request then acts in its workspace. Else InvitationRefused."""
    if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
        raise InvitationRefused("This invitation link is not valid. Check that it was copied whole, or ask the "
                                "workspace owner for a new invitation.", "malformed token", 404)
    row = db.session.execute(text("SELECT invitation_id, workspace_id FROM invitation_by_token_hash(:h)"),
                             {"h": token_hash(token)}).first()
    if row is None:
        raise InvitationRefused("This invitation link is not valid. Check that it was copied whole, or ask the "
                                "workspace owner for a new invitation.", "unknown token", 404)
    act_in_workspace(row.workspace_id)
    invitation = db.session.get(WorkspaceInvitation, row.invitation_id)
    if invitation.revoked_at is not None:
        raise InvitationRefused("This invitation was revoked by the workspace owner. Ask them for a new one if you "
                                "still need access.", "revoked")
    if invitation.accepted_at is not None:
        raise InvitationRefused("This invitation was used already; a link works once. Sign in, or ask the workspace "
                                "owner for a new invitation.", "used")
    if invitation.expires_at <= utcnow():
        raise InvitationRefused(f"This invitation expired on {invitation.expires_at:%Y-%m-%d %H:%M} UTC (they last "
                                "7 days). Ask the workspace owner for a new one.", "expired")
    return invitation


def check_email(invitation: WorkspaceInvitation, user: User) -> None:
    if user.email != invitation.email:
        raise InvitationRefused("This invitation was sent to another email address than the one you are signed in "
                                "with. Sign out, then open the link again and sign in with the invited address.",
                                "wrong email", 403)


def accept(invitation: WorkspaceInvitation, user: User, method: str) -> WorkspaceMembership | None:
    """Make `user` a member with the invited role, once (caller commits). None if already a member.

    Raises InvitationRefused when the link was used, revoked or expired in the meantime.
    """
    check_email(invitation, user)
    claimed = db.session.execute(
        update(WorkspaceInvitation)
        .where(WorkspaceInvitation.id == invitation.id, WorkspaceInvitation.accepted_at.is_(None),
               WorkspaceInvitation.revoked_at.is_(None), WorkspaceInvitation.expires_at > utcnow())
        .values(accepted_at=utcnow(), accepted_by_user_id=user.id).returning(WorkspaceInvitation.id)).first()
    if claimed is None:
        raise InvitationRefused("This invitation was used, revoked or expired a moment ago. Ask the workspace owner "
                                "for a new one.", "no longer pending")
    workspace = db.session.get(Workspace, invitation.workspace_id)
    existing = db.session.scalar(select(WorkspaceMembership).where(
        WorkspaceMembership.workspace_id == invitation.workspace_id, WorkspaceMembership.user_id == user.id))
    record_audit("invitation.accept", actor=user, workspace=workspace, target_type="invitation",
                 target_id=invitation.id, target_name=invitation.email,
                 details={"before": {"status": "pending"},
                          "after": {"status": "accepted", "role": invitation.role, "method": method,
                                    "already_member": existing is not None}})
    if existing is not None:
        return None
    membership = WorkspaceMembership(workspace_id=invitation.workspace_id, user_id=user.id, role=invitation.role)
    db.session.add(membership)
    record_audit("membership.add", actor=user, workspace=workspace, target_type="user", target_id=user.id,
                 target_name=user.name,
                 details={"before": None, "after": {"role": invitation.role, "email": user.email,
                                                    "invited_by": invitation.invited_by_user_id}})
    return membership


def refuse_audit(reason: str, user: User | None = None, invitation: WorkspaceInvitation | None = None) -> None:
    """An audit entry for a refused link (caller commits): in the invitation's workspace when known."""
    workspace = db.session.get(Workspace, invitation.workspace_id) if invitation is not None else None
    record_audit("invitation.refused", actor=user, workspace=workspace,
                 target_type="invitation" if invitation else None,
                 target_id=invitation.id if invitation else None,
                 target_name=invitation.email if invitation else None, details={"reason": reason})


# --- the invitee's pages ----------------------------------------------------------------

bp = Blueprint("invitations", __name__, url_prefix="/invitations")


def _refused(refused: InvitationRefused, invitation: WorkspaceInvitation | None = None):
    db.session.rollback()
    user = current_user if current_user.is_authenticated else None
    if invitation is not None:
        act_in_workspace(invitation.workspace_id)
    refuse_audit(refused.reason, user, invitation)
    db.session.commit()
    return render_template("invitations/refused.html", message=refused.message), refused.status


def _render(invitation: WorkspaceInvitation, token: str, form=None, status: int = 200):
    from app.web.account.oidc import microsoft_sign_in_enabled

    return render_template("invitations/show.html", invitation=invitation, token=token,
                           workspace=db.session.get(Workspace, invitation.workspace_id),
                           form=form or InvitationRegisterForm(), action_form=ActionForm(),
                           microsoft=microsoft_sign_in_enabled()), status


@bp.get("/<token>")
def show(token: str):
    invitation = None
    try:
        invitation = find(token)
        if current_user.is_authenticated:
            check_email(invitation, current_user)
    except InvitationRefused as refused:
        return _refused(refused, invitation)
    return _render(invitation, token)


@bp.post("/<token>/accept")
@login_required
def accept_signed_in(token: str):
    """The signed-in invitee accepts with the account they are signed in with."""
    if not ActionForm().validate_on_submit():
        abort(400, "Your form expired. Open the invitation link again.")
    invitation = None
    try:
        invitation = find(token)
        membership = accept(invitation, current_user, "signed in")
    except InvitationRefused as refused:
        return _refused(refused, invitation)
    db.session.commit()
    workspace = db.session.get(Workspace, invitation.workspace_id)
    flash(f"You joined {workspace.name} as {invitation.role}." if membership else
          f"You are a member of {workspace.name} already; your role there did not change.", "success")
    return redirect(url_for("portfolio.managed_tenants", slug=workspace.slug))


@bp.post("/<token>/register")
def register(token: str):
    """A new account for the invited email, with a password; then the invitation is accepted."""
    from app.web.account.auth import complete_sign_in

    if current_user.is_authenticated:
        return redirect(url_for(".show", token=token))
    invitation = None
    try:
        invitation = find(token)
    except InvitationRefused as refused:
        return _refused(refused, invitation)
    form = InvitationRegisterForm()
    if not form.validate_on_submit():
        return _render(invitation, token, form, 400)
    if db.session.scalar(select(User.id).where(User.email == invitation.email)) is not None:
        # Told only to whoever holds the invitation for this address.
        form.name.errors.append(f"{invitation.email} has a TenantAtlas account already: sign in, then open this "
                                "link again to accept.")
        return _render(invitation, token, form, 400)
    user = User(email=invitation.email, name=form.name.data, password_hash=hash_password(form.password.data))
    db.session.add(user)
    db.session.flush()
    # In the inviting workspace's log: that is where this account came from.
    record_audit("user.create", actor=user, workspace=db.session.get(Workspace, invitation.workspace_id),
                 target_type="user", target_id=user.id, target_name=user.name,
                 details={"email": user.email, "via": "invitation"})
    try:
        accept(invitation, user, "new account")
    except InvitationRefused as refused:
        return _refused(refused, invitation)
    user.last_workspace_id = invitation.workspace_id
    db.session.flush()
    complete_sign_in(user, "password (new account)")
    workspace = db.session.get(Workspace, invitation.workspace_id)
    flash(f"Welcome, {user.name}. You joined {workspace.name} as {invitation.role}.", "success")
    return redirect(url_for("portfolio.managed_tenants", slug=workspace.slug))


@bp.get("/<token>/microsoft")
def with_microsoft(token: str):
    """Accept by signing in with Microsoft: the token rides in the session through the sign-in."""
    from app.web.account.oidc import microsoft_sign_in_enabled

    if not microsoft_sign_in_enabled():
        abort(404)
    invitation = None
    try:
        invitation = find(token)
    except InvitationRefused as refused:
        return _refused(refused, invitation)
    session[SESSION_KEY] = token
    return redirect(url_for("oidc.start"))
