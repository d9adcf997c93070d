"""App-only tokens for Microsoft Graph, one tenant at a time (msal, client credentials flow).

One ``msal.ConfidentialClientApplication`` per tenant authority, built on first use and
kept in memory; tokens live only in msal's in-memory cache and in the AccessToken objects
handed to the Graph client. Nothing here writes a token, a secret or a key to the database
or a log.

Documented facts this module depends on (checked against msal 1.39's docs and source and
Microsoft's documentation):

- The authority is ``{login_url}/{tenant_id}``. msal always fetches the tenant's OpenID
  configuration (``{authority}/v2.0/.well-known/openid-configuration``) when the client is
  built; for a host outside its list of Microsoft authority hosts it first asks
  ``https://login.microsoftonline.com/common/discovery/instance`` ("instance discovery")
  unless ``instance_discovery=False`` (or ``validate_authority=False``, which only turns
  that same check off). So instance discovery is turned off for any login host other than
  Microsoft's public cloud: a national cloud host is on msal's list anyway, and the
  simulator or a proxy must not cause a request to login.microsoftonline.com.
- msal's own ``requests`` session reads REQUESTS_CA_BUNDLE and proxies from the
  environment; with ``http_client=`` msal uses ours as is (and leaves retries to it), so
  ours has ``trust_env=False`` and ``verify=`` a bundle of certifi's CAs plus GRAPH_CA_BUNDLE.
- msal wraps every http client in a ThrottledHttpClient that remembers error answers of
  the token endpoint per client object: an HTTP 400 for 60 s (keyed on the request body,
  which is identical for a secret and for a reused client assertion), 429/5xx for their
  Retry-After (5 s by default). So a client that got a consent error is dropped
  (``forget``), and the next ``acquire`` builds a fresh one that asks again.
- Certificate credential: msal's docs mark ``thumbprint`` (SHA-1, RS256 with ``x5t``) as
  deprecated except for ADFS; since msal 1.35 giving ``public_certificate`` without a
  thumbprint makes msal compute the SHA-256 thumbprint and sign the assertion PS256 with
  ``x5t#S256`` (and ``x5c``), which is what Microsoft's "certificate credentials" page now
  asks for (alg PS256, x5t#S256). TenantAtlas uses that. Assertions are reused by msal for
  about 9 minutes (AutoRefresher, 10-minute lifetime).
- ``acquire_token_for_client`` answers from msal's token cache while the token is valid
  (msal >= 1.23) and returns ``{"error", "error_description", "error_codes"}`` on refusal.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import certifi
import jwt
import msal
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from msal.exceptions import MsalServiceError
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .errors import ConsentError, clean_text
from .settings import GraphConfigError, GraphSettings

log = logging.getLogger(__name__)

PUBLIC_CLOUD_LOGIN_HOST = "login.microsoftonline.com"
USER_AGENT = "TenantAtlas/0.1 (Intune portfolio console; app-only)"
# (connect, read) seconds for the token and discovery endpoints.
IDENTITY_TIMEOUT = (10.0, 30.0)

# AADSTS codes and what they mean for a tenant connection. Meanings from Microsoft's
# "Microsoft Entra authentication and authorization error codes" reference
# (learn.microsoft.com/entra/identity-platform/reference-error-codes); 7000229 is not in
# that table but Entra's own text is "The client application {id} is missing service
# principal in the tenant {tenant}" (the Teams SDK troubleshooting page shows it).
_KIND_BY_CODE = {
    # Admin consent is missing for an app the tenant knows.
    65001: "not_consented",  # DelegationDoesNotExist: no consent to use the application
    500011: "not_consented",  # resource principal not found: app not installed/consented in the tenant
    90094: "not_consented",  # AdminConsentRequired
    90099: "not_consented",  # application not authorized in the tenant
    650056: "not_consented",  # misconfigured application / admin has not consented in the tenant
    # The app has no service principal in the tenant (never consented, or the enterprise
    # app was deleted: what "revoking" consent does), or it is disabled.
    700016: "app_removed",  # UnauthorizedClient_DoesNotMatchRequest: application not found in the directory/tenant
    7000229: "app_removed",  # the client application is missing service principal in the tenant
    7000112: "app_removed",  # UnauthorizedClientApplicationDisabled
    70001: "app_removed",  # UnauthorizedClient: the application is disabled
    1000031: "app_removed",  # application can't be accessed at this time
    # No such tenant in this cloud.
    90002: "tenant_not_found",  # InvalidTenantName: tenant not found in the data store
    # The app's own credential was refused.
    7000215: "invalid_credentials",  # invalid client secret
    7000222: "invalid_credentials",  # client secret keys expired
    70002: "invalid_credentials",  # InvalidClient: client_secret does not match
    700027: "invalid_credentials",  # client assertion failed signature validation
    700030: "invalid_credentials",  # certificate subject name not authorized
    50012: "invalid_credentials",  # AuthenticationFailed (certificate, assertion signature, ...)
    7000218: "invalid_credentials",  # neither client_assertion nor client_secret in the request
    # The identity platform is having a bad moment.
    50033: "unavailable",  # RetryableError
    90006: "unavailable",  # ExternalServerRetryableError
    90024: "unavailable",  # RequestBudgetExceededError, transient
    90033: "unavailable",  # MsodsServiceUnavailable
    90055: "unavailable",  # TenantThrottlingError
}
# The OAuth2 "error" field, when no known AADSTS code decides (RFC 6749 section 5.2 and
# the reference page's table of common values).
_KIND_BY_OAUTH_ERROR = {
    "invalid_client": "invalid_credentials",
    "unauthorized_client": "app_removed",
    "invalid_tenant": "tenant_not_found",
    "temporarily_unavailable": "unavailable",
}
_AADSTS = re.compile(r"AADSTS(\d{4,9})")


# A token is reused without asking msal while it has more than this many seconds left.
TOKEN_REUSE_LEEWAY = 300.0


@dataclass(frozen=True)
class AccessToken:
    """An app-only Graph token. ``roles`` are the application permissions it carries;
    ``expires_at`` is on the provider's clock (seconds, ``time.time()`` by default)."""

    value: str = field(repr=False)
    roles: frozenset[str]
    expires_at: float
    roles_known: bool = True  # False when the token could not be read as a JWT

    def expired(self, now: float, leeway: float = 60.0) -> bool:
        return now >= self.expires_at - leeway


def trusted_ca_pem(settings: GraphSettings) -> str:
    """The CAs TenantAtlas trusts for Graph and login: certifi's bundle (Mozilla's roots,
    what requests and httpx use by default) plus GRAPH_CA_BUNDLE when set."""
    text = Path(certifi.where()).read_text()
    if settings.ca_bundle:
        try:
            extra = Path(settings.ca_bundle).read_text()
        except OSError as error:
            raise GraphConfigError(f"GRAPH_CA_BUNDLE cannot be read: {error.strerror}") from None
        if "BEGIN CERTIFICATE" not in extra:
            raise GraphConfigError("GRAPH_CA_BUNDLE holds no PEM certificate")
        text = text.rstrip("\n") + "\n" + extra
    return text


_bundle_lock = threading.Lock()


def ca_bundle_path(settings: GraphSettings) -> str:
    """A file holding ``trusted_ca_pem`` for ``requests`` (whose ``verify=`` takes a path).

    Without GRAPH_CA_BUNDLE that is certifi's own file. Otherwise a content-addressed file
    in the temporary directory (public certificates only), written atomically once."""
    if not settings.ca_bundle:
        return certifi.where()
    pem = trusted_ca_pem(settings)
    digest = hashlib.sha256(pem.encode()).hexdigest()[:24]
    path = Path(tempfile.gettempdir()) / f"tenantatlas-ca-{digest}.pem"
    with _bundle_lock:
        if not path.is_file() or path.read_text() != pem:
            fd, temporary = tempfile.mkstemp(prefix="tenantatlas-ca-", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "w") as handle:
                handle.write(pem)
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
    return str(path)


class IdentitySession(requests.Session):
    """The http client msal gets: no environment (REQUESTS_CA_BUNDLE, proxies, netrc),
    our CA bundle, timeouts on every call, no redirects (a redirected token POST would
    carry the client secret or assertion to wherever it points), and a retry of
    connection failures only (the request never left, so a POST is safe to send again)."""

    def __init__(self, verify: str, timeout=IDENTITY_TIMEOUT):
        super().__init__()
        self.trust_env = False
        self.verify = verify
        self.timeout = timeout
        self.headers["User-Agent"] = USER_AGENT
        retry = Retry(total=2, connect=2, read=0, status=0, other=0, redirect=0, backoff_factor=0.2)
        adapter = HTTPAdapter(max_retries=retry)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def request(self, method, url, **kwargs):
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        kwargs["allow_redirects"] = False
        return super().request(method, url, **kwargs)


@dataclass(frozen=True)
class CertificateCredential:
    private_key_pem: str = field(repr=False)
    certificate_pem: str
    sha1_thumbprint: str  # hex, upper case: what the Entra portal shows as "Thumbprint"
    sha256_thumbprint: str  # hex, upper case: what msal puts (base64url) in x5t#S256


def load_certificate_credential(pem: str) -> CertificateCredential:
    """GRAPH_CLIENT_CERTIFICATE's PEM: an unencrypted private key and its certificate
    (first certificate = the app's; any further ones are ignored)."""
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as error:
        raise GraphConfigError(
            f"GRAPH_CLIENT_CERTIFICATE: the private key cannot be loaded (it must be unencrypted PEM): {error}"
        ) from None
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        raise GraphConfigError("GRAPH_CLIENT_CERTIFICATE: the certificate cannot be loaded") from None
    certificate = certificates[0]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if certificate.public_key().public_bytes(serialization.Encoding.PEM, public) != key.public_key().public_bytes(
        serialization.Encoding.PEM, public
    ):
        raise GraphConfigError("GRAPH_CLIENT_CERTIFICATE: the private key does not belong to the certificate")
    return CertificateCredential(
        private_key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
        sha1_thumbprint=certificate.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 - a name, not a signature
        sha256_thumbprint=certificate.fingerprint(hashes.SHA256()).hex().upper(),
    )


def read_roles(value: str) -> tuple[frozenset[str], bool]:
    """The application permissions (``roles`` claim) an app-only token carries.

    Decoded WITHOUT verifying the signature, on purpose: the app only reads which of its
    own permissions the tenant granted, to show them and to skip what it may not read;
    Graph still checks the token on every call, and nothing is authorised on this
    reading. (Microsoft documents access tokens for its APIs as not meant for the client
    to read: if the format ever stops being a readable JWT, roles come back empty with
    ``roles_known`` False instead of failing the sync.)"""
    try:
        claims = jwt.decode(value, options={"verify_signature": False})
    except jwt.PyJWTError:
        return frozenset(), False
    roles = claims.get("roles")
    if not isinstance(roles, list):
        return frozenset(), True
    return frozenset(role for role in roles if isinstance(role, str)), True


def consent_error_from_result(result: dict) -> ConsentError:
    """msal's error answer (the token endpoint's JSON) as a ConsentError."""
    description = result.get("error_description") if isinstance(result.get("error_description"), str) else ""
    codes = [code for code in result.get("error_codes") or [] if isinstance(code, int)]
    codes += [int(match) for match in _AADSTS.findall(description)]
    for code in codes:
        kind = _KIND_BY_CODE.get(code)
        if kind:
            return ConsentError(kind, f"AADSTS{code}", description)
    error = result.get("error") if isinstance(result.get("error"), str) else ""
    aadsts = f"AADSTS{codes[0]}" if codes else None
    return ConsentError(_KIND_BY_OAUTH_ERROR.get(error, "rejected"), aadsts, description or error)


def consent_error_from_exception(error: BaseException) -> ConsentError:
    """An exception raised while building the msal client or asking for a token."""
    if isinstance(error, requests.RequestException):
        # Connection refused, TLS verification failed, timeout, DNS: nothing answered.
        return ConsentError("unavailable", None, type(error).__name__)
    if isinstance(error, MsalServiceError):
        # msal raises it for an HTTP >= 500 from the token endpoint (or its cached replay).
        return ConsentError("unavailable", None, str(error))
    if isinstance(error, ValueError):
        # msal's tenant discovery: a 4xx from the OpenID configuration endpoint raises
        # ValueError (the answer text is on the chained exception). For an unknown tenant
        # Entra answers 400 {"error": "invalid_tenant", "error_description": "AADSTS90002: ..."}.
        texts = [str(error)]
        if error.__context__ is not None:
            texts.append(str(error.__context__))
        joined = " ".join(texts)
        match = _AADSTS.search(joined)
        if match:
            code = int(match.group(1))
            return ConsentError(_KIND_BY_CODE.get(code, "rejected"), f"AADSTS{code}", joined)
        if "invalid_tenant" in joined or "Unable to get authority configuration" in joined:
            return ConsentError("tenant_not_found", None, joined)
        return ConsentError("rejected", None, joined)
    return ConsentError("rejected", None, type(error).__name__)


class TokenProvider:
    """App-only tokens per tenant. Thread-safe; one per process is enough."""

    def __init__(self, settings: GraphSettings, *, clock=time.time, http_timeout=IDENTITY_TIMEOUT):
        if not settings.client_id:
            raise GraphConfigError("GRAPH_CLIENT_ID is not set")
        if settings.client_certificate_pem:
            self.certificate = load_certificate_credential(settings.client_certificate_pem)
            # PS256 + x5t#S256 (+ x5c): see the module docstring.
            self._credential = {
                "private_key": self.certificate.private_key_pem,
                "public_certificate": self.certificate.certificate_pem,
            }
        elif settings.client_secret:
            self.certificate = None
            self._credential = settings.client_secret
        else:
            raise GraphConfigError("Set GRAPH_CLIENT_CERTIFICATE (preferred) or GRAPH_CLIENT_SECRET")
        self.settings = settings
        self._clock = clock
        self._http_timeout = http_timeout
        self._verify = ca_bundle_path(settings)
        login_host = urlsplit(settings.login_url).hostname or ""
        self._instance_discovery = login_host == PUBLIC_CLOUD_LOGIN_HOST
        self._lock = threading.Lock()
        self._tenant_locks: dict[str, threading.RLock] = {}
        self._clients: dict[str, msal.ConfidentialClientApplication] = {}
        self._tokens: dict[str, AccessToken] = {}
        self.clients_built = 0  # how many msal clients were built (forget() makes the next acquire build one)

    @property
    def credential_type(self) -> str:
        return "certificate" if self.certificate else "secret"

    def __repr__(self) -> str:
        return f"TokenProvider(client_id={self.settings.client_id!r}, credential={self.credential_type})"

    def _tenant_lock(self, tenant_id: str) -> threading.RLock:
        with self._lock:
            lock = self._tenant_locks.get(tenant_id)
            if lock is None:
                lock = self._tenant_locks[tenant_id] = threading.RLock()
            return lock

    def _build(self, tenant_id: str) -> msal.ConfidentialClientApplication:
        session = IdentitySession(self._verify, self._http_timeout)
        try:
            app = msal.ConfidentialClientApplication(
                self.settings.client_id,
                client_credential=self._credential,
                authority=self.settings.authority(tenant_id),
                http_client=session,
                instance_discovery=self._instance_discovery,
                # The administrator's sign-in after consent (app.sync.connection) needs an ID
                # token only: no refresh token, so offline_access is never asked for.
                exclude_scopes=["offline_access"],
            )
        except Exception:
            session.close()
            raise
        self.clients_built += 1
        return app

    def client(self, tenant_id: str) -> msal.ConfidentialClientApplication:
        """The tenant's msal client, built on first use (that build asks the tenant's
        OpenID configuration, so it can raise ConsentError too)."""
        tenant_id = _checked_tenant(tenant_id)
        with self._tenant_lock(tenant_id):
            app = self._clients.get(tenant_id)
            if app is None:
                try:
                    app = self._build(tenant_id)
                except (requests.RequestException, MsalServiceError, ValueError) as error:
                    raise consent_error_from_exception(error) from None
                self._clients[tenant_id] = app
            return app

    def acquire(self, tenant_id: str) -> AccessToken:
        """A valid app-only token for Graph in the tenant (from msal's cache when it has one).
        Raises ConsentError; after one, the tenant's client is dropped (see ``forget``).
        One caller at a time per tenant: threads that arrive together get the one token
        the first of them fetched, instead of each asking the token endpoint."""
        tenant_id = _checked_tenant(tenant_id)
        with self._tenant_lock(tenant_id):
            cached = self._tokens.get(tenant_id)
            if cached is not None and not cached.expired(self._clock(), leeway=TOKEN_REUSE_LEEWAY):
                return cached  # valid for minutes yet: no msal call (about 1-2 ms each, per request)
            app = self.client(tenant_id)
            try:
                result = app.acquire_token_for_client(scopes=[self.settings.scope])
            except (requests.RequestException, MsalServiceError, ValueError) as error:
                self.forget(tenant_id)
                raise consent_error_from_exception(error) from None
            if not isinstance(result, dict) or not isinstance(result.get("access_token"), str):
                self.forget(tenant_id)
                error = consent_error_from_result(result if isinstance(result, dict) else {})
                log.info("No Graph token for tenant %s: %s %s", tenant_id, error.kind, error.aadsts_code or "")
                raise error
            value = result["access_token"]
            cached = self._tokens.get(tenant_id)
            if cached is not None and cached.value == value:
                return cached  # msal answered from its cache: same token, already read
            expires_in = result.get("expires_in")
            if not isinstance(expires_in, (int, float)) or expires_in <= 0:
                expires_in = 300
            roles, known = read_roles(value)
            token = AccessToken(value=value, roles=roles, expires_at=self._clock() + float(expires_in), roles_known=known)
            self._tokens[tenant_id] = token
            return token

    def forget(self, tenant_id: str) -> None:
        """Drop the tenant's msal client (and with it its cached tokens and cached error
        answers): call after admin consent was granted, or after a consent error."""
        tenant_id = str(tenant_id)
        with self._tenant_lock(tenant_id):
            app = self._clients.pop(tenant_id, None)
            self._tokens.pop(tenant_id, None)
        if app is not None:
            try:
                app.http_client.close()
            except Exception:  # pragma: no cover - closing is best effort
                pass

    def forget_all(self) -> None:
        with self._lock:
            tenants = list(self._clients)
        for tenant_id in tenants:
            self.forget(tenant_id)


_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,253}$")


def _checked_tenant(tenant_id: str) -> str:
    """A tenant id (GUID) or domain: it becomes a path segment of the authority URL."""
    tenant_id = str(tenant_id).strip()
    if not _TENANT.match(tenant_id):
        raise ConsentError("tenant_not_found", None, f"not a tenant id: {clean_text(tenant_id, 80)}")
    return tenant_id
