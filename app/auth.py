"""Sign-in and sign-out."""
from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from .access import restore_workspace_at_sign_in
from .audit import record_audit
from .extensions import db, login_manager
from .models import User
from .passwords import hash_password, verify_password

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


def init_app(app):
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Sign in to continue."
    login_manager.login_message_category = "info"
    # Flask-Login's "strong" mode would drop the session on any IP change (mobile, VPN);
    # "basic" marks it non-fresh instead.
    login_manager.session_protection = "basic"

    @login_manager.user_loader
    def load_user(user_id: str):
        if not user_id.isdigit():
            return None
        return db.session.get(User, int(user_id))


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
            user.last_login_at = datetime.now(timezone.utc)
            record_audit("auth.sign_in", actor=user)
            db.session.commit()
            # A fresh session: nothing from before sign-in survives (session fixation).
            session.clear()
            login_user(user)
            session.permanent = True
            restore_workspace_at_sign_in(user)
            return redirect(next_url or url_for("shell.home"))
        current_app.logger.info(
            "Failed sign-in for %r: %s",
            email,
            "unknown email" if user is None else ("inactive user" if matches else "wrong password"),
        )
        # Same message for an unknown email, a wrong password and an inactive account.
        flash(FAILED_SIGN_IN, "danger")
        return render_template("auth/login.html", form=form, next_url=next_url), 200
    return render_template("auth/login.html", form=form, next_url=next_url)


@bp.post("/logout")
def logout():
    if current_user.is_authenticated:
        record_audit("auth.sign_out", actor=current_user)
        db.session.commit()
    logout_user()
    session.clear()
    flash("You have been signed out.", "info")
    return redirect(url_for("auth.login"))
