"""The identity platform side: what the login server answers.

    GET  /{tenant}/v2.0/.well-known/openid-configuration    OpenID discovery (msal reads it first)
    GET  /{tenant}/discovery/v2.0/keys                       the token signing keys (JWKS)
    POST /{tenant}/oauth2/v2.0/token                         client credentials: client_secret or a
                                                             client_assertion (RS256 + x5t, PS256 + x5t#S256)
                                                             or authorization_code (+ code_verifier,
                                                             redirect_uri; same client authentication):
                                                             id_token (RS256, the JWKS key) + access_token
    GET  /{tenant}/oauth2/v2.0/authorize?client_id&response_type=code&redirect_uri&scope(openid ...)
         &state&nonce&code_challenge&code_challenge_method=S256[&prompt&login_hint&response_mode]
                                                             OpenID Connect sign-in of the tenant's
                                                             sign-in user (Simulator.set_signin_user):
                                                             a Continue/Cancel page ("prompt"), or an
                                                             immediate redirect with code+state
                                                             ("accept") or access_denied ("deny")
    POST /{tenant}/oauth2/v2.0/authorize/decision           the sign-in page's answer
    GET  /{tenant}/v2.0/adminconsent?client_id&scope&redirect_uri&state
                                                             admin consent: a page with Accept/Cancel
                                                             ("prompt"), or an immediate redirect
                                                             ("accept"/"deny")

Errors are the identity platform's: `error`, `error_description` starting "AADSTS<code>:"
followed by trace and correlation ids and a timestamp, `error_codes`, `timestamp`,
`trace_id`, `correlation_id`, `error_uri`; 400, or 401 for invalid_client.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import sys
import time
import traceback
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from . import id_token_faults
from .common import RequestRecord, json_response
from .pki import b64url, thumbprints

if TYPE_CHECKING:
    from .core import Simulator
    from .store import TenantState

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GENERIC_TENANTS = ("common", "organizations", "consumers")
RESERVED_SCOPES = {"openid", "profile", "offline_access", "email"}
ACCESS_TOKEN_LIFETIME = 3600
ID_TOKEN_LIFETIME = 3600
PKCE_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
PKCE_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")
RESPONSE_MODES = ("query", "fragment", "form_post")
MEMBER_USER_ROLE = "b79fbf4d-3ef9-4689-8143-76b194e85509"  # in every member's `wids`
# Directory role template ids (the `wids` claim) -> display names, for the sign-in page.
ROLE_TEMPLATE_NAMES = {
    "62e90394-69f5-4237-9190-012177145e10": "Global Administrator",
    "f2ef992c-3afb-46b9-b7cf-a126ee74c451": "Global Reader",
    "3a2c62db-5318-420d-8d74-23affee5d9d5": "Intune Administrator",
    "194ae4cb-b126-40b2-bd5b-6091b380977d": "Security Administrator",
    "5d6b6bb7-de71-4623-b4af-96380a352509": "Security Reader",
    "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3": "Application Administrator",
    "158c047a-c907-4556-b7ef-446551a6b5f7": "Cloud Application Administrator",
    "e8611ab8-c189-46e8-94e1-60213ab1f814": "Privileged Role Administrator",
    "b79fbf4d-3ef9-4689-8143-76b194e85509": "User",
}


class AadError(Exception):
    def __init__(self, code: int, error: str, message: str, status: int = 400, **extra: Any):
        super().__init__(message)
        self.code = code
        self.error = error
        self.message = message
        self.status = status
        self.extra = extra


def _timestamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())


class LoginApp:
    def __init__(self, simulator: Simulator):
        self.sim = simulator
        self._consent_nonces: dict[str, float] = {}
        self._signin_tickets: dict[str, tuple[float, dict[str, Any]]] = {}
        self._codes: dict[str, dict[str, Any]] = {}

    def __call__(self, environ, start_response):
        request = Request(environ)
        request.max_content_length = 1024 * 1024
        correlation_id = request.headers.get("client-request-id") or str(uuid.uuid4())
        tenant_record: list[str | None] = [None]
        try:
            self.sim._delay()
            response = self.dispatch(request, correlation_id, tenant_record)
        except AadError as error:
            response = self.error_response(error, correlation_id)
        except HTTPException as error:  # e.g. a body over the size limit
            response = self.error_response(
                AadError(900144, "invalid_request", f"The request could not be read: {error.name}.", error.code or 400),
                correlation_id,
            )
        except Exception:
            traceback.print_exc(file=sys.stderr)
            response = self.error_response(
                AadError(90033, "temporarily_unavailable", "A transient error has occurred. Please try again.", 503),
                correlation_id,
            )
        self.sim._record(RequestRecord(
            method=request.method, path=request.path, tenant_id=tenant_record[0], status=response.status_code,
            in_batch=False, client_request_id=request.headers.get("client-request-id"), throttle_priority=None,
            time=time.time(), query=request.query_string.decode("latin-1"), server="login", request_id=correlation_id,
        ))
        return response(environ, start_response)

    # --- answers -----------------------------------------------------------------------------

    def error_body(self, error: AadError, correlation_id: str) -> dict[str, Any]:
        trace_id = str(uuid.uuid4())
        stamp = _timestamp()
        return {
            "error": error.error,
            "error_description": f"AADSTS{error.code}: {error.message}\r\nTrace ID: {trace_id}\r\n"
                                 f"Correlation ID: {correlation_id}\r\nTimestamp: {stamp}",
            "error_codes": [error.code],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"{self.sim.login_url}/error?code={error.code}",
            **error.extra,
        }

    def error_response(self, error: AadError, correlation_id: str) -> Response:
        return json_response(self.error_body(error, correlation_id), error.status,
                             {"client-request-id": correlation_id, "Cache-Control": "no-store, no-cache"})

    def dispatch(self, request: Request, correlation_id: str, tenant_record: list) -> Response:
        parts = [part for part in request.path.split("/") if part]
        if not parts:
            return self.page(404, "Not found", "<p>This is the Graph simulator's sign-in service.</p>")
        segment = parts[0]
        rest = parts[1:]
        tenant_record[0] = segment
        if rest == ["v2.0", ".well-known", "openid-configuration"] and request.method == "GET":
            return self.discovery(segment, correlation_id, tenant_record)
        if rest in (["discovery", "v2.0", "keys"], ["discovery", "keys"]) and request.method == "GET":
            return json_response({"keys": [self.jwk()]})
        if rest == ["oauth2", "v2.0", "token"]:
            if request.method != "POST":
                raise AadError(900561, "invalid_request", "The endpoint only accepts POST, OPTIONS requests. Received a GET request.")
            return self.token(request, segment, correlation_id, tenant_record)
        if rest == ["oauth2", "v2.0", "authorize"] and request.method in ("GET", "POST"):
            return self.authorize(request, segment, tenant_record)
        if rest == ["oauth2", "v2.0", "authorize", "decision"] and request.method == "POST":
            return self.signin_decision(request, segment, tenant_record)
        if rest == ["v2.0", "adminconsent"] and request.method == "GET":
            return self.admin_consent(request, segment, tenant_record)
        if rest == ["v2.0", "adminconsent", "decision"] and request.method == "POST":
            return self.consent_decision(request, segment, tenant_record)
        return self.page(404, "Not found", f"<p>No such endpoint: {html.escape(request.path)}</p>")

    # --- discovery ---------------------------------------------------------------------------

    def _tenant(self, segment: str) -> TenantState | None:
        return self.sim._find_tenant(segment)

    def discovery(self, segment: str, correlation_id: str, tenant_record: list) -> Response:
        if segment.lower() in GENERIC_TENANTS:
            issuer_tenant = "{tenantid}"
        else:
            tenant = self._tenant(segment)
            if tenant is None:
                raise AadError(90002, "invalid_tenant", self._tenant_not_found(segment))
            issuer_tenant = tenant.tenant_id
            tenant_record[0] = tenant.tenant_id
        login = self.sim.login_url
        return json_response({
            "token_endpoint": f"{login}/{segment}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{login}/{segment}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{login}/{issuer_tenant}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{self.sim.api_url}/oidc/userinfo",
            "authorization_endpoint": f"{login}/{segment}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{login}/{segment}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{login}/{segment}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name",
                                 "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce",
                                 "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": urlsplit(login).netloc,
            "cloud_graph_host_name": urlsplit(self.sim.api_url).netloc,
            "msgraph_host": urlsplit(self.sim.api_url).netloc,
        }, headers={"client-request-id": correlation_id})

    def jwk(self) -> dict[str, Any]:
        numbers = self.sim._pki.signing_key.public_key().public_numbers()
        cert = self.sim._pki.signing_cert
        der = cert.public_bytes(serialization.Encoding.DER)
        x5t = thumbprints(cert)[0]
        return {
            "kty": "RSA", "use": "sig", "kid": x5t, "x5t": x5t,
            "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
            "x5c": [base64.b64encode(der).decode()],
            "issuer": f"{self.sim.login_url}/{{tenantid}}/v2.0",
        }

    @staticmethod
    def _tenant_not_found(segment: str) -> str:
        return (f"Tenant '{segment}' not found. Check to make sure you have the correct tenant ID and are signing "
                "into the correct cloud. Check with your subscription administrator, this may happen if there are "
                "no active subscriptions for the tenant.")

    def _app_not_found(self, tenant: TenantState | str) -> str:
        directory = tenant if isinstance(tenant, str) else tenant.tenant_id
        return (f"Application with identifier '{self.sim.client_id}' was not found in the directory '{directory}'. "
                "This can happen if the application has not been installed by the administrator of the tenant or "
                "consented to by any user in the tenant. You may have sent your authentication request to the "
                "wrong tenant.")

    # --- token -------------------------------------------------------------------------------

    def token(self, request: Request, segment: str, correlation_id: str, tenant_record: list) -> Response:
        form = request.form
        if segment.lower() in GENERIC_TENANTS:
            raise AadError(50059, "invalid_request", "No tenant-identifying information found in either the request "
                           "or implied by any provided credentials.")
        tenant = self._tenant(segment)
        if tenant is None:
            raise AadError(90002, "invalid_request", self._tenant_not_found(segment))
        tenant_record[0] = tenant.tenant_id

        grant_type = form.get("grant_type")
        if not grant_type:
            raise AadError(900144, "invalid_request", "The request body must contain the following parameter: 'grant_type'.")
        if grant_type not in ("client_credentials", "authorization_code"):
            raise AadError(70003, "unsupported_grant_type", f"The app requested an unsupported grant type '{grant_type}'.")

        client_id = form.get("client_id")
        basic = request.authorization if request.authorization and request.authorization.type == "basic" else None
        if basic is not None:
            client_id = client_id or basic.username
        if not client_id:
            raise AadError(900144, "invalid_request", "The request body must contain the following parameter: 'client_id'.")
        if client_id.lower() != self.sim.client_id:
            raise AadError(700016, "unauthorized_client", self._app_not_found(tenant).replace(self.sim.client_id, client_id))
        if grant_type == "authorization_code":
            self._check_credential(request, form, basic, segment, tenant)
            return self.redeem_code(form, tenant, client_id, correlation_id)

        fault = self.sim._faults.take({"consent-revoked", "consent-required"}, tenant.tenant_id, request.path)
        if fault and fault.kind == "consent-required":
            raise AadError(65001, "invalid_grant",
                           f"The user or administrator has not consented to use the application with ID "
                           f"'{self.sim.client_id}' named 'TenantAtlas'. Send an interactive authorization request "
                           "for this user and resource.", suberror="consent_required")
        with self.sim._lock:
            consented = tenant.consented
        if fault or not consented:
            raise AadError(700016, "unauthorized_client", self._app_not_found(tenant))

        self._check_credential(request, form, basic, segment, tenant)

        scope = form.get("scope")
        if not scope:
            raise AadError(900144, "invalid_request", "The request body must contain the following parameter: 'scope'.")
        resources = [item for item in scope.split() if item not in RESERVED_SCOPES]
        if len(resources) != 1 or not resources[0].endswith("/.default"):
            raise AadError(1002012, "invalid_scope",
                           f"The provided value for scope {scope} is not valid. Client credential flows must have a "
                           "scope value with /.default suffixed to the resource identifier (application ID URI).")
        resource = resources[0].removesuffix("/.default").rstrip("/")
        if resource != self.sim.api_url:
            raise AadError(500011, "invalid_resource",
                           f"The resource principal named {resource} was not found in the tenant named {tenant.name}. "
                           "This can happen if the application has not been installed by the administrator of the "
                           "tenant or consented to by any user in the tenant. You might have sent your authentication "
                           "request to the wrong tenant.")
        return json_response(
            {"token_type": "Bearer", "expires_in": ACCESS_TOKEN_LIFETIME - 1,
             "ext_expires_in": ACCESS_TOKEN_LIFETIME - 1, "access_token": self.issue(tenant)},
            headers={"client-request-id": correlation_id, "Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
        )

    def issue(self, tenant: TenantState) -> str:
        now = int(time.time())
        with self.sim._lock:
            roles = list(tenant.roles)
        claims = {
            "aud": self.sim.api_url,
            "iss": f"https://sts.windows.net/{tenant.tenant_id}/",
            "iat": now, "nbf": now, "exp": now + ACCESS_TOKEN_LIFETIME,
            "aio": b64url(secrets.token_bytes(24)),
            "app_displayname": "TenantAtlas",
            "appid": self.sim.client_id,
            "appidacr": "2",
            "idp": f"https://sts.windows.net/{tenant.tenant_id}/",
            "idtyp": "app",
            "oid": tenant.service_principal_id,
            "sub": tenant.service_principal_id,
            "tid": tenant.tenant_id,
            "uti": b64url(secrets.token_bytes(16)),
            "ver": "1.0",
        }
        if roles:
            claims["roles"] = roles
        kid = self.sim._pki.signing_kid
        return jwt.encode(claims, self.sim._pki.signing_key, algorithm="RS256",
                          headers={"typ": "JWT", "kid": kid, "x5t": kid})

    def _check_credential(self, request: Request, form, basic, segment: str, tenant: TenantState) -> None:
        secret = form.get("client_secret") or (basic.password if basic is not None else None)
        assertion = form.get("client_assertion")
        if secret and assertion:
            raise AadError(700025, "invalid_client", "Client is public so neither 'client_assertion' nor "
                           "'client_secret' should be presented together.", 401)
        if not secret and not assertion:
            raise AadError(7000218, "invalid_client", "The request body must contain the following parameter: "
                           "'client_assertion' or 'client_secret'.", 401)
        if secret:
            if not secrets.compare_digest(secret.encode(), self.sim.client_secret.encode()):
                raise AadError(7000215, "invalid_client",
                               "Invalid client secret provided. Ensure the secret being sent in the request is the "
                               "client secret value, not the client secret ID, for a secret added to app "
                               f"'{self.sim.client_id}'.", 401)
            return
        if form.get("client_assertion_type") != JWT_BEARER:
            raise AadError(900144, "invalid_request", "The request body must contain the following parameter: "
                           "'client_assertion_type'.")
        self._check_assertion(assertion, segment, tenant)

    def _check_assertion(self, assertion: str, segment: str, tenant: TenantState) -> None:
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            raise AadError(50027, "invalid_client", "JWT token is invalid or malformed.", 401) from None
        algorithm = header.get("alg")
        x5t, x5t_s256 = thumbprints(self.sim._pki.app_cert)
        if algorithm not in ("RS256", "PS256"):
            raise AadError(5002730, "invalid_client", f"Invalid JWT token. Unsupported signing algorithm '{algorithm}'.", 401)
        given = header.get("x5t#S256") if "x5t#S256" in header else header.get("x5t")
        expected = x5t_s256 if "x5t#S256" in header else x5t
        if not isinstance(given, str) or given.rstrip("=") != expected:  # msal keeps base64 padding
            raise AadError(700027, "invalid_client",
                           "The certificate with identifier used to sign the client assertion is not registered on "
                           f"application. [Reason - The key was not found., Thumbprint of key used by client: "
                           f"'{given}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see "
                           f"configured keys for app Id '{self.sim.client_id}'.]", 401)
        public_key = self.sim._pki.app_cert.public_key()
        assert isinstance(public_key, rsa.RSAPublicKey)
        audiences = {
            f"{self.sim.login_url}/{segment}/oauth2/v2.0/token",
            f"{self.sim.login_url}/{tenant.tenant_id}/oauth2/v2.0/token",
            f"{self.sim.login_url}/{tenant.tenant_id}/oauth2/token",
        }
        try:
            claims = jwt.decode(assertion, public_key, algorithms=[algorithm], options={
                "verify_aud": False, "verify_exp": False, "verify_nbf": False, "verify_iat": False,
            })
        except jwt.InvalidSignatureError:
            raise AadError(700027, "invalid_client", "Client assertion failed signature validation.", 401) from None
        except jwt.PyJWTError:
            raise AadError(50027, "invalid_client", "JWT token is invalid or malformed.", 401) from None
        for claim in ("aud", "iss", "sub", "jti", "exp"):
            if not claims.get(claim):
                raise AadError(50027, "invalid_client", f"JWT token is invalid or malformed: the '{claim}' claim is missing.", 401)
        if claims["iss"] != self.sim.client_id or claims["sub"] != self.sim.client_id:
            raise AadError(700021, "invalid_client", "Client assertion application identifier doesn't match "
                           "'client_id' parameter. Review the documentation at "
                           "https://learn.microsoft.com/entra/identity-platform/certificate-credentials .", 401)
        audience = claims["aud"]
        audience_values = audience if isinstance(audience, list) else [audience]
        if not any(str(value).lower() in {item.lower() for item in audiences} for value in audience_values):
            raise AadError(50027, "invalid_client",
                           f"JWT token is invalid: its audience '{audience}' is not this token endpoint.", 401)
        now = time.time()
        try:
            expires, not_before = float(claims["exp"]), float(claims.get("nbf", claims.get("iat", now)))
        except (TypeError, ValueError):
            raise AadError(50027, "invalid_client", "JWT token is invalid or malformed.", 401) from None
        if expires < now - 300 or not_before > now + 300:
            def moment(value: float) -> str:
                return time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime(value))

            raise AadError(700024, "invalid_client",
                           f"Client assertion is not within its valid time range. Current time: {moment(now)}, "
                           f"assertion valid from {moment(not_before)}, expiry time of assertion {moment(expires)}. "
                           "Review the documentation at "
                           "https://learn.microsoft.com/entra/identity-platform/certificate-credentials .", 401)

    # --- admin consent -----------------------------------------------------------------------

    def page(self, status: int, title: str, body: str) -> Response:
        document = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: "Segoe UI", system-ui, sans-serif; background: #f2f2f2; margin: 0; }}
main {{ max-width: 440px; margin: 8vh auto; background: #fff; padding: 44px; box-shadow: 0 2px 6px rgba(0,0,0,.2); }}
h1 {{ font-size: 1.5rem; font-weight: 600; margin: 0 0 1rem; }}
.note {{ color: #605e5c; font-size: .85rem; }}
ul {{ padding-left: 1.2rem; }} li {{ margin: .3rem 0; }}
.buttons {{ display: flex; gap: .5rem; justify-content: flex-end; margin-top: 1.5rem; }}
button {{ min-width: 108px; padding: .45rem 1rem; font-size: 1rem; border: 1px solid #8a8886; background: #fff; cursor: pointer; }}
button.primary {{ background: #0067b8; border-color: #0067b8; color: #fff; }}
select {{ width: 100%; padding: .4rem; font-size: 1rem; }}
code {{ font-size: .8rem; word-break: break-all; }}
</style></head>
<body><main>
<p class="note">Microsoft Graph simulator (TenantAtlas) &mdash; not Microsoft</p>
<h1>{html.escape(title)}</h1>
{body}
</main></body></html>"""
        return Response(document, status=status, content_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})

    def _consent_error_page(self, code: int, message: str) -> Response:
        return self.page(400, "Sorry, but we're having trouble signing you in.",
                         f"<p><code>AADSTS{code}: {html.escape(message)}</code></p>")

    def _client_or_redirect_refused(self, client_id: str, redirect_uri: str, segment: str) -> Response | None:
        """The error page a browser gets (no redirect: where to is in doubt) for a bad client or redirect URI."""
        if not client_id:
            return self._consent_error_page(900144, "The request body must contain the following parameter: 'client_id'.")
        if client_id.lower() != self.sim.client_id:
            return self._consent_error_page(700016, self._app_not_found(segment).replace(self.sim.client_id, client_id))
        if not redirect_uri:
            return self._consent_error_page(900144, "The request body must contain the following parameter: 'redirect_uri'.")
        parsed = urlsplit(redirect_uri)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.fragment:
            return self._consent_error_page(50011, f"The redirect URI '{redirect_uri}' specified in the request does "
                                            f"not match the redirect URIs configured for the application '{client_id}'.")
        return None

    def _consent_request(self, values, segment: str) -> tuple[dict[str, str], TenantState | None] | Response:
        client_id = values.get("client_id", "")
        redirect_uri = values.get("redirect_uri", "")
        scope = values.get("scope", "")
        refused = self._client_or_redirect_refused(client_id, redirect_uri, segment)
        if refused is not None:
            return refused
        if not scope:
            return self._consent_error_page(900144, "The request body must contain the following parameter: 'scope'.")
        tenant = None
        if segment.lower() not in GENERIC_TENANTS:
            tenant = self._tenant(segment)
            if tenant is None:
                return self._consent_error_page(90002, self._tenant_not_found(segment))
        request = {"client_id": client_id, "redirect_uri": redirect_uri, "scope": scope}
        if "state" in values:
            request["state"] = values.get("state", "")
        return request, tenant

    def _redirect(self, consent: dict[str, str], params: dict[str, str]) -> Response:
        if "state" in consent:
            params["state"] = consent["state"]
        uri = consent["redirect_uri"]
        location = uri + ("&" if urlsplit(uri).query else ("" if uri.endswith("?") else "?")) + urlencode(params)
        return Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})

    def _grant(self, consent: dict[str, str], tenant: TenantState) -> Response:
        self.sim.grant_consent(tenant.tenant_id)
        return self._redirect(consent, {"admin_consent": "True", "tenant": tenant.tenant_id, "scope": consent["scope"]})

    def _deny(self, consent: dict[str, str]) -> Response:
        trace_id, correlation_id = uuid.uuid4(), uuid.uuid4()
        return self._redirect(consent, {
            "error": "access_denied",
            "error_subcode": "cancel",
            "error_description": f"AADSTS65004: User declined to consent to access the app.\r\nTrace ID: {trace_id}"
                                 f"\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {_timestamp()}",
        })

    def admin_consent(self, request: Request, segment: str, tenant_record: list) -> Response:
        parsed = self._consent_request(request.args, segment)
        if isinstance(parsed, Response):
            return parsed
        consent, tenant = parsed
        if tenant is not None:
            tenant_record[0] = tenant.tenant_id
        mode = self.sim.consent_mode
        if mode == "deny":
            return self._deny(consent)
        if mode == "accept":
            if tenant is None:
                return self._consent_error_page(90002, f"The simulator cannot pick a tenant for '{segment}' without "
                                                "asking: use a tenant id in the admin consent URL.")
            return self._grant(consent, tenant)

        nonce = secrets.token_urlsafe(24)
        now = time.time()
        with self.sim._lock:
            self._consent_nonces = {key: stamp for key, stamp in self._consent_nonces.items() if stamp > now - 3600}
            self._consent_nonces[nonce] = now
            tenants = [(item.tenant_id, item.name) for item in self.sim._tenants.values()]
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(key)}" value="{html.escape(value)}">'
            for key, value in {**consent, "nonce": nonce}.items()
        )
        if tenant is None:
            options = "".join(
                f'<option value="{html.escape(tid)}">{html.escape(name)} ({html.escape(tid)})</option>'
                for tid, name in sorted(tenants, key=lambda pair: pair[1])
            )
            who = f'<p><label for="tenant">Organization</label><select id="tenant" name="tenant">{options}</select></p>'
        else:
            who = (f"<p>Signed in as <strong>admin@{html.escape(tenant.domain)}</strong> for "
                   f"<strong>{html.escape(tenant.name)}</strong> (<code>{html.escape(tenant.tenant_id)}</code>).</p>")
        permissions = "".join(f"<li>{html.escape(role)}</li>" for role in self.sim._consent_roles(tenant))
        body = f"""{who}
<p><strong>TenantAtlas</strong> (<code>{html.escape(self.sim.client_id)}</code>) needs permission to:</p>
<ul>{permissions}</ul>
<p class="note">Accepting grants these application permissions for the whole organization.</p>
<form method="post" action="/{html.escape(segment)}/v2.0/adminconsent/decision">{hidden}
<div class="buttons"><button type="submit" name="decision" value="cancel">Cancel</button>
<button type="submit" name="decision" value="accept" class="primary">Accept</button></div></form>"""
        return self.page(200, "Permissions requested", body)

    def consent_decision(self, request: Request, segment: str, tenant_record: list) -> Response:
        form = request.form
        nonce = form.get("nonce", "")
        with self.sim._lock:
            issued = self._consent_nonces.pop(nonce, None)
        if issued is None or issued < time.time() - 3600:
            return self._consent_error_page(90014, "The consent page has expired or was already answered: start again.")
        target = segment if segment.lower() not in GENERIC_TENANTS else form.get("tenant", "")
        parsed = self._consent_request(form, target)
        if isinstance(parsed, Response):
            return parsed
        consent, tenant = parsed
        if tenant is None:
            return self._consent_error_page(90002, self._tenant_not_found(target))
        tenant_record[0] = tenant.tenant_id
        if form.get("decision") == "accept":
            return self._grant(consent, tenant)
        return self._deny(consent)

    # --- OpenID Connect sign-in (authorization code flow with PKCE) ------------------------

    @staticmethod
    def _described(code: int, message: str) -> str:
        return (f"AADSTS{code}: {message}\r\nTrace ID: {uuid.uuid4()}\r\nCorrelation ID: {uuid.uuid4()}"
                f"\r\nTimestamp: {_timestamp()}")

    def _auth_redirect(self, auth: dict[str, Any], params: dict[str, str]) -> Response:
        """The answer to the redirect URI, in the request's response_mode (query by default)."""
        if auth.get("state") is not None:
            params["state"] = auth["state"]
        uri = auth["redirect_uri"]
        mode = auth.get("response_mode") or "query"
        if mode == "form_post":
            fields = "".join(f'<input type="hidden" name="{html.escape(key)}" value="{html.escape(value)}">'
                             for key, value in params.items())
            document = (f'<!doctype html><html><head><title>Working...</title></head><body onload="document.forms[0].submit()">'
                        f'<form method="POST" name="hiddenform" action="{html.escape(uri)}">{fields}'
                        '<noscript><p>Script is disabled. Click Submit to continue.</p><input type="submit" value="Submit">'
                        '</noscript></form></body></html>')
            return Response(document, status=200, content_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-store"})
        if mode == "fragment":
            location = uri + "#" + urlencode(params)
        else:
            location = uri + ("&" if urlsplit(uri).query else ("" if uri.endswith("?") else "?")) + urlencode(params)
        return Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})

    def _auth_error(self, auth: dict[str, Any], error: str, code: int, message: str, **extra: str) -> Response:
        return self._auth_redirect(auth, {"error": error, "error_description": self._described(code, message), **extra})

    def _signin_tenant(self, segment: str, login_hint: str) -> TenantState | None:
        if segment.lower() not in GENERIC_TENANTS:
            return self._tenant(segment)
        domain = login_hint.rpartition("@")[2] if "@" in login_hint else ""
        return self._tenant(domain) if domain else None

    def authorize(self, request: Request, segment: str, tenant_record: list) -> Response:
        values = request.values
        client_id = values.get("client_id", "")
        redirect_uri = values.get("redirect_uri", "")
        refused = self._client_or_redirect_refused(client_id, redirect_uri, segment)
        if refused is not None:
            return refused
        response_mode = values.get("response_mode") or "query"
        if response_mode not in RESPONSE_MODES:
            return self._consent_error_page(70007, f"The application returned an unsupported value of "
                                            f"'{response_mode}' for 'response_mode' when requesting a token.")
        login_hint = values.get("login_hint", "")
        tenant = self._signin_tenant(segment, login_hint)
        if tenant is None:
            if segment.lower() in GENERIC_TENANTS:
                return self._consent_error_page(90002, f"The simulator cannot pick a tenant for '{segment}': use a "
                                                "tenant id in the authority, or a login_hint with the tenant's domain.")
            return self._consent_error_page(90002, self._tenant_not_found(segment))
        tenant_record[0] = tenant.tenant_id

        auth: dict[str, Any] = {"redirect_uri": redirect_uri, "response_mode": response_mode}
        if "state" in values:
            auth["state"] = values.get("state", "")
        response_type = values.get("response_type", "")
        if not response_type:
            return self._auth_error(auth, "invalid_request", 900144,
                                    "The request body must contain the following parameter: 'response_type'.")
        if response_type.split() != ["code"]:
            return self._auth_error(auth, "unsupported_response_type", 70005,
                                    f"The provided value for the input parameter 'response_type' is not allowed for "
                                    f"this request. Expected value: 'code'. Received value: '{response_type}'.")
        scope = values.get("scope", "")
        if not scope:
            return self._auth_error(auth, "invalid_request", 900144,
                                    "The request body must contain the following parameter: 'scope'.")
        if "openid" not in scope.split():
            return self._auth_error(auth, "invalid_scope", 70011,
                                    f"The provided value for the input parameter 'scope' is not valid. The scope "
                                    f"'{scope}' does not contain 'openid', which the simulator's sign-in requires.")
        challenge = values.get("code_challenge", "")
        method = values.get("code_challenge_method", "")
        if not challenge:
            return self._auth_error(auth, "invalid_request", 50147,
                                    "The request body must contain the following parameter: 'code_challenge' "
                                    "(the simulator only issues codes with PKCE, code_challenge_method=S256).")
        if method != "S256":
            return self._auth_error(auth, "invalid_request", 501491,
                                    f"Invalid code_challenge_method '{method}': the simulator supports 'S256' only.")
        if not PKCE_CHALLENGE.fullmatch(challenge):
            return self._auth_error(auth, "invalid_request", 50147,
                                    "The size of the code challenge parameter is not valid.")
        prompt = values.get("prompt", "")
        auth.update({
            "tenant_id": tenant.tenant_id, "client_id": self.sim.client_id, "scope": scope,
            "nonce": values.get("nonce"), "code_challenge": challenge, "segment": segment,
        })
        mode = self.sim.consent_mode
        if mode == "deny":
            return self._signin_denied(auth)
        if mode == "accept":
            return self._issue_code(auth, tenant)
        if prompt == "none":
            return self._auth_error(auth, "login_required", 50058,
                                    "A silent sign-in request was sent but no user is signed in.")
        ticket = secrets.token_urlsafe(24)
        now = time.time()
        with self.sim._lock:
            self._signin_tickets = {key: item for key, item in self._signin_tickets.items() if item[0] > now - 3600}
            self._signin_tickets[ticket] = (now, auth)
        user = self.sim.signin_user(tenant.tenant_id)
        roles = ", ".join(ROLE_TEMPLATE_NAMES.get(role, role) for role in user["roles"]) or "no directory roles"
        body = f"""<p>Sign in to <strong>{html.escape(tenant.name)}</strong> as <strong>{html.escape(user['username'])}</strong>
({html.escape(roles)})</p>
<p><strong>TenantAtlas</strong> (<code>{html.escape(self.sim.client_id)}</code>) will learn who you are
(<code>{html.escape(scope)}</code>).</p>
<p class="note">Tenant <code>{html.escape(tenant.tenant_id)}</code>; the simulator signs this user in without a password.</p>
<form method="post" action="/{html.escape(segment)}/oauth2/v2.0/authorize/decision">
<input type="hidden" name="ticket" value="{html.escape(ticket)}">
<div class="buttons"><button type="submit" name="decision" value="cancel">Cancel</button>
<button type="submit" name="decision" value="continue" class="primary">Continue</button></div></form>"""
        return self.page(200, "Sign in", body)

    def signin_decision(self, request: Request, segment: str, tenant_record: list) -> Response:
        ticket = request.form.get("ticket", "")
        with self.sim._lock:
            issued, auth = self._signin_tickets.pop(ticket, (None, None))
        if issued is None or auth is None or issued < time.time() - 3600:
            return self._consent_error_page(90014, "The sign-in page has expired or was already answered: start again.")
        tenant_record[0] = auth["tenant_id"]
        tenant = self._tenant(auth["tenant_id"])
        if tenant is None:
            return self._consent_error_page(90002, self._tenant_not_found(auth["tenant_id"]))
        if request.form.get("decision") == "continue":
            return self._issue_code(auth, tenant)
        return self._signin_denied(auth)

    def _signin_denied(self, auth: dict[str, Any]) -> Response:
        return self._auth_error(auth, "access_denied", 65004, "User declined to consent to access the app.",
                                error_subcode="cancel")

    def _issue_code(self, auth: dict[str, Any], tenant: TenantState) -> Response:
        code = "1." + secrets.token_urlsafe(96)
        now = time.time()
        entry = {**auth, "user": self.sim.signin_user(tenant.tenant_id), "issued": now, "redeemed": False,
                 "session": str(uuid.uuid4())}
        with self.sim._lock:
            horizon = now - max(3600.0, self.sim.auth_code_lifetime)
            self._codes = {key: item for key, item in self._codes.items() if item["issued"] > horizon}
            self._codes[code] = entry
        return self._auth_redirect(auth, {"code": code, "session_state": entry["session"]})

    def redeem_code(self, form, tenant: TenantState, client_id: str, correlation_id: str) -> Response:
        code = form.get("code")
        if not code:
            raise AadError(900144, "invalid_request", "The request body must contain the following parameter: 'code'.")
        redirect_uri = form.get("redirect_uri")
        if not redirect_uri:
            raise AadError(900144, "invalid_request",
                           "The request body must contain the following parameter: 'redirect_uri'.")
        with self.sim._lock:
            entry = self._codes.get(code)
        if entry is None or entry["tenant_id"] != tenant.tenant_id or entry["client_id"] != client_id.lower():
            raise AadError(70000, "invalid_grant", "The provided value for the 'code' parameter is not valid.")
        if entry["redeemed"]:
            raise AadError(54005, "invalid_grant", "OAuth2 Authorization code was already redeemed, please retry with "
                           "a new valid code or use an existing refresh token.")
        if time.time() - entry["issued"] >= self.sim.auth_code_lifetime:
            raise AadError(70008, "invalid_grant", "The provided authorization code or refresh token has expired due "
                           "to inactivity. Send a new interactive authorization request for this user and resource.")
        if redirect_uri != entry["redirect_uri"]:
            raise AadError(50011, "invalid_grant", f"The reply address '{redirect_uri}' does not match the reply "
                           f"address '{entry['redirect_uri']}' provided when requesting Authorization code.")
        verifier = form.get("code_verifier") or ""
        digest = b64url(hashlib.sha256(verifier.encode("ascii", "replace")).digest())
        if not PKCE_VERIFIER.fullmatch(verifier) or not secrets.compare_digest(digest, entry["code_challenge"]):
            raise AadError(501481, "invalid_grant",
                           "The Code_Verifier does not match the code_challenge supplied in the authorization request.")
        with self.sim._lock:  # single use: the first redemption wins
            if entry["redeemed"]:
                raise AadError(54005, "invalid_grant", "OAuth2 Authorization code was already redeemed, please retry "
                               "with a new valid code or use an existing refresh token.")
            entry["redeemed"] = True
        user = entry["user"]
        scopes = [item for item in entry["scope"].split() if item in ("openid", "profile", "email")]
        granted = " ".join([*scopes, "User.Read"])
        access_token = self._user_access_token(tenant, user, granted, "2" if form.get("client_assertion") else "1")
        client_info = b64url(json.dumps({"uid": user["object_id"], "utid": tenant.tenant_id},
                                        separators=(",", ":")).encode())
        return json_response(
            {"token_type": "Bearer", "scope": granted, "expires_in": ACCESS_TOKEN_LIFETIME - 1,
             "ext_expires_in": ACCESS_TOKEN_LIFETIME - 1, "access_token": access_token,
             "id_token": self.id_token(tenant, user, entry), "client_info": client_info},
            headers={"client-request-id": correlation_id, "Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
        )

    def _sign(self, claims: dict[str, Any], *, x5t: bool) -> str:
        kid = self.sim._pki.signing_kid
        headers = {"typ": "JWT", "kid": kid, **({"x5t": kid} if x5t else {})}
        return jwt.encode(claims, self.sim._pki.signing_key, algorithm="RS256", headers=headers)

    def id_token(self, tenant: TenantState, user: dict[str, Any], entry: dict[str, Any]) -> str:
        """A v2.0 ID token for the signed-in user (see "ID token claims reference")."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": self.sim.client_id,
            "iss": f"{self.sim.login_url}/{tenant.tenant_id}/v2.0",
            "iat": now, "nbf": now, "exp": now + ID_TOKEN_LIFETIME,
            "aio": b64url(secrets.token_bytes(24)),
            "name": user["name"],
            "oid": user["object_id"],
            "preferred_username": user["username"],
            "rh": "0." + b64url(secrets.token_bytes(24)),
            "sid": entry["session"],
            # pairwise: the same user has another sub in another app
            "sub": b64url(hashlib.sha256(f"{self.sim.client_id}:{user['object_id']}".encode()).digest()),
            "tid": tenant.tenant_id,
            "uti": b64url(secrets.token_bytes(16)),
            "ver": "2.0",
        }
        if entry.get("nonce") is not None:
            claims["nonce"] = entry["nonce"]
        # Entra names every member's default role too (the "member user" template id), so an
        # ordinary user's `wids` holds that alone (with groupMembershipClaims DirectoryRole).
        claims["wids"] = list(user["roles"]) + [MEMBER_USER_ROLE]
        return id_token_faults.signed(self.sim, tenant.tenant_id, claims, lambda signed: self._sign(signed, x5t=False))

    def _user_access_token(self, tenant: TenantState, user: dict[str, Any], scope: str, appidacr: str) -> str:
        """A delegated (user) token for the simulator's Graph; it carries no application roles."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": self.sim.api_url,
            "iss": f"https://sts.windows.net/{tenant.tenant_id}/",
            "iat": now, "nbf": now, "exp": now + ACCESS_TOKEN_LIFETIME,
            "acr": "1", "amr": ["pwd"],
            "app_displayname": "TenantAtlas",
            "appid": self.sim.client_id, "appidacr": appidacr,
            "idtyp": "user",
            "name": user["name"],
            "oid": user["object_id"],
            "scp": " ".join(item for item in scope.split() if item not in ("openid",)),
            "sub": b64url(hashlib.sha256(f"{self.sim.api_url}:{user['object_id']}".encode()).digest()),
            "tid": tenant.tenant_id,
            "unique_name": user["username"], "upn": user["username"],
            "uti": b64url(secrets.token_bytes(16)),
            "ver": "1.0",
        }
        if user["roles"]:
            claims["wids"] = list(user["roles"])
        return self._sign(claims, x5t=True)
