"""Sign-in and sign-out.

Sign-in with a password, then (when the person has one) a second factor (app/web/account/mfa.py);
Microsoft (app/web/account/oidc.py) and passkeys (app/web/account/passkeys.py) end in the same complete_sign_in.
"""
from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from app.web.account import sessions
from app.access import act_as_user, restore_workspace_at_sign_in
from app.audit import record_audit
from app.extensions import db, login_manager
from app.web.forms import PasswordChangeForm, TimezoneForm
from app.models import User
from app.passwords import hash_password, verify_password

bp = Blueprint("auth", __name__)

FAILED_SIGN_IN = "Invalid email or password."


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


def normalize_email(email: str) -> str:
    return email.strip().lower()


def safe_next_url(target: str | None) -> str | None:
    """Only a path on this site: no scheme, no host, no protocol-relative '//' or '\\' tricks."""
    if not target or len(target) > 2048:
        return None
    target = target.strip()
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(ch) < 32 for ch in target):
        return None
    return target


def init_rate_limits(app):
    """Limit sign-in attempts; called once the blueprint is registered.

    One limiter per app, so that its storage and switch come from this app's config
    (RATELIMIT_STORAGE_URI: memory by default, Redis when given; RATELIMIT_ENABLED).
    """
    limiter = Limiter(key_func=get_remote_address, headers_enabled=True, app=app)
    per_address = limiter.limit(SIGN_IN_LIMIT_PER_ADDRESS, methods=["POST"], error_message=TOO_MANY_SIGN_INS)
    per_email = limiter.limit(SIGN_IN_LIMIT_PER_EMAIL, methods=["POST"], key_func=_attempted_email,
                              error_message=TOO_MANY_SIGN_INS)
    app.view_functions["auth.login"] = per_address(per_email(login))
    # A password change checks the current password: the same guessing, the same limits.
    change_per_address = limiter.limit(SIGN_IN_LIMIT_PER_ADDRESS, methods=["POST"],
                                       error_message=TOO_MANY_PASSWORD_CHANGES)
    change_per_account = limiter.limit(SIGN_IN_LIMIT_PER_EMAIL, methods=["POST"], key_func=_changing_account,
                                       error_message=TOO_MANY_PASSWORD_CHANGES)
    app.view_functions["auth.change_password"] = change_per_address(change_per_account(change_password))
    from app.web.account.mfa import init_rate_limits as limit_second_factors

    from app.web.account.passkeys import init_rate_limits as limit_passkeys

    limit_second_factors(app, limiter, SIGN_IN_LIMIT_PER_ADDRESS, SIGN_IN_LIMIT_PER_EMAIL, TOO_MANY_SIGN_INS)
    limit_passkeys(app, limiter, SIGN_IN_LIMIT_PER_ADDRESS, TOO_MANY_SIGN_INS)
    app.extensions["sign_in_limiter"] = limiter  # the decorators hold it weakly; the app keeps it


def init_app(app):
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Sign in to continue."
    login_manager.login_message_category = "info"
    # Flask-Login's "strong" mode would drop the session on any IP change (mobile, VPN);
    # "basic" marks it non-fresh instead.
    login_manager.session_protection = "basic"

    @login_manager.user_loader
    def load_user(session_identity: str):
        """The user of a session cookie, only while its session is live (app/web/account/sessions.py)."""
        return sessions.load(session_identity)


# Limits on sign-in attempts: per address (one machine trying many accounts) and per
# account (many machines trying one account).
SIGN_IN_LIMIT_PER_ADDRESS = "20 per minute;200 per hour"
SIGN_IN_LIMIT_PER_EMAIL = "5 per minute;30 per hour"
TOO_MANY_SIGN_INS = "Too many sign-in attempts in a short time. Wait a minute, then try again."
TOO_MANY_PASSWORD_CHANGES = "Too many password change attempts in a short time. Wait a minute, then try again."


def _attempted_email() -> str:
    return "email:" + normalize_email(request.form.get("email", ""))[:254]


def _changing_account() -> str:
    # The email, like sign-in's key: ids restart in every fresh database, so with a shared
    # Redis store they could meet another database's counters.
    return "account:" + (current_user.email if current_user.is_authenticated else "anonymous")


def complete_sign_in(user: User, method: str, *, strong: bool = False) -> None:
    """Sign `user` in to a fresh session after `method` proved who they are (audited).

    Every way in (password, second factor, invitation, Microsoft, passkey) ends here, so a
    session always starts the same way: a new user_sessions row, and nothing from before
    sign-in survives in the cookie (session fixation). `strong`: more than a password.
    """
    user.last_login_at = datetime.now(timezone.utc)
    act_as_user(user.id)
    sessions.start(user, method, strong)
    record_audit("auth.sign_in", actor=user, details={"method": method})
    db.session.commit()
    session.clear()
    login_user(user)
    session.permanent = True
    restore_workspace_at_sign_in(user)


def password_proved(user: User, next_url: str | None):
    """The password was right: sign in, or first ask for the second factor the user has."""
    if user.has_second_factor:
        from app.web.account.mfa import start_second_factor

        return start_second_factor(user, next_url)
    complete_sign_in(user, "password")
    return redirect(next_url or url_for("shell.home"))


@bp.route("/login", methods=["GET", "POST"])
def login():
    next_url = safe_next_url(request.args.get("next"))
    if current_user.is_authenticated:
        return redirect(next_url or url_for("shell.home"))

    form = LoginForm()
    if form.validate_on_submit():
        email = normalize_email(form.email.data)
        user = db.session.scalar(select(User).where(User.email == email))
        matches, needs_rehash = verify_password(user.password_hash if user else None, form.password.data)
        if user is not None and matches and user.is_active:
            if needs_rehash:
                user.password_hash = hash_password(form.password.data)
                db.session.commit()
            return password_proved(user, next_url)
        current_app.logger.info(
            "Failed sign-in for %r: %s",
            email,
            "unknown email" if user is None else ("inactive user" if matches else "wrong password"),
        )
        # Same message for an unknown email, a wrong password and an inactive account.
        flash(FAILED_SIGN_IN, "danger")
        return _render_login(form, next_url)
    return _render_login(form, next_url)


def _render_login(form, next_url):
    from app.web.account.oidc import microsoft_sign_in_enabled
    from app.web.account.passkeys import passkeys_enabled

    return render_template("auth/login.html", form=form, next_url=next_url, microsoft=microsoft_sign_in_enabled(),
                           passkeys=passkeys_enabled())


@bp.post("/logout")
def logout():
    if current_user.is_authenticated:
        # This session's cookie stops working, copies included; other devices stay signed in.
        if current_user.current_session is not None:
            sessions.end(current_user.current_session, "signed out")
        record_audit("auth.sign_out", actor=current_user)
        db.session.commit()
    logout_user()
    session.clear()
    flash("You have been signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/admin/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    """A new password; every other session of the user ends, this one goes on."""
    form = PasswordChangeForm()
    if form.validate_on_submit():
        matches, _ = verify_password(current_user.password_hash, form.current_password.data)
        if not matches:
            form.current_password.errors.append("This is not your current password.")
            current_app.logger.info("Failed password change for user %s: wrong current password", current_user.id)
            record_audit("auth.password_change_failed", actor=current_user,
                         details={"reason": "wrong current password"})
            db.session.commit()
        else:
            current_user.password_hash = hash_password(form.new_password.data)
            this_session = current_user.current_session
            ended = sessions.end_all(current_user.id, "password changed",
                                     except_id=this_session.id if this_session else None)
            record_audit("auth.password_change", actor=current_user, details={"other_sessions_ended": ended})
            db.session.commit()
            flash("Password changed. Your other sessions have been signed out.", "success")
            return redirect(url_for("shell.home"))
    status = 400 if request.method == "POST" else 200
    return render_template("auth/change_password.html", form=form), status


@bp.route("/admin/account/timezone", methods=["GET", "POST"])
@login_required
def change_timezone():
    """The timezone every time on the user's pages is shown in (UTC until they choose)."""
    before = current_user.timezone or "UTC"
    form = TimezoneForm(data={"timezone": before} if request.method == "GET" else None)
    if form.validate_on_submit():
        after = form.timezone.data
        if after == before:
            flash(f"Your timezone is {after} already; nothing changed.", "info")
        else:
            current_user.timezone = None if after == "UTC" else after
            record_audit("user.timezone_change", actor=current_user, target_type="user", target_id=current_user.id,
                         target_name=current_user.name,
                         details={"before": {"timezone": before}, "after": {"timezone": after}})
            db.session.commit()
            flash(f"Times are now shown in {after}.", "success")
        return redirect(url_for(".change_timezone"))
    status = 400 if request.method == "POST" else 200
    return render_template("auth/timezone.html", form=form, current_timezone=before), status
