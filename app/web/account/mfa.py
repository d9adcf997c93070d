"""Multi-factor sign-in for local accounts: an authenticator app (TOTP) with recovery codes.

- After a right password, a person with a second factor is not signed in yet: the
  session holds a pending sign-in (5 minutes) and /login/verify asks for a code from the
  authenticator (pyotp, 30-second steps, one step of clock drift either way), a recovery
  code, or a passkey (app/web/account/passkeys.py). Codes are single-use: the last accepted step is
  kept (users.totp_last_step) and only a later step is accepted, by one conditional
  UPDATE, so a code seen over a shoulder or replayed by a proxy is refused even within its
  window. Attempts are rate limited like passwords (per address, per account).
- Enrolment (/admin/account/security): the secret is made here and shown as a QR code
  drawn locally (segno, an SVG data URI: no external service), confirmed with a first
  code; then ten recovery codes are shown once (stored as SHA-256). A recovery code is the
  lost-device path: it signs in once, and the person then removes the lost authenticator
  (with their password) and enrols a new one.
- A signed-in person whose session is not strong (a workspace requires MFA) proves a
  factor on the same /login/verify page ("step-up"); enrolling also makes the session strong.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import datetime, timezone

import pyotp
import segno
from flask import (Blueprint, abort, current_app, flash, redirect, render_template, request, session,
                   url_for)
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy import delete, func, select, update
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from app.web.account import sessions
from app.audit import record_audit
from app.extensions import db
from app.models import RecoveryCode, User
from app.passwords import verify_password

bp = Blueprint("mfa", __name__)

ISSUER = "TenantAtlas"
PENDING_KEY = "second_factor_pending"
ENROL_KEY = "totp_enrolment_secret"
PENDING_SECONDS = 300
RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i


class CodeForm(FlaskForm):
    code = StringField("6-digit code from your authenticator app", validators=[DataRequired(), Length(max=20)])


class RecoveryForm(FlaskForm):
    recovery_code = StringField("Recovery code", validators=[DataRequired(), Length(max=40)])


class PasswordConfirmForm(FlaskForm):
    password = PasswordField("Your password", validators=[DataRequired(), Length(max=1024)])


# --- codes ---------------------------------------------------------------------------------


def _digits(code: str) -> str:
    return "".join(ch for ch in (code or "") if not ch.isspace())


def totp_step(secret: str, code: str, last_step: int | None) -> tuple[int | None, bool]:
    """(the step `code` belongs to if usable, whether it matched an already used step)."""
    code = _digits(code)
    if len(code) != 6 or not (code.isascii() and code.isdigit()):  # "１２３４５６" is digits too
        return None, False
    totp = pyotp.TOTP(secret)
    now = totp.timecode(datetime.now(timezone.utc))
    replayed = False
    for step in (now - 1, now, now + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            if last_step is not None and step <= last_step:
                replayed = True
                continue
            return step, False
    return None, replayed


def claim_totp_step(user: User, step: int) -> bool:
    """Record `step` as used, only if it is later than the last one (atomic: two tabs cannot both win)."""
    claimed = db.session.execute(
        update(User).where(User.id == user.id, (User.totp_last_step.is_(None)) | (User.totp_last_step < step))
        .values(totp_last_step=step).returning(User.id)).first()
    return claimed is not None


def _recovery_hash(code: str) -> str:
    normal = "".join(ch for ch in (code or "").lower() if ch.isalnum())
    return hashlib.sha256(normal.encode()).hexdigest()


def new_recovery_codes(user: User) -> list[str]:
    """Ten fresh codes (the old ones stop working); shown once, stored hashed. Caller commits."""
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    db.session.add_all(RecoveryCode(user_id=user.id, code_hash=_recovery_hash(code)) for code in codes)
    return codes


def use_recovery_code(user: User, code: str) -> bool:
    used = db.session.execute(
        update(RecoveryCode).where(RecoveryCode.user_id == user.id, RecoveryCode.code_hash == _recovery_hash(code),
                                   RecoveryCode.used_at.is_(None))
        .values(used_at=func.now()).returning(RecoveryCode.id)).first()
    return used is not None


def recovery_codes_left(user_id: int) -> int:
    return db.session.scalar(select(func.count()).select_from(RecoveryCode).where(
        RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))) or 0


def qr_code(uri: str) -> str:
    """The enrolment QR code as an SVG data URI (the CSP allows data: images), drawn here."""
    return segno.make(uri, error="m").svg_data_uri(scale=5, border=2)


# --- the pending sign-in ------------------------------------------------------------------


def start_second_factor(user: User, next_url: str | None):
    """After a right password: remember who is signing in (not signed in yet) and ask for a factor."""
    session.clear()
    session[PENDING_KEY] = {"user_id": user.id, "at": int(time.time()), "next": next_url}
    return redirect(url_for("mfa.verify"))


def _pending_user() -> tuple[User | None, dict]:
    pending = session.get(PENDING_KEY)
    if not isinstance(pending, dict) or not isinstance(pending.get("user_id"), int):
        return None, {}
    if int(time.time()) - int(pending.get("at") or 0) > PENDING_SECONDS:
        session.pop(PENDING_KEY, None)
        return None, {}
    user = db.session.get(User, pending["user_id"])
    if user is None or not user.is_active:
        return None, {}
    return user, pending


def _who() -> tuple[User | None, dict]:
    """Whoever is proving a factor: a pending sign-in, or the signed-in person stepping up."""
    if current_user.is_authenticated:
        return current_user._get_current_object(), {"next": request.args.get("next")}
    return _pending_user()


def factor_proved(user: User, method: str, next_url: str | None):
    """A factor was proved: finish the pending sign-in, or make this session strong."""
    from app.web.account.auth import complete_sign_in, safe_next_url

    target = safe_next_url(next_url) or url_for("shell.home")
    if current_user.is_authenticated:
        sessions.mark_strong(user, method)
        record_audit("auth.step_up", actor=user, details={"method": method})
        db.session.commit()
        return redirect(target)
    session.pop(PENDING_KEY, None)
    complete_sign_in(user, f"password+{method}", strong=True)
    return redirect(target)


def _failed(user: User, reason: str, message: str, forms: dict):
    from app.access import act_as_user

    act_as_user(user.id)
    record_audit("auth.mfa_failed", actor=user, details={"reason": reason})
    db.session.commit()
    current_app.logger.info("Second factor refused for user %s: %s", user.id, reason)
    flash(message, "danger")
    return _render_verify(user, status=400, **forms)


def _render_verify(user: User, status: int = 200, code_form=None, recovery_form=None):
    return render_template("auth/verify.html", user=user, code_form=code_form or CodeForm(),
                           recovery_form=recovery_form or RecoveryForm(), has_totp=user.totp_enabled_at is not None,
                           has_passkey=bool(user.webauthn_credentials), next_url=request.args.get("next")), status


@bp.route("/login/verify", methods=["GET", "POST"])
def verify():
    user, pending = _who()
    if user is None:
        flash("Your sign-in took too long or was not started here. Sign in again.", "info")
        return redirect(url_for("auth.login"))
    form = CodeForm()
    if request.method == "GET" or not form.validate_on_submit():
        return _render_verify(user, 400 if request.method == "POST" else 200, code_form=form)
    if user.totp_enabled_at is None or not user.totp_secret:
        abort(400, "You have no authenticator app set up. Use a recovery code or a passkey.")
    step, replayed = totp_step(user.totp_secret, form.code.data, user.totp_last_step)
    if step is None or not claim_totp_step(user, step):
        db.session.rollback()
        if replayed or step is not None:
            return _failed(user, "replayed code", "This code was used already. Wait for the next code in your "
                           "authenticator app, then enter it.", {"code_form": form})
        return _failed(user, "wrong code", "That code is not right. Check your authenticator app's clock and enter "
                       "the current code.", {"code_form": form})
    return factor_proved(user, "totp", pending.get("next"))


@bp.post("/login/recover")
def recover():
    """The lost-device path: a recovery code, once."""
    user, pending = _who()
    if user is None:
        flash("Your sign-in took too long or was not started here. Sign in again.", "info")
        return redirect(url_for("auth.login"))
    form = RecoveryForm()
    if not form.validate_on_submit():
        return _render_verify(user, 400, recovery_form=form)
    if not use_recovery_code(user, form.recovery_code.data):
        db.session.rollback()
        return _failed(user, "wrong recovery code", "That recovery code is not right, or it was used already.",
                       {"recovery_form": form})
    left = recovery_codes_left(user.id)
    response = factor_proved(user, "recovery code", url_for("mfa.security"))
    flash(f"You signed in with a recovery code; {left} left. If you lost your authenticator, remove it below and "
          "set up a new one.", "warning")
    return response


# --- enrolment ----------------------------------------------------------------------------------


def require_proof_before_adding_a_factor():
    """A person who has a factor proves it before adding another: else a stolen password-only
    session could add its own authenticator and pass for strong. None when they may go on."""
    if current_user.has_second_factor and not sessions.is_strong():
        flash("Confirm it is you with the second factor you have before adding another.", "info")
        return redirect(url_for("mfa.verify", next=url_for("mfa.security")))
    return None


@bp.get("/admin/account/security")
@login_required
def security():
    from app.web.account.passkeys import passkeys_enabled

    return render_template("auth/security.html", recovery_left=recovery_codes_left(current_user.id),
                           password_form=PasswordConfirmForm(), strong=sessions.is_strong(),
                           next_url=request.args.get("next"), passkeys_enabled=passkeys_enabled())


@bp.route("/admin/account/security/totp", methods=["GET", "POST"])
@login_required
def enrol_totp():
    if current_user.totp_enabled_at is not None:
        flash("An authenticator app is set up already. Remove it first to set up another.", "info")
        return redirect(url_for(".security"))
    if (refused := require_proof_before_adding_a_factor()) is not None:
        return refused
    form = CodeForm()
    secret = session.get(ENROL_KEY)
    if request.method == "GET" or not isinstance(secret, str):
        secret = session[ENROL_KEY] = pyotp.random_base32()
    status = 200
    if request.method == "POST" and form.validate_on_submit():
        step, _ = totp_step(secret, form.code.data, None)
        if step is not None:
            current_user.totp_secret, current_user.totp_last_step = secret, step
            current_user.totp_enabled_at = datetime.now(timezone.utc)
            codes = new_recovery_codes(current_user)
            sessions.mark_strong(current_user, "totp")
            record_audit("auth.mfa_enrolled", actor=current_user, target_type="user", target_id=current_user.id,
                         target_name=current_user.name,
                         details={"before": {"totp": False}, "after": {"totp": True, "recovery_codes": len(codes)}})
            db.session.commit()
            session.pop(ENROL_KEY, None)
            return render_template("auth/recovery_codes.html", codes=codes, next_url=request.args.get("next"))
        form.code.errors.append("That code is not right. Scan the QR code again and enter the current code.")
    if request.method == "POST":
        status = 400
    uri = pyotp.TOTP(secret).provisioning_uri(name=current_user.email, issuer_name=ISSUER)
    return render_template("auth/enrol_totp.html", form=form, qr=qr_code(uri), secret=secret), status


@bp.post("/admin/account/security/totp/remove")
@login_required
def remove_totp():
    """Remove the authenticator (after a lost device); the password proves it is the person."""
    form = PasswordConfirmForm()
    if not form.validate_on_submit():
        abort(400, "Enter your password to remove the authenticator app.")
    matches, _ = verify_password(current_user.password_hash, form.password.data)
    if not matches:
        record_audit("auth.mfa_remove_failed", actor=current_user, details={"reason": "wrong password"})
        db.session.commit()
        flash("That is not your password; the authenticator app stays.", "danger")
        return redirect(url_for(".security"))
    current_user.totp_secret = current_user.totp_enabled_at = current_user.totp_last_step = None
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == current_user.id))
    record_audit("auth.mfa_removed", actor=current_user, target_type="user", target_id=current_user.id,
                 target_name=current_user.name, details={"before": {"totp": True}, "after": {"totp": False}})
    db.session.commit()
    flash("The authenticator app was removed, with its recovery codes. Set up a new one below.", "success")
    return redirect(url_for(".security"))


@bp.post("/admin/account/security/recovery-codes")
@login_required
def regenerate_recovery_codes():
    form = PasswordConfirmForm()
    if not form.validate_on_submit():
        abort(400, "Enter your password to make new recovery codes.")
    matches, _ = verify_password(current_user.password_hash, form.password.data)
    if not matches or current_user.totp_enabled_at is None:
        flash("That is not your password." if not matches else "Set up an authenticator app first.", "danger")
        return redirect(url_for(".security"))
    codes = new_recovery_codes(current_user)
    record_audit("auth.recovery_codes_renewed", actor=current_user, target_type="user", target_id=current_user.id,
                 target_name=current_user.name, details={"before": None, "after": {"recovery_codes": len(codes)}})
    db.session.commit()
    return render_template("auth/recovery_codes.html", codes=codes, next_url=None)


# --- limits ------------------------------------------------------------------------------------


def _factor_account() -> str:
    pending = session.get(PENDING_KEY)
    if current_user.is_authenticated:
        return f"factor:{current_user.email}"
    if isinstance(pending, dict):
        return f"factor:user:{pending.get('user_id')}"
    return "factor:none"


def init_rate_limits(app, limiter, per_address: str, per_account: str, message: str) -> None:
    """Second-factor guesses are limited like passwords: per address and per account."""
    for endpoint in ("mfa.verify", "mfa.recover", "mfa.enrol_totp", "mfa.remove_totp",
                     "mfa.regenerate_recovery_codes"):
        view = app.view_functions[endpoint]
        view = limiter.limit(per_account, methods=["POST"], key_func=_factor_account, error_message=message)(view)
        view = limiter.limit(per_address, methods=["POST"], error_message=message)(view)
        app.view_functions[endpoint] = view
