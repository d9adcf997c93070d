"""Sessions: every signed-in browser is a user_sessions row (migration 0017_user_sessions).

The cookie holds `user_id:secret`; the row holds the secret's SHA-256, how the person
proved who they are, the device and address, and when it was last seen. A session counts
only while it has not ended, was seen within SESSION_IDLE_MINUTES (default 8 hours) and
began within SESSION_LIFETIME_HOURS (default 7 days). Ending one (sign-out, the person on
their sessions page, a password change, an administrator) makes its cookie worthless at
once, copies included. `strong` says the session was proved with more than a password
(a second factor, a passkey, Microsoft): what a workspace that requires MFA asks for.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta, timezone

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import func, select, update

from app.audit import record_audit
from app.extensions import db
from app.web.forms import ActionForm
from app.models import User, UserSession
from app.validation import parse_database_id

# last_seen_at is written at most this often per session: not a write per page view.
LAST_SEEN_RESOLUTION = timedelta(seconds=60)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def idle_timeout() -> timedelta:
    return timedelta(minutes=current_app.config["SESSION_IDLE_MINUTES"])


def lifetime() -> timedelta:
    return timedelta(hours=current_app.config["SESSION_LIFETIME_HOURS"])


def start(user: User, method: str, strong: bool) -> UserSession:
    """A new session for `user` (caller commits); the user object carries it into login_user."""
    secret = secrets.token_urlsafe(32)
    row = UserSession(user_id=user.id, token_hash=_hash(secret), auth_method=method[:40], strong=strong,
                      user_agent=(request.user_agent.string or "")[:300] or None, ip_address=request.remote_addr)
    db.session.add(row)
    db.session.flush()
    user.current_session, user.current_session_secret = row, secret
    return row


def load(session_identity: str) -> User | None:
    """The user of a cookie, while its session is live; None otherwise (Flask-Login's user loader)."""
    user_id, _, secret = session_identity.partition(":")
    user_key = parse_database_id(user_id)
    if user_key is None or not secret or len(secret) > 100:
        return None
    # One statement per request for the session and its person.
    found = db.session.execute(select(UserSession, User).join(User, User.id == UserSession.user_id)
                               .where(UserSession.token_hash == _hash(secret))).first()
    if found is None:
        return None
    row, user = found
    if not hmac.compare_digest(str(row.user_id), str(user_key)) or row.ended_at is not None:
        return None
    now = utcnow()
    reason = ("idle" if row.last_seen_at + idle_timeout() <= now else
              "lifetime" if row.created_at + lifetime() <= now else None)
    if reason:
        end(row, reason)
        db.session.commit()
        return None
    if not user.is_active:
        return None
    if now - row.last_seen_at >= LAST_SEEN_RESOLUTION:
        row.last_seen_at = now
        db.session.commit()  # before the request sets anything up; row security re-applies per transaction
    user.current_session, user.current_session_secret = row, secret
    return user


def end(row: UserSession, reason: str) -> None:
    if row.ended_at is None:
        row.ended_at, row.end_reason = utcnow(), reason


def end_all(user_id: int, reason: str, *, except_id: int | None = None) -> int:
    """End every live session of a user (but `except_id`); returns how many (caller commits)."""
    statement = (update(UserSession).where(UserSession.user_id == user_id, UserSession.ended_at.is_(None))
                 .values(ended_at=utcnow(), end_reason=reason).returning(UserSession.id))
    if except_id is not None:
        statement = statement.where(UserSession.id != except_id)
    return len(db.session.execute(statement).all())


def mark_strong(user: User, method: str) -> None:
    """The current session was just proved with a second factor (enrolment, step-up)."""
    row = user.current_session
    if row is not None and not row.strong:
        row.strong, row.auth_method = True, f"{row.auth_method}+{method}"[:40]


def is_strong() -> bool:
    row = getattr(current_user, "current_session", None)
    return bool(row is not None and row.strong)


def live_sessions_query(user_id: int):
    now = utcnow()
    return select(UserSession).where(
        UserSession.user_id == user_id, UserSession.ended_at.is_(None),
        UserSession.last_seen_at > now - idle_timeout(), UserSession.created_at > now - lifetime())


def active_session_counts() -> dict[int, int]:
    now = utcnow()
    rows = db.session.execute(
        select(UserSession.user_id, func.count()).where(
            UserSession.ended_at.is_(None), UserSession.last_seen_at > now - idle_timeout(),
            UserSession.created_at > now - lifetime()).group_by(UserSession.user_id)).all()
    return dict(rows)


_BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"),
             ("Safari/", "Safari"))
_SYSTEMS = (("Windows", "Windows"), ("Android", "Android"), ("iPhone", "iPhone"), ("iPad", "iPad"),
            ("Mac OS X", "macOS"), ("CrOS", "ChromeOS"), ("Linux", "Linux"))


def device_name(user_agent: str | None) -> str:
    """"Chrome on Windows" from a User-Agent, for people to recognise their devices."""
    agent = user_agent or ""
    browser = next((name for marker, name in _BROWSERS if marker in agent), None)
    system = next((name for marker, name in _SYSTEMS if marker in agent), None)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or (re.sub(r"\s+", " ", agent)[:60] or "Unknown device")


# --- the person's own sessions page ------------------------------------------------------

bp = Blueprint("sessions", __name__, url_prefix="/admin/account/sessions")


@bp.before_request
@login_required
def require_sign_in():
    """Only the signed-in person's own sessions are listed or ended here."""


@bp.get("")
def index():
    rows = db.session.scalars(live_sessions_query(current_user.id).order_by(UserSession.last_seen_at.desc())).all()
    return render_template("auth/sessions.html", sessions=rows, action_form=ActionForm(), device_name=device_name,
                           current_id=current_user.current_session.id if current_user.current_session else None)


@bp.post("/<int:session_id>/end")
def end_one(session_id: int):
    if not ActionForm().validate_on_submit():
        abort(400)
    row = db.session.scalar(select(UserSession).where(UserSession.id == session_id,
                                                      UserSession.user_id == current_user.id))
    if row is None:
        abort(404)
    this_one = current_user.current_session is not None and row.id == current_user.current_session.id
    end(row, "ended by the user")
    record_audit("auth.session_end", actor=current_user, target_type="session", target_id=row.id,
                 target_name=device_name(row.user_agent),
                 details={"before": {"status": "active"}, "after": {"status": "ended"}})
    db.session.commit()
    if this_one:
        return redirect(url_for("auth.login"))
    flash(f"The session on {device_name(row.user_agent)} was ended.", "success")
    return redirect(url_for(".index"))
