"""Sign in with Microsoft: OpenID Connect against the MSP's own Entra tenant.

Authlib does the protocol: authorization code flow with PKCE (S256) and a nonce, `state`
kept in the session and checked on return, the code redeemed at the token endpoint with
the app's secret or certificate (private_key_jwt, PS256 with x5t#S256 as Entra asks), and
the ID token's signature checked against the provider's JWKS (fetched again once when a
token names an unknown key: key rotation), its issuer against the tenant's discovery
document, its audience against OIDC_CLIENT_ID, its expiry and its nonce.

On the same identity platform and CAs as the Graph connection (GRAPH_LOGIN_URL,
GRAPH_CA_BUNDLE; app/graph/settings.py): the authority is {GRAPH_LOGIN_URL}/{OIDC_TENANT}.
Configured by OIDC_CLIENT_ID, OIDC_TENANT (the tenant id, a GUID) and OIDC_CLIENT_SECRET
or OIDC_CLIENT_CERTIFICATE (a PEM with certificate and key; each also as *_FILE).

A person is their (tid, oid), set when they accepted an invitation with Microsoft; never
their email. Someone unknown is told to ask for an invitation and nothing is created.
Every refusal is a clear page and an audit entry (auth.microsoft_refused, with its reason).
"""
from __future__ import annotations

import base64
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import requests
from authlib.common.urls import add_params_to_qs
from authlib.integrations.base_client.errors import MismatchingStateError, OAuthError
from authlib.integrations.flask_client import FlaskOAuth2App, OAuth
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from flask import Blueprint, abort, current_app, g, redirect, render_template, session, url_for
from joserfc import errors as jose_errors
from sqlalchemy import select

from app.audit import record_audit
from app.extensions import db
from app.graph.credentials import ca_bundle_path, load_certificate_credential
from app.graph.settings import GraphConfigError, GraphSettings, _read_value
from app.models import User

bp = Blueprint("oidc", __name__)

UNUSABLE_PASSWORD = "!"  # an account that signs in with Microsoft only: verify_password never matches it
HTTP_TIMEOUT = (10.0, 30.0)


@dataclass(frozen=True)
class OidcSettings:
    tenant_id: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    client_certificate_pem: str | None = field(default=None, repr=False)

    @classmethod
    def from_environ(cls, environ=None) -> OidcSettings | None:
        """None when OIDC_CLIENT_ID is unset (local accounts only)."""
        environ = os.environ if environ is None else environ
        client_id = _read_value(environ, "OIDC_CLIENT_ID")
        if not client_id:
            return None
        tenant = (environ.get("OIDC_TENANT") or "").strip()
        try:
            tenant_id = str(uuid.UUID(tenant))
        except ValueError:
            raise GraphConfigError("OIDC_TENANT must be your Entra tenant id (a GUID): people are matched by "
                                   f"their tenant and object id, so 'common' or a domain will not do, not {tenant!r}")\
                from None
        certificate = None
        certificate_path = environ.get("OIDC_CLIENT_CERTIFICATE") or environ.get("OIDC_CLIENT_CERTIFICATE_FILE")
        if certificate_path:
            try:
                certificate = Path(certificate_path.strip()).read_text()
            except (OSError, UnicodeDecodeError):
                raise GraphConfigError("OIDC_CLIENT_CERTIFICATE cannot be read as a PEM file") from None
        secret = _read_value(environ, "OIDC_CLIENT_SECRET")
        if not (certificate or secret):
            raise GraphConfigError("OIDC_CLIENT_ID needs OIDC_CLIENT_SECRET or OIDC_CLIENT_CERTIFICATE")
        return cls(tenant_id=tenant_id, client_id=client_id, client_secret=None if certificate else secret,
                   client_certificate_pem=certificate)


class _EntraPrivateKeyJWT(PrivateKeyJWT):
    """private_key_jwt as Entra takes it: client_id beside the assertion (optional in RFC 7523, asked for by Entra)."""

    def __call__(self, auth, method, uri, headers, body):
        uri, headers, body = super().__call__(auth, method, uri, headers, body)
        return uri, headers, add_params_to_qs(body or "", [("client_id", auth.client_id)])


class _MicrosoftApp(FlaskOAuth2App):
    """Authlib's Flask client, keeping the raw ID token of this request for a refusal's message."""

    def parse_id_token(self, token, nonce, *args, **kwargs):
        g.oidc_raw_id_token = token.get("id_token")
        return super().parse_id_token(token, nonce, *args, **kwargs)


class _OAuth(OAuth):
    oauth2_client_cls = _MicrosoftApp


def init_app(app) -> None:
    settings = app.config.get("OIDC_SETTINGS", "environ")
    if settings == "environ":
        settings = OidcSettings.from_environ()
    app.extensions["oidc_settings"] = settings
    app.extensions["oidc_oauth"] = _OAuth(app)


def microsoft_sign_in_enabled() -> bool:
    return current_app.extensions.get("oidc_settings") is not None


def _client():
    """The app's Authlib client, registered on first use (the simulator's URLs exist only once it runs)."""
    oauth: OAuth = current_app.extensions["oidc_oauth"]
    existing = oauth.create_client("microsoft")
    if existing is not None:
        return existing
    settings: OidcSettings = current_app.extensions["oidc_settings"]
    graph: GraphSettings = current_app.extensions["graph_settings"]
    authority = f"{graph.login_url}/{settings.tenant_id}"
    client_kwargs = {"scope": "openid profile email", "code_challenge_method": "S256",
                     "verify": ca_bundle_path(graph), "trust_env": False, "default_timeout": HTTP_TIMEOUT}
    auth_methods = None
    secret = settings.client_secret
    if settings.client_certificate_pem:
        credential = load_certificate_credential(settings.client_certificate_pem)
        thumbprint = base64.urlsafe_b64encode(bytes.fromhex(credential.sha256_thumbprint)).decode().rstrip("=")
        token_url = f"{authority}/oauth2/v2.0/token"
        auth_methods = [_EntraPrivateKeyJWT(token_url, headers={"x5t#S256": thumbprint}, alg="PS256")]
        client_kwargs["token_endpoint_auth_method"] = "private_key_jwt"
        secret = credential.private_key_pem
    else:
        client_kwargs["token_endpoint_auth_method"] = "client_secret_post"
    return oauth.register(
        "microsoft", client_id=settings.client_id, client_secret=secret,
        server_metadata_url=f"{authority}/v2.0/.well-known/openid-configuration",
        client_kwargs=client_kwargs, client_auth_methods=auth_methods,
    )


class MicrosoftRefused(Exception):
    def __init__(self, message: str, reason: str, status: int = 400, user: User | None = None):
        super().__init__(message)
        self.message, self.reason, self.status, self.user = message, reason, status, user


def _refuse(refused: MicrosoftRefused):
    db.session.rollback()
    current_app.logger.info("Microsoft sign-in refused: %s", refused.reason)
    record_audit("auth.microsoft_refused", actor=refused.user, details={"reason": refused.reason})
    db.session.commit()
    return render_template("auth/microsoft_refused.html", message=refused.message), refused.status


START_AGAIN = "Start again from the sign-in page."


def _claims_from_answer() -> dict:
    """The verified ID token claims of the answer in this request, or MicrosoftRefused."""
    settings: OidcSettings = current_app.extensions["oidc_settings"]
    client = _client()
    try:
        token = client.authorize_access_token()
    except MismatchingStateError:
        raise MicrosoftRefused("This sign-in answer does not belong to a sign-in started in this browser, or it was "
                               f"used already. {START_AGAIN}", "wrong state") from None
    except OAuthError as error:
        description = str(error.description or "")[:300]
        if error.error == "invalid_grant":
            raise MicrosoftRefused("Microsoft refused this sign-in's code (it was used already, or it expired). "
                                   f"{START_AGAIN}", "code refused: " + description[:120]) from None
        raise MicrosoftRefused(f"Microsoft did not sign you in: {str(error.error)[:64]}. {description}",
                               f"provider error: {str(error.error)[:64]}") from None
    except jose_errors.ExpiredTokenError:
        raise MicrosoftRefused(f"The sign-in from Microsoft had expired. {START_AGAIN}", "expired token") from None
    except (jose_errors.BadSignatureError, jose_errors.InvalidKeyIdError) as error:
        raise MicrosoftRefused("The sign-in answer was not signed by your Microsoft Entra tenant's keys, so it was "
                               "refused.", "bad signature" if isinstance(error, jose_errors.BadSignatureError)
                               else "unknown signing key") from None
    except jose_errors.ClaimError as error:  # InvalidClaimError, MissingClaimError
        claim = getattr(error, "claim", "") or ""
        if claim == "iss":
            other = _unverified_tenant()
            if other and other != settings.tenant_id:
                raise MicrosoftRefused("You signed in with an account of another Microsoft Entra organization. Only "
                                       "accounts of this MSP's own tenant can sign in here.", "another tenant",
                                       403) from None
            raise MicrosoftRefused("The sign-in answer came from another issuer than your Microsoft Entra tenant, so "
                                   "it was refused.", "wrong issuer") from None
        if claim in ("aud", "azp"):  # Authlib asks for azp when aud is not (only) this client
            raise MicrosoftRefused("The sign-in answer was meant for another application, so it was refused.",
                                   "wrong audience") from None
        if claim == "nonce":
            raise MicrosoftRefused(f"The sign-in answer does not match the sign-in started here. {START_AGAIN}",
                                   "wrong nonce") from None
        raise MicrosoftRefused("The sign-in answer could not be verified.", f"invalid claim {claim[:20]}") from None
    except (jose_errors.JoseError, ValueError) as error:
        raise MicrosoftRefused("The sign-in answer could not be verified.",
                               f"token not verified: {type(error).__name__}") from None
    except requests.RequestException as error:
        raise MicrosoftRefused("Microsoft's sign-in service could not be reached. Try again in a moment.",
                               f"provider unreachable: {type(error).__name__}", 503) from None
    claims = token.get("userinfo")
    if not claims:
        raise MicrosoftRefused("Microsoft answered without an ID token.", "no id token")
    if str(claims.get("tid", "")).lower() != settings.tenant_id:
        raise MicrosoftRefused("You signed in with an account of another Microsoft Entra organization. Only accounts "
                               "of this MSP's own tenant can sign in here.", "another tenant", 403)
    return dict(claims)


def _unverified_tenant() -> str | None:
    """The tid of a refused token, for the message only (never for a decision to let in)."""
    raw = g.get("oidc_raw_id_token")
    try:
        return str(jwt.decode(raw, options={"verify_signature": False}).get("tid", "")).lower() if raw else None
    except jwt.PyJWTError:
        return None


@bp.get("/login/microsoft")
def start():
    if not microsoft_sign_in_enabled():
        abort(404)
    try:
        return _client().authorize_redirect(url_for(".callback", _external=True))
    except (requests.RequestException, ValueError) as error:
        return _refuse(MicrosoftRefused("Microsoft's sign-in service could not be reached. Try again in a moment.",
                                        f"discovery failed: {type(error).__name__}", 503))


@bp.get("/login/microsoft/callback")
def callback():
    from app.web.account import invitations
    from app.web.account.auth import complete_sign_in

    if not microsoft_sign_in_enabled():
        abort(404)
    invitation_token = session.pop(invitations.SESSION_KEY, None)
    try:
        claims = _claims_from_answer()
        tenant_id, object_id = uuid.UUID(str(claims["tid"])), uuid.UUID(str(claims["oid"]))
    except MicrosoftRefused as refused:
        return _refuse(refused)
    except (KeyError, ValueError):
        return _refuse(MicrosoftRefused("The sign-in answer does not name the person (tid, oid).", "no oid"))
    user = db.session.scalar(select(User).where(User.entra_tenant_id == tenant_id, User.entra_object_id == object_id))
    if invitation_token:
        return _accept_invitation(invitation_token, claims, user, tenant_id, object_id)
    if user is None:
        return _refuse(MicrosoftRefused(
            f"{str(claims.get('preferred_username') or 'This account')[:120]} has no TenantAtlas access yet. Ask your "
            "administrator for an invitation, then accept it with Microsoft.", "unknown person", 403))
    if not user.is_active:
        return _refuse(MicrosoftRefused("This account is deactivated. Ask your administrator.", "inactive user", 403,
                                        user))
    complete_sign_in(user, "microsoft", strong=True)
    return redirect(url_for("shell.home"))


def _accept_invitation(token: str, claims: dict, user: User | None, tenant_id: uuid.UUID, object_id: uuid.UUID):
    """An invitation accepted by signing in with Microsoft: the linked account, or a new one linked now."""
    from app.web.account import invitations
    from app.web.account.auth import complete_sign_in

    invitation = None
    try:
        invitation = invitations.find(token)
        if user is None:
            email = str(claims.get("email") or claims.get("preferred_username") or "").strip().lower()
            if email != invitation.email:
                raise invitations.InvitationRefused(
                    f"This invitation is for {invitation.email}, but you signed in to Microsoft as "
                    f"{email[:120] or 'an account without an email'}. Sign in with the invited account.",
                    "wrong email", 403)
            if db.session.scalar(select(User.id).where(User.email == invitation.email)) is not None:
                raise invitations.InvitationRefused(
                    f"{invitation.email} has a TenantAtlas account already. Sign in with it, then open the invitation "
                    "link again to accept.", "email has a local account", 409)
            user = User(email=invitation.email, name=str(claims.get("name") or invitation.email)[:200],
                        password_hash=UNUSABLE_PASSWORD, entra_tenant_id=tenant_id, entra_object_id=object_id)
            db.session.add(user)
            db.session.flush()
            record_audit("user.create", actor=user, workspace=invitation.workspace, target_type="user",
                         target_id=user.id, target_name=user.name,
                         details={"email": user.email, "via": "invitation with Microsoft"})
        invitations.accept(invitation, user, "microsoft")
    except invitations.InvitationRefused as refused:
        db.session.rollback()
        if invitation is not None:
            from app.access import act_in_workspace

            act_in_workspace(invitation.workspace_id)
        invitations.refuse_audit(refused.reason, None, invitation)
        db.session.commit()
        return render_template("invitations/refused.html", message=refused.message), refused.status
    user.last_workspace_id = invitation.workspace_id
    db.session.flush()
    complete_sign_in(user, "microsoft", strong=True)
    return redirect(url_for("shell.home"))
