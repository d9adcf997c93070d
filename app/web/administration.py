"""/admin/users: platform administration (administrators only).

Administrators are a platform-level flag (users.is_admin), not a workspace role: they see
every staff account, grant and revoke the flag, and end all sessions of an account (a lost
laptop, someone leaving). Everything here is audited. Who may enter is decided once, in
this blueprint's before_request, by app.access.require_platform_admin.
"""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from app.web.account import sessions
from app.access import require_platform_admin
from app.audit import record_audit
from app.extensions import db
from app.web.forms import ActionForm
from app.models import User

bp = Blueprint("administration", __name__, url_prefix="/admin/users")


@bp.before_request
@login_required
def require_administrator():
    require_platform_admin("manage TenantAtlas accounts")


def _user_or_404(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    return user


@bp.get("")
def index():
    users = db.session.scalars(select(User).order_by(User.name, User.email)).all()
    return render_template("administration/users.html", users=users, action_form=ActionForm(),
                           session_counts=sessions.active_session_counts())


@bp.post("/<int:user_id>/admin")
def toggle_admin(user_id: int):
    """Grant the administrator flag, or take it away (never from the last administrator)."""
    if not ActionForm().validate_on_submit():
        abort(400)
    user = _user_or_404(user_id)
    if user.is_admin:
        # FOR UPDATE: two administrators revoking each other at once cannot both succeed.
        admins = db.session.scalars(select(User.id).where(User.is_admin.is_(True)).with_for_update()).all()
        if len(admins) <= 1:
            flash("The last administrator cannot be revoked. Make someone else an administrator first.", "danger")
            return redirect(url_for(".index"))
    before = user.is_admin
    user.is_admin = not before
    record_audit("user.admin_revoke" if before else "user.admin_grant", actor=current_user, target_type="user",
                 target_id=user.id, target_name=user.name,
                 details={"before": {"is_admin": before}, "after": {"is_admin": not before}})
    db.session.commit()
    flash(f"{user.name} is {'no longer' if before else 'now'} an administrator.", "success")
    return redirect(url_for(".index"))


@bp.post("/<int:user_id>/sessions/end")
def end_sessions(user_id: int):
    """End every session of an account at once (a lost laptop, someone leaving)."""
    if not ActionForm().validate_on_submit():
        abort(400)
    user = _user_or_404(user_id)
    ended = sessions.end_all(user.id, "ended by an administrator")
    record_audit("auth.sessions_ended", actor=current_user, target_type="user", target_id=user.id,
                 target_name=user.name, details={"before": {"sessions": ended}, "after": {"sessions": 0}})
    db.session.commit()
    flash(f"{ended} session{'' if ended == 1 else 's'} of {user.name} ended.", "success")
    if user.id == current_user.id:
        return redirect(url_for("auth.login"))
    return redirect(url_for(".index"))
