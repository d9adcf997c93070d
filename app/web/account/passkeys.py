"""Passkeys (WebAuthn, the `webauthn` package): the stronger second factor, and sign-in without a password.

- Registration (Security page, signed in): the browser's navigator.credentials.create()
  with options made here (a discoverable credential, user verification required, the
  person's existing passkeys excluded); the answer is verified here (challenge, origin, RP
  id, attestation "none") and its public key kept (webauthn_credentials).
- Sign-in: on the sign-in page with no account named (a discoverable credential finds its
  account), as the second factor after a password (only that person's passkeys), or to
  confirm a signed-in session (step-up). Every verified assertion updates the signature
  counter; a counter that goes backwards (a cloned authenticator) is refused by the library.
  A passkey with user verification is two factors in one, so the session is strong.

The RP id is WEBAUTHN_RP_ID (default: the host the browser used) and the origin
WEBAUTHN_ORIGIN (default: scheme://host[:port] of the request). A challenge lives in the
session for 5 minutes and is used once. Attempts are limited like passwords.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, request, session, url_for
from flask_login import current_user, login_required
from sqlalchemy import select
from webauthn import (base64url_to_bytes, generate_authentication_options, generate_registration_options, options_to_json,
                      verify_authentication_response, verify_registration_response)
from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidRegistrationResponse
from webauthn.helpers.structs import (AuthenticatorSelectionCriteria, PublicKeyCredentialDescriptor,
                                      ResidentKeyRequirement, UserVerificationRequirement)

from app.web.account import sessions
from app.audit import record_audit
from app.extensions import db
from app.web.forms import ActionForm
from app.models import User, WebAuthnCredential

bp = Blueprint("passkeys", __name__)

CHALLENGE_KEY = "webauthn_challenge"
CHALLENGE_SECONDS = 300
MAX_BODY = 64 * 1024


def passkeys_enabled() -> bool:
    return current_app.config.get("PASSKEYS_ENABLED", True)


def rp_id() -> str:
    return current_app.config.get("WEBAUTHN_RP_ID") or urlsplit(request.host_url).hostname or "localhost"


def expected_origin() -> str:
    return current_app.config.get("WEBAUTHN_ORIGIN") or request.host_url.rstrip("/")


def _remember(challenge: bytes, purpose: str) -> None:
    session[CHALLENGE_KEY] = {"c": challenge.hex(), "p": purpose, "at": int(time.time())}


def _take_challenge(purpose: str) -> bytes | None:
    """The challenge of the ceremony in progress, once (a second answer finds none)."""
    stored = session.pop(CHALLENGE_KEY, None)
    if (not isinstance(stored, dict) or stored.get("p") != purpose
            or int(time.time()) - int(stored.get("at") or 0) > CHALLENGE_SECONDS):
        return None
    try:
        return bytes.fromhex(stored["c"])
    except (KeyError, TypeError, ValueError):
        return None


def _credential_json() -> dict:
    if request.content_length is not None and request.content_length > MAX_BODY:
        abort(413)
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("credential"), dict):
        abort(400, "The passkey answer is missing or malformed.")
    return body


def _refused(message: str, reason: str, user: User | None = None, status: int = 400):
    db.session.rollback()
    record_audit("auth.passkey_refused", actor=user, details={"reason": reason})
    db.session.commit()
    current_app.logger.info("Passkey refused: %s", reason)
    return jsonify({"error": message}), status


# --- registration --------------------------------------------------------------------------


@bp.post("/admin/account/passkeys/options")
@login_required
def registration_options():
    if current_user.has_second_factor and not sessions.is_strong():
        # A stolen password-only session must not add its own passkey and pass for strong.
        return jsonify({"error": "Confirm it is you with the second factor you have (Sign-in security → "
                                 "Confirm) before adding a passkey."}), 403
    options = generate_registration_options(
        rp_id=rp_id(), rp_name="TenantAtlas", user_id=f"tenantatlas-user-{current_user.id}".encode(),
        user_name=current_user.email, user_display_name=current_user.name,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED, user_verification=UserVerificationRequirement.REQUIRED),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=credential.credential_id)
                             for credential in current_user.webauthn_credentials],
    )
    _remember(options.challenge, "register")
    return current_app.response_class(options_to_json(options), mimetype="application/json")


@bp.post("/admin/account/passkeys")
@login_required
def register():
    body = _credential_json()
    name = " ".join(str(body.get("name") or "Passkey").split())[:100] or "Passkey"
    challenge = _take_challenge("register")
    if current_user.has_second_factor and not sessions.is_strong():
        challenge = None  # options were refused above; a challenge from before does not count
    if challenge is None:
        return _refused("This passkey registration expired or was already used. Try again.", "no challenge",
                        current_user)
    try:
        verified = verify_registration_response(credential=body["credential"], expected_challenge=challenge,
                                                expected_rp_id=rp_id(), expected_origin=expected_origin(),
                                                require_user_verification=True)
    except (InvalidRegistrationResponse, ValueError, KeyError, TypeError) as error:
        return _refused(f"The passkey could not be registered: {str(error)[:200]}", "registration not verified",
                        current_user)
    if db.session.scalar(select(WebAuthnCredential.id).where(
            WebAuthnCredential.credential_id == verified.credential_id)) is not None:
        return _refused("This passkey is registered already.", "duplicate credential", current_user, 409)
    transports = body["credential"].get("response", {}).get("transports") or []
    credential = WebAuthnCredential(
        user_id=current_user.id, credential_id=verified.credential_id, public_key=verified.credential_public_key,
        sign_count=verified.sign_count, name=name,
        transports=[str(t)[:20] for t in transports if isinstance(t, str)][:8])
    db.session.add(credential)
    db.session.flush()
    sessions.mark_strong(current_user, "passkey")
    record_audit("auth.passkey_added", actor=current_user, target_type="passkey", target_id=credential.id,
                 target_name=name, details={"before": None, "after": {"name": name}})
    db.session.commit()
    flash(f"Passkey “{name}” added. You can sign in with it without a password.", "success")
    return jsonify({"redirect": url_for("mfa.security")})


@bp.post("/admin/account/passkeys/<int:credential_id>/remove")
@login_required
def remove(credential_id: int):
    if not ActionForm().validate_on_submit():
        abort(400)
    credential = db.session.scalar(select(WebAuthnCredential).where(
        WebAuthnCredential.id == credential_id, WebAuthnCredential.user_id == current_user.id))
    if credential is None:
        abort(404)
    record_audit("auth.passkey_removed", actor=current_user, target_type="passkey", target_id=credential.id,
                 target_name=credential.name, details={"before": {"name": credential.name}, "after": None})
    db.session.delete(credential)
    db.session.commit()
    flash(f"Passkey “{credential.name}” removed.", "success")
    return redirect(url_for("mfa.security"))


# --- sign-in ---------------------------------------------------------------------------------


def _who_is_proving() -> User | None:
    """The person a passkey must belong to: the signed-in one (step-up), the pending sign-in, or anyone (None)."""
    if current_user.is_authenticated:
        return current_user._get_current_object()
    from app.web.account.mfa import _pending_user

    user, _ = _pending_user()
    return user


@bp.post("/login/passkey/options")
def authentication_options():
    user = _who_is_proving()
    options = generate_authentication_options(
        rp_id=rp_id(), user_verification=UserVerificationRequirement.REQUIRED if user is None
        else UserVerificationRequirement.PREFERRED,
        allow_credentials=[PublicKeyCredentialDescriptor(id=c.credential_id) for c in user.webauthn_credentials]
        if user is not None else [])
    _remember(options.challenge, "authenticate")
    return current_app.response_class(options_to_json(options), mimetype="application/json")


@bp.post("/login/passkey")
def authenticate():
    from app.web.account.auth import complete_sign_in, safe_next_url
    from app.web.account.mfa import PENDING_KEY

    body = _credential_json()
    expected_user = _who_is_proving()
    challenge = _take_challenge("authenticate")
    if challenge is None:
        return _refused("This passkey sign-in expired or was already used. Try again.", "no challenge", expected_user)
    try:
        credential_id = base64url_to_bytes(str(body["credential"].get("rawId") or body["credential"].get("id")))
    except (ValueError, TypeError):
        return _refused("The passkey answer is malformed.", "malformed credential id", expected_user)
    stored = db.session.scalar(select(WebAuthnCredential).where(WebAuthnCredential.credential_id == credential_id))
    if stored is None or (expected_user is not None and stored.user_id != expected_user.id):
        return _refused("This passkey is not registered for this account.", "unknown passkey", expected_user)
    try:
        verified = verify_authentication_response(
            credential=body["credential"], expected_challenge=challenge, expected_rp_id=rp_id(),
            expected_origin=expected_origin(), credential_public_key=stored.public_key,
            credential_current_sign_count=stored.sign_count, require_user_verification=expected_user is None)
    except (InvalidAuthenticationResponse, ValueError, KeyError, TypeError) as error:
        return _refused(f"The passkey could not be verified: {str(error)[:200]}", "assertion not verified",
                        expected_user)
    user = db.session.get(User, stored.user_id)
    if user is None or not user.is_active:
        return _refused("This account cannot sign in.", "inactive user", expected_user, 403)
    stored.sign_count = verified.new_sign_count
    stored.last_used_at = datetime.now(timezone.utc)
    next_url = safe_next_url(body.get("next") if isinstance(body.get("next"), str) else None)
    if current_user.is_authenticated:
        sessions.mark_strong(current_user, "passkey")
        record_audit("auth.step_up", actor=current_user, details={"method": "passkey"})
        db.session.commit()
    else:
        pending = session.pop(PENDING_KEY, None)
        complete_sign_in(user, "password+passkey" if pending else "passkey", strong=True)
    return jsonify({"redirect": next_url or url_for("shell.home")})


def init_rate_limits(app, limiter, per_address: str, message: str) -> None:
    """Passkey sign-in answers are limited like passwords (per address)."""
    for endpoint in ("passkeys.authenticate", "passkeys.register"):
        app.view_functions[endpoint] = limiter.limit(per_address, methods=["POST"], error_message=message)(
            app.view_functions[endpoint])
