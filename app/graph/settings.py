"""Where Microsoft Graph and the identity platform live, and the app's own credentials.

Read from the environment (README, "Connecting tenants"):
GRAPH_API_URL (default https://graph.microsoft.com), GRAPH_LOGIN_URL (default
https://login.microsoftonline.com), GRAPH_CA_BUNDLE (a CA file trusted besides the
system's), GRAPH_CLIENT_ID, and GRAPH_CLIENT_CERTIFICATE (a PEM with certificate and
private key; preferred) or GRAPH_CLIENT_SECRET; each credential also as *_FILE.
Nothing here is ever written to the database or a log.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_API_URL = "https://graph.microsoft.com"
DEFAULT_LOGIN_URL = "https://login.microsoftonline.com"


from app.config import ConfigError


class GraphConfigError(ConfigError):
    """The Graph settings cannot work (a bad URL, an unreadable credential)."""


def _https_root(name: str, value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise GraphConfigError(f"{name} must be an https:// URL with a host and no query, not {value!r}")
    return f"https://{parts.netloc}{parts.path.rstrip('/')}"


def _read_value(environ, name: str) -> str | None:
    """NAME, or the content of the file NAME_FILE names (for secrets mounted as files)."""
    value = environ.get(name)
    path = environ.get(f"{name}_FILE")
    if value and path:
        raise GraphConfigError(f"Set {name} or {name}_FILE, not both")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as error:
            raise GraphConfigError(f"{name}_FILE cannot be read: {error.strerror}") from None
    return value.strip() if value else None


@dataclass(frozen=True)
class GraphSettings:
    api_url: str = DEFAULT_API_URL
    login_url: str = DEFAULT_LOGIN_URL
    ca_bundle: str | None = None
    client_id: str | None = None
    # The PEM text (certificate and private key), or the secret; never repr'd.
    client_certificate_pem: str | None = field(default=None, repr=False)
    client_secret: str | None = field(default=None, repr=False)
    simulated: bool = False  # the project's own Graph simulator (make run without GRAPH_CLIENT_ID)

    @property
    def configured(self) -> bool:
        return bool(self.client_id and (self.client_certificate_pem or self.client_secret))

    @property
    def scope(self) -> str:
        """App-only scope: the cloud's own Graph host, not always graph.microsoft.com."""
        return f"{self.api_url}/.default"

    def authority(self, tenant_id: str) -> str:
        return f"{self.login_url}/{tenant_id}"

    @classmethod
    def from_environ(cls, environ=None) -> GraphSettings:
        environ = os.environ if environ is None else environ
        # GRAPH_CLIENT_CERTIFICATE names the PEM file (so does GRAPH_CLIENT_CERTIFICATE_FILE).
        certificate_path = environ.get("GRAPH_CLIENT_CERTIFICATE") or environ.get("GRAPH_CLIENT_CERTIFICATE_FILE")
        certificate_pem = None
        if certificate_path:
            try:
                certificate_pem = Path(certificate_path.strip()).read_text()
            except (OSError, UnicodeDecodeError) as error:
                reason = getattr(error, "strerror", None) or "not a text PEM file"
                raise GraphConfigError(f"GRAPH_CLIENT_CERTIFICATE cannot be read: {reason}") from None
            if "PRIVATE KEY" not in certificate_pem or "CERTIFICATE" not in certificate_pem:
                raise GraphConfigError("GRAPH_CLIENT_CERTIFICATE must be a PEM holding the certificate and its private key")
        ca_bundle = environ.get("GRAPH_CA_BUNDLE") or None
        if ca_bundle and not Path(ca_bundle).is_file():
            raise GraphConfigError(f"GRAPH_CA_BUNDLE is not a file: {ca_bundle}")
        return cls(
            api_url=_https_root("GRAPH_API_URL", environ.get("GRAPH_API_URL") or DEFAULT_API_URL),
            login_url=_https_root("GRAPH_LOGIN_URL", environ.get("GRAPH_LOGIN_URL") or DEFAULT_LOGIN_URL),
            ca_bundle=ca_bundle,
            client_id=_read_value(environ, "GRAPH_CLIENT_ID"),
            client_certificate_pem=certificate_pem,
            client_secret=_read_value(environ, "GRAPH_CLIENT_SECRET"),
            simulated=(environ.get("TENANTATLAS_GRAPH_SIMULATED") == "1"),
        )
