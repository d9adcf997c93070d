"""The Simulator: two HTTPS servers (Graph, identity platform) over one in-memory directory."""
from __future__ import annotations

import collections
import json
import os
import secrets
import socket
import ssl
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from app.graph.families import FAMILIES_BY_KEY, required_permissions

from . import demo, shapes, writes
from .common import FAULTS, Faults, RequestRecord, Throttle, ThrottleLimits, Tokens, WriteRecord
from .graph import DELTA_TOKEN_LIFETIME_SECONDS, GraphApp
from .identity import LoginApp
from .pki import Pki
from .store import StoreError, TenantState, utc_now

CONSENT_MODES = ("prompt", "accept", "deny")
PERMISSION_TIERS = ("read", "write")
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
AUTH_CODE_LIFETIME_SECONDS = 600
MAX_RECORDS = 500_000


class _Handler(WSGIRequestHandler):
    """werkzeug's handler, with the TLS handshake done in the connection's own thread
    (a slow client cannot hold up the accept loop) and request logging only when asked."""

    timeout = 60
    log_requests = False

    def setup(self) -> None:
        self._handshake_failed = False
        connection = self.request
        if isinstance(connection, ssl.SSLSocket):
            try:
                connection.settimeout(self.timeout)
                connection.do_handshake()
            except (OSError, ssl.SSLError):
                self._handshake_failed = True
        super().setup()

    def handle(self) -> None:
        if not self._handshake_failed:
            super().handle()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.log_requests:
            super().log_request(code, size)

    def log_error(self, format: str, *args: Any) -> None:
        if self.log_requests:
            super().log_error(format, *args)


class _LoggingHandler(_Handler):
    log_requests = True


def _advertised_host(host: str) -> str:
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _normalize_tenant_id(tenant_id: str) -> str:
    try:
        return str(uuid.UUID(str(tenant_id).strip()))
    except (ValueError, AttributeError):
        raise ValueError(f"a tenant id is a GUID, not {tenant_id!r}") from None


class Simulator:
    """Microsoft identity platform + the Graph subset of app/graph/families.py, over HTTPS.

    Use `Simulator.start(...)`; see the package docstring for the API.
    """

    def __init__(self) -> None:  # use Simulator.start
        self._lock = threading.RLock()
        self._tenants: dict[str, TenantState] = {}
        self._records: collections.deque[RequestRecord] = collections.deque(maxlen=MAX_RECORDS)
        self._records_lock = threading.Lock()
        self._faults = Faults()
        self._tokens = Tokens(secrets.token_bytes(32))
        self._throttle: Throttle | None = None
        self._servers: list[BaseWSGIServer] = []
        self._threads: list[threading.Thread] = []
        self._stopped = False
        self.latency_ms = 0.0
        self.page_size = 100
        self.consent_mode = "prompt"
        self.delta_token_lifetime = float(DELTA_TOKEN_LIFETIME_SECONDS)
        self.auth_code_lifetime = float(AUTH_CODE_LIFETIME_SECONDS)
        self._signin_users: dict[str, dict[str, Any]] = {}
        self.started_at = utc_now()

    # --- lifecycle -------------------------------------------------------------------------

    @classmethod
    def start(
        cls, state_dir: Path | str, *, host: str = "127.0.0.1", api_port: int = 0, login_port: int = 0,
        demo_tenants: bool = False, throttle: ThrottleLimits | None = None, latency_ms: float = 0.0,
        page_size: int = 100, consent_mode: str = "prompt", log_requests: bool = False,
    ) -> Simulator:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        if latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        sim = cls()
        sim._pki = Pki.load_or_create(Path(state_dir))
        sim.page_size = int(page_size)
        sim.latency_ms = float(latency_ms)
        sim._throttle = Throttle(throttle) if throttle is not None else None
        sim.set_consent_mode(consent_mode)
        handler = _LoggingHandler if log_requests else _Handler
        context = sim._pki.server_ssl_context()
        try:
            api = sim._serve(host, api_port, GraphApp(sim), handler, context)
            login = sim._serve(host, login_port, LoginApp(sim), handler, context)
        except BaseException:
            sim.stop()
            raise
        advertised = _advertised_host(host)
        sim.api_url = f"https://{advertised}:{api.port}"
        sim.login_url = f"https://{advertised}:{login.port}"
        if demo_tenants:
            for key in range(1, demo.DEMO_TENANT_COUNT + 1):
                spec = demo.demo_tenant(key)
                sim._add_tenant(spec["tenant_id"], name=spec["name"], domain=spec["domain"], roles=spec["roles"],
                                consented=True, objects=None, policies_per_family=None, demo_key=key)
        for server in (api, login):
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                      name=f"graph-simulator-{server.port}", daemon=True)
            thread.start()
            sim._threads.append(thread)
        sim._write_connection_files()
        return sim

    def _serve(self, host: str, port: int, app, handler, context: ssl.SSLContext) -> BaseWSGIServer:
        try:
            server = make_server(host, port, app, threaded=True, request_handler=handler)
        except SystemExit:  # werkzeug exits on bind errors; a library must not
            raise OSError(f"cannot listen on {host}:{port} (in use?)") from None
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        server.ssl_context = context
        self._servers.append(server)
        return server

    def stop(self) -> None:
        """Stops both servers (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        stoppers = []
        for server, thread in zip(self._servers, self._threads):
            stopper = threading.Thread(target=server.shutdown, daemon=True)
            stopper.start()
            stoppers.append(stopper)
        for stopper in stoppers:
            stopper.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)
        for server in self._servers:
            try:
                server.server_close()
            except OSError:
                pass

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # --- where it lives ----------------------------------------------------------------------

    api_url: str
    login_url: str
    _pki: Pki

    @property
    def ca_bundle(self) -> str:
        return str(self._pki.ca_bundle)

    @property
    def client_id(self) -> str:
        return self._pki.client_id

    @property
    def client_secret(self) -> str:
        return self._pki.client_secret

    @property
    def client_certificate_path(self) -> str:
        return str(self._pki.app_pem_path)

    @property
    def client_certificate_thumbprint(self) -> str:
        """SHA-1 thumbprint (hex) of the app certificate, as msal's "thumbprint" wants it."""
        from cryptography.hazmat.primitives import hashes

        return self._pki.app_cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303

    @property
    def state_dir(self) -> Path:
        return self._pki.state_dir

    def connection_info(self) -> dict[str, Any]:
        return {
            "api_url": self.api_url, "login_url": self.login_url, "ca_bundle": self.ca_bundle,
            "client_id": self.client_id, "client_certificate": self.client_certificate_path,
            "client_secret_file": str(self._pki.client_secret_path), "consent_mode": self.consent_mode,
        }

    def environment(self) -> dict[str, str]:
        """The environment that points TenantAtlas at this simulator (certificate credential)."""
        return {
            "GRAPH_API_URL": self.api_url,
            "GRAPH_LOGIN_URL": self.login_url,
            "GRAPH_CA_BUNDLE": self.ca_bundle,
            "GRAPH_CLIENT_ID": self.client_id,
            "GRAPH_CLIENT_CERTIFICATE": self.client_certificate_path,
            "TENANTATLAS_GRAPH_SIMULATED": "1",
        }

    def _write_connection_files(self) -> None:
        info = {**self.connection_info(), "pid": os.getpid()}
        state_dir = self._pki.state_dir
        for name, text in (
            ("connection.json", json.dumps(info, indent=2) + "\n"),
            ("connection.env", "".join(f"{key}={value}\n" for key, value in self.environment().items())),
        ):
            temporary = state_dir / f".{name}.{os.getpid()}.{secrets.token_hex(4)}"
            temporary.write_text(text)
            os.replace(temporary, state_dir / name)

    # --- behaviour knobs -----------------------------------------------------------------------

    def _delay(self) -> None:
        if self.latency_ms > 0:
            time.sleep(self.latency_ms / 1000)

    def set_latency(self, latency_ms: float) -> None:
        if latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        self.latency_ms = float(latency_ms)

    def set_throttle(self, limits: ThrottleLimits | None) -> None:
        """Replaces the throttle (counters start afresh); None turns it off."""
        self._throttle = Throttle(limits) if limits is not None else None

    def set_consent_mode(self, mode: str) -> None:
        if mode not in CONSENT_MODES:
            raise ValueError(f"consent mode is one of {', '.join(CONSENT_MODES)}, not {mode!r}")
        self.consent_mode = mode

    def inject(self, fault: str, *, count: int = 1, tenant_id: str | None = None, path_contains: str | None = None,
               retry_after: int = 1, method: str | None = None) -> None:
        """Makes the next `count` matching requests fail as `fault` (see common.FAULTS); `method`
        limits it to requests with that HTTP method ("POST": creates and assigns)."""
        self._faults.add(fault, count, _normalize_tenant_id(tenant_id) if tenant_id else None, path_contains,
                         retry_after, method)

    def pending_faults(self) -> list[dict[str, Any]]:
        return self._faults.pending()

    def clear_faults(self) -> None:
        self._faults.clear()

    @staticmethod
    def faults() -> dict[str, str]:
        return dict(FAULTS)

    # --- request log ---------------------------------------------------------------------------

    def _record(self, record: RequestRecord) -> None:
        with self._records_lock:
            self._records.append(record)

    @property
    def requests(self) -> list[RequestRecord]:
        with self._records_lock:
            return list(self._records)

    def reset_log(self) -> None:
        with self._records_lock:
            self._records.clear()

    # --- tenants -------------------------------------------------------------------------------

    def _find_tenant(self, segment: str) -> TenantState | None:
        key = segment.strip().lower()
        with self._lock:
            tenant = self._tenants.get(key)
            if tenant is None:
                try:
                    tenant = self._tenants.get(str(uuid.UUID(key)))
                except ValueError:
                    tenant = next((item for item in self._tenants.values() if item.domain.lower() == key), None)
            return tenant

    def _tenant(self, tenant_id: str) -> TenantState:
        tenant = self._find_tenant(str(tenant_id))
        if tenant is None:
            raise StoreError(f"no tenant {tenant_id!r} in the simulator", 404)
        return tenant

    def _consent_roles(self, tenant: TenantState | None) -> list[str]:
        return list(tenant.roles) if tenant is not None and tenant.roles else demo.default_roles()

    def add_tenant(
        self, tenant_id: str, *, name: str = "Contoso", roles: list[str] | None = None, consented: bool = True,
        objects: dict[str, list[dict]] | None = None, policies_per_family: int | None = None,
        permissions: str | None = None,
    ) -> str:
        """Adds (or replaces) a tenant; returns its id. Objects default to the demo fixtures:
        a seed demo tenant id gets the seed's own plan, any other id each template once.

        The tokens' `roles`: `roles` as given; else `permissions` "read" (what a sync needs,
        no write permission: every write answers 403) or "write" (read and write tiers);
        else both tiers, as a full admin consent grants (demo.default_roles)."""
        if permissions is not None:
            if permissions not in PERMISSION_TIERS:
                raise ValueError(f"permissions is one of {', '.join(PERMISSION_TIERS)}, not {permissions!r}")
            if roles is not None:
                raise ValueError("give roles or permissions, not both")
            roles = (list(required_permissions("read")) if permissions == "read" else demo.default_roles())
        tenant_id = _normalize_tenant_id(tenant_id)
        demo_key = demo.demo_tenant_keys().get(tenant_id)
        domain = demo.domain_for(name, tenant_id)
        return self._add_tenant(tenant_id, name=name, domain=domain, roles=roles, consented=consented,
                                objects=objects, policies_per_family=policies_per_family, demo_key=demo_key)

    def _add_tenant(self, tenant_id: str, *, name: str, domain: str, roles: list[str] | None, consented: bool,
                    objects: dict[str, list[dict]] | None, policies_per_family: int | None,
                    demo_key: int | None) -> str:
        if roles is not None and (not isinstance(roles, (list, tuple)) or not all(isinstance(r, str) for r in roles)):
            raise ValueError("roles must be a list of permission names")
        if policies_per_family is not None and (not isinstance(policies_per_family, int) or policies_per_family < 0):
            raise ValueError("policies_per_family must be an integer >= 0")
        if objects is not None:
            if not isinstance(objects, dict):
                raise ValueError("objects maps family keys to lists of Graph objects")
            unknown = [key for key in objects if key not in FAMILIES_BY_KEY]
            if unknown:
                raise ValueError(f"unknown families {unknown}; known: {', '.join(FAMILIES_BY_KEY)}")
            built = objects
        else:
            built = demo.build_objects(tenant_id, domain=domain, now=self.started_at, demo_key=demo_key,
                                       policies_per_family=policies_per_family)
        tenant = TenantState(
            tenant_id=tenant_id, name=str(name), domain=domain,
            roles=list(roles) if roles is not None else demo.default_roles(),
            consented=bool(consented),
            service_principal_id=shapes.stable_guid(tenant_id, "servicePrincipal", self.client_id),
            demo_key=demo_key,
        )
        for family_key, items in built.items():
            if not isinstance(items, list):
                raise ValueError(f"objects[{family_key!r}] must be a list")
            for item in items:
                try:
                    tenant.create(family_key, item)
                except StoreError as error:
                    raise ValueError(f"objects[{family_key!r}]: {error}") from None
        with self._lock:
            self._tenants[tenant_id] = tenant
        return tenant_id

    def remove_tenant(self, tenant_id: str) -> None:
        with self._lock:
            removed = self._tenants.pop(self._tenant(tenant_id).tenant_id, None)
            if removed is not None:
                self._signin_users.pop(removed.tenant_id, None)

    def tenants(self) -> list[dict[str, Any]]:
        with self._lock:
            return [tenant.summary() for tenant in self._tenants.values()]

    def tenant_ids(self) -> list[str]:
        with self._lock:
            return list(self._tenants)

    def set_roles(self, tenant_id: str, roles: list[str]) -> None:
        """The `roles` claim of the tokens issued from now on."""
        if not isinstance(roles, (list, tuple)) or not all(isinstance(role, str) for role in roles):
            raise ValueError("roles must be a list of permission names")
        with self._lock:
            self._tenant(tenant_id).roles = list(roles)

    def set_signin_user(self, tenant_id: str, *, username: str | None = None,
                        roles: tuple[str, ...] | list[str] = (GLOBAL_ADMINISTRATOR,),
                        name: str | None = None) -> dict[str, Any]:
        """Who signs in to this tenant through /oauth2/v2.0/authorize from now on: `username`
        (default admin@<domain>; a bare name gets @<domain>) holding the directory roles
        `roles` (role *template* ids, the id token's `wids`; () = an ordinary user). Returns
        `signin_user(tenant_id)`."""
        if isinstance(roles, str) or not isinstance(roles, (list, tuple)):
            raise ValueError("roles is a list of directory role template ids")
        checked = []
        for role in roles:
            try:
                checked.append(str(uuid.UUID(str(role))))
            except ValueError:
                raise ValueError(f"a directory role template id is a GUID, not {role!r}") from None
        if username is not None and (not isinstance(username, str) or not username.strip()
                                     or any(character.isspace() for character in username.strip())):
            raise ValueError(f"username must be a user principal name, not {username!r}")
        with self._lock:
            tenant = self._tenant(tenant_id)
            self._signin_users[tenant.tenant_id] = {
                "username": username.strip() if username else None, "roles": list(dict.fromkeys(checked)),
                "name": str(name) if name else None,
            }
        return self.signin_user(tenant_id)

    def signin_user(self, tenant_id: str) -> dict[str, Any]:
        """{"username", "name", "object_id", "roles"} of the user who signs in to this tenant
        (by default admin@<domain>, a Global Administrator)."""
        with self._lock:
            tenant = self._tenant(tenant_id)
            chosen = self._signin_users.get(tenant.tenant_id, {})
            username = chosen.get("username") or "admin"
            if "@" not in username:
                username = f"{username}@{tenant.domain}"
            roles = chosen.get("roles", [GLOBAL_ADMINISTRATOR])
            local = username.split("@", 1)[0]
            name = chosen.get("name") or (f"{tenant.name} Administrator" if local.lower() == "admin"
                                          else local.replace(".", " ").title())
            return {"username": username, "name": name, "roles": list(roles),
                    "object_id": shapes.stable_guid(tenant.tenant_id, "user", username.lower())}

    def revoke_consent(self, tenant_id: str) -> None:
        """The token endpoint answers AADSTS700016 for this tenant from now on (tokens already
        issued stay valid until they expire, as in Entra)."""
        with self._lock:
            self._tenant(tenant_id).consented = False

    def grant_consent(self, tenant_id: str) -> None:
        with self._lock:
            self._tenant(tenant_id).consented = True

    def is_consented(self, tenant_id: str) -> bool:
        with self._lock:
            return self._tenant(tenant_id).consented

    def roles(self, tenant_id: str) -> list[str]:
        with self._lock:
            return list(self._tenant(tenant_id).roles)

    # --- objects -------------------------------------------------------------------------------

    def objects(self, tenant_id: str, family_key: str) -> list[dict]:
        """The family's objects in the tenant, in list order, each with its relations inline
        (e.g. "settings", "assignments": what the relation endpoints return)."""
        with self._lock:
            return [item.full() for item in self._tenant(tenant_id).live(family_key)]

    def get_object(self, tenant_id: str, family_key: str, object_id: str) -> dict:
        with self._lock:
            return self._tenant(tenant_id).get(family_key, object_id).full()

    def add_object(self, tenant_id: str, family_key: str, obj: dict) -> str:
        """Adds an object (relations may be given inline); returns its id (made when absent)."""
        with self._lock:
            return self._tenant(tenant_id).create(family_key, obj).id

    def change_object(self, tenant_id: str, family_key: str, object_id: str, changes: dict) -> dict:
        """Merges changes into the object, bumps lastModifiedDateTime (and version); returns it.

        Settings Catalog: {settingDefinitionId: value} changes those settings (None removes one).
        Elsewhere "a.b" keys reach nested properties; a relation key ("assignments") replaces the list.
        """
        with self._lock:
            return self._tenant(tenant_id).update(family_key, object_id, changes).full()

    def delete_object(self, tenant_id: str, family_key: str, object_id: str) -> None:
        with self._lock:
            self._tenant(tenant_id).delete(family_key, object_id)

    # --- Graph writes ----------------------------------------------------------------------------

    def write_log(self, tenant_id: str) -> list[WriteRecord]:
        """The writes Graph did in the tenant, oldest first (see common.WriteRecord): what a
        restore changed, and that it changed nothing twice or outside its selection."""
        with self._lock:
            return list(self._tenant(tenant_id).writes)

    def reset_write_log(self, tenant_id: str) -> None:
        with self._lock:
            self._tenant(tenant_id).writes.clear()

    def refuse_writes(self, tenant_id: str, family_key: str, *, object_id: str | None = None, name: str | None = None,
                      status: int = 400, code: str = "BadRequest", message: str | None = None,
                      count: int | None = None) -> None:
        """Graph refuses writes (create, update, assign) to the family's object with this id, or
        named `name` (a create with that name too), with `status` and the error {code,
        message}; `count` times, or until clear_refusals. Nothing is written when refused."""
        family = FAMILIES_BY_KEY.get(family_key)
        if family is None:
            raise StoreError(f"unknown family {family_key!r}; known: {', '.join(FAMILIES_BY_KEY)}", 404)
        refusal = writes.refusal(family, object_id=object_id, name=name, status=status, code=code, message=message,
                                 count=count)
        with self._lock:
            self._tenant(tenant_id).refusals.append(refusal)

    def refusals(self, tenant_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [refusal.as_dict() for refusal in self._tenant(tenant_id).refusals]

    def clear_refusals(self, tenant_id: str) -> None:
        with self._lock:
            self._tenant(tenant_id).refusals.clear()

    def __repr__(self) -> str:
        where = getattr(self, "api_url", "not started")
        return f"<Simulator {where} tenants={len(self._tenants)}>"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


__all__ = ["Simulator", "ThrottleLimits", "free_port"]
