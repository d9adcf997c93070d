"""Connecting a tenant: the admin-consent round trip and what proves it.

A manager starts it; the browser goes to the tenant's admin consent endpoint
(`{GRAPH_LOGIN_URL}/{tenant}/v2.0/adminconsent`) and comes back to one fixed callback.
The callback accepts only a `state` this app signed for this user, workspace and
tenant, unexpired (15 minutes) and used once (its nonce row is consumed atomically),
and only when the returned `tenant` is that tenant.

That answer is not signed by Entra (its `tenant` is a query parameter anyone can type),
and an app-only token only shows that the tenant consented at some time, to anyone. So
the same person then signs in to that tenant (OpenID Connect, authorization code with
PKCE and nonce, through msal; the ID token comes straight from the tenant's token
endpoint, authenticated with the app's credentials): the connection is made only when
its `tid` is the tenant and its `wids` hold a role that can grant admin consent to
application permissions (Global Administrator, Privileged Role Administrator). Then
the app-only token shows which permissions were granted.
"""
from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from urllib.parse import urlencode

from flask import current_app, session
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import text

from app.extensions import db
from app.graph.errors import ConsentError
from app.models import ConsentRequest, Tenant
from app.sync.engine import spread_next_sync, utcnow
from app.sync.permissions import record_permissions
from app.sync.runner import graph_settings, sync_interval, token_provider

STATE_MAX_AGE_SECONDS = 15 * 60
_SALT = "tenantatlas-admin-consent"
PROOF_SESSION_KEY = "tenant_connection_proof"
# Directory role template ids that may grant tenant-wide admin consent to Microsoft Graph
# application permissions ("Grant tenant-wide admin consent to an application").
CONSENTING_ROLE_IDS = {
    "62e90394-69f5-4237-9190-012177145e10": "Global Administrator",
    "e8611ab8-c189-46e8-94e1-60213ab1f814": "Privileged Role Administrator",
}


class ConsentRefused(Exception):
    """The callback cannot be accepted; `message` says why, for the user."""

    def __init__(self, message: str, audit_reason: str):
        super().__init__(message)
        self.message, self.audit_reason = message, audit_reason


@dataclass(frozen=True)
class ConsentState:
    nonce: str
    user_id: int
    workspace_id: int
    tenant_external_id: str
    proof: bool = False  # the sign-in step (after the admin consent answer)


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=_SALT)


def start_consent(tenant: Tenant, user_id: int, redirect_uri: str) -> str:
    """Record a single-use nonce (caller commits) and return the admin consent URL."""
    nonce = secrets.token_urlsafe(32)
    db.session.add(ConsentRequest(tenant_id=tenant.id, workspace_id=tenant.workspace_id, user_id=user_id, nonce=nonce))
    state = _serializer().dumps({"n": nonce, "u": user_id, "w": tenant.workspace_id, "t": str(tenant.external_id)})
    settings = graph_settings()
    query = urlencode({"client_id": settings.client_id, "scope": settings.scope, "redirect_uri": redirect_uri,
                       "state": state})
    return f"{settings.login_url}/{tenant.external_id}/v2.0/adminconsent?{query}"


def read_state(raw_state: str) -> ConsentState:
    """The signed state, or ConsentRefused (forged, tampered, expired)."""
    if not raw_state or len(raw_state) > 2000:
        raise ConsentRefused("This consent answer carries no valid state. Start again from the tenant's page.",
                             "missing state")
    try:
        data = _serializer().loads(raw_state, max_age=STATE_MAX_AGE_SECONDS)
    except SignatureExpired:
        raise ConsentRefused("This consent answer has expired (15 minutes). Start again from the tenant's page.",
                             "expired state") from None
    except BadSignature:
        raise ConsentRefused("This consent answer was not started by TenantAtlas. Start again from the tenant's page.",
                             "forged state") from None
    try:
        return ConsentState(str(data["n"]), int(data["u"]), int(data["w"]), str(data["t"]), bool(data.get("p")))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ConsentRefused("This consent answer carries no valid state.", "malformed state") from None


def consume_nonce(state: ConsentState, tenant: Tenant) -> None:
    """Mark the nonce used, once: a replayed answer finds it used (ConsentRefused)."""
    used = db.session.execute(text(
        "UPDATE consent_requests SET used_at = now() WHERE nonce = :n AND tenant_id = :t AND user_id = :u "
        "AND used_at IS NULL RETURNING id"), {"n": state.nonce, "t": tenant.id, "u": state.user_id}).first()
    if used is None:
        raise ConsentRefused("This consent answer was used already. Start again from the tenant's page to reconnect.",
                             "replayed state")


def same_tenant(returned: str | None, tenant: Tenant) -> bool:
    try:
        return returned is not None and uuid.UUID(returned.strip("{}")) == tenant.external_id
    except ValueError:
        return False


def complete_connection(tenant: Tenant, user_id: int) -> list[str]:
    """After consent: a fresh token (msal remembers failures per client), the granted
    permissions recorded, the tenant connected. Returns the read permissions still missing."""
    provider = token_provider()
    provider.forget(str(tenant.external_id))
    now = utcnow()
    try:
        token = provider.acquire(str(tenant.external_id))
    except ConsentError as error:
        provider.forget(str(tenant.external_id))
        tenant.connection_status = "consent_revoked" if error.kind in ("not_consented", "app_removed") else "failing"
        tenant.connection_error = error.message[:500]
        raise
    missing = record_permissions(tenant, set(token.roles), now)
    tenant.consented_at, tenant.consented_by_user_id = now, user_id
    tenant.connection_error, tenant.consecutive_failures, tenant.sync_paused_at = None, 0, None
    tenant.next_sync_at = spread_next_sync(tenant, now, sync_interval())
    return missing


def start_proof(tenant: Tenant, state: ConsentState, redirect_uri: str) -> str:
    """The sign-in that proves who consented: the flow goes to the session, the browser to the authorize URL."""
    proof_state = _serializer().dumps({"n": state.nonce, "u": state.user_id, "w": state.workspace_id,
                                       "t": str(tenant.external_id), "p": 1})
    flow = token_provider().client(str(tenant.external_id)).initiate_auth_code_flow(
        scopes=[], redirect_uri=redirect_uri, state=proof_state)
    session[PROOF_SESSION_KEY] = {"flow": flow, "tenant_id": tenant.id}
    return flow["auth_uri"]


def finish_proof(tenant: Tenant, answer: dict) -> dict:
    """The ID token claims of the admin who signed in, or ConsentRefused. The flow is used once."""
    pending = session.pop(PROOF_SESSION_KEY, None)
    if not isinstance(pending, dict) or pending.get("tenant_id") != tenant.id or not isinstance(pending.get("flow"), dict):
        raise ConsentRefused("This sign-in answer does not belong to a connection in progress in this browser. "
                             "Start again from the tenant's page.", "proof without a flow")
    if answer.get("error"):
        raise ConsentRefused(f"The sign-in to {tenant.name} did not complete: {str(answer.get('error'))[:64]}. "
                             f"{str(answer.get('error_description') or '')[:300]}".strip(), "proof sign-in error")
    try:
        result = token_provider().client(str(tenant.external_id)).acquire_token_by_auth_code_flow(
            pending["flow"], answer)
    except ValueError:  # msal: state mismatch, or the answer is not for this flow
        raise ConsentRefused("This sign-in answer does not match the sign-in that was started.",
                             "proof state mismatch") from None
    if not isinstance(result, dict) or "id_token_claims" not in result:
        error = (result or {}).get("error_description") or (result or {}).get("error") or "no ID token"
        raise ConsentRefused(f"The sign-in to {tenant.name} could not be verified: {str(error)[:300]}",
                             "proof token error")
    claims = result["id_token_claims"]
    if not same_tenant(str(claims.get("tid") or ""), tenant):
        raise ConsentRefused(f"The person who signed in belongs to another tenant, not {tenant.name}.",
                             "proof tenant mismatch")
    roles = claims.get("wids")
    if not isinstance(roles, list):
        raise ConsentRefused("The sign-in did not say which directory roles the person holds. The Entra app must "
                             "emit them: set groupMembershipClaims to \"DirectoryRole\" (README, Connecting customer "
                             "tenants).", "proof without wids")
    if not CONSENTING_ROLE_IDS.keys() & {str(role).lower() for role in roles}:
        raise ConsentRefused(f"{str(claims.get('preferred_username') or 'The person who signed in')[:100]} is not a "
                             f"Global Administrator or Privileged Role Administrator of {tenant.name}, so this sign-in "
                             "does not prove the consent. Ask one of them to connect the tenant.",
                             "proof by a non-admin")
    return claims
