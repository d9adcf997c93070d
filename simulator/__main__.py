"""`python -m simulator`: serve the Graph simulator, or drive a running one.

    python -m simulator serve --state-dir instance/simulator --api-port 8443 --login-port 8444 --demo-tenants
    python -m simulator env --state-dir instance/simulator --api-port 8443 --login-port 8444   (GRAPH_* lines)
    python -m simulator change-object --tenant T --family F --id ID --set key=value [--set ...]
    python -m simulator add-object --tenant T --family F --json '{"displayName": "..."}'
    python -m simulator delete-object --tenant T --family F --id ID
    python -m simulator objects --tenant T --family F
    python -m simulator tenants
    python -m simulator add-tenant --tenant T [--name N] [--not-consented] [--permissions read|write]
    python -m simulator revoke-consent --tenant T | grant-consent --tenant T
    python -m simulator set-roles --tenant T --role DeviceManagementConfiguration.Read.All [--role ...]
    python -m simulator set-signin-user --tenant T [--username U] [--role ROLE_TEMPLATE_ID ...] [--no-roles]
    python -m simulator inject FAULT [--count N] [--tenant T] [--path-contains TEXT] [--method POST]
    python -m simulator writes --tenant T [--reset]                 (the Graph writes done there)
    python -m simulator refuse-write --tenant T --family F (--id ID | --name NAME) [--status 400] [--code C] [--message M] [--count N]
    python -m simulator refusals --tenant T [--clear]
    python -m simulator consent-mode prompt|accept|deny
    python -m simulator requests [--reset]

The control commands talk to the running server's loopback control API: its address and
CA come from <state dir>/connection.json (written by `serve`), or --api-url and --ca.
"""
from __future__ import annotations

import argparse
import json
import signal
import ssl
import sys
import threading
from pathlib import Path
from typing import Any

DEFAULT_STATE_DIR = "instance/simulator"


def _value(text: str) -> Any:
    """key=value values: JSON when they parse (true, 12, "x", [..]), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def serve(args: argparse.Namespace) -> int:
    from . import Simulator, ThrottleLimits
    from .demo import DEMO_TENANT_COUNT, demo_tenant
    from .staff_demo import add_staff_tenant

    throttle = None
    if args.throttle or args.throttle_requests:
        throttle = ThrottleLimits(
            requests=args.throttle_requests or ThrottleLimits().requests,
            window_seconds=args.throttle_window or ThrottleLimits().window_seconds,
        )
    sim = Simulator.start(
        args.state_dir, host=args.host, api_port=args.api_port, login_port=args.login_port,
        demo_tenants=args.demo_tenants, throttle=throttle, latency_ms=args.latency_ms, page_size=args.page_size,
        consent_mode=args.consent_mode, log_requests=args.log_requests,
    )
    if args.demo_tenants:
        # A few more of the seed's tenant ids (keys past the 60 demo tenants), known to the
        # simulator but not yet consented: register one in TenantAtlas to demo the consent flow.
        for key in range(DEMO_TENANT_COUNT + 1, DEMO_TENANT_COUNT + 4):
            spec = demo_tenant(key)
            sim.add_tenant(spec["tenant_id"], name=spec["name"], consented=False)
        add_staff_tenant(sim)  # where the demo's staff sign in with Microsoft
    out = sys.stdout
    print("Graph simulator serving", file=out)
    print(f"  GRAPH_API_URL={sim.api_url}", file=out)
    print(f"  GRAPH_LOGIN_URL={sim.login_url}", file=out)
    print(f"  GRAPH_CA_BUNDLE={sim.ca_bundle}", file=out)
    print(f"  GRAPH_CLIENT_ID={sim.client_id}", file=out)
    print(f"  GRAPH_CLIENT_CERTIFICATE={sim.client_certificate_path}", file=out)
    print(f"  GRAPH_CLIENT_SECRET_FILE={sim.state_dir / 'client_secret'}", file=out)
    print(f"  (all of these in {sim.state_dir / 'connection.env'})", file=out)
    print(f"  tenants: {len(sim.tenant_ids())}; admin consent mode: {sim.consent_mode}", file=out)
    if args.demo_tenants:
        print("  not yet consented (register one to try admin consent):", file=out)
        for tenant in sim.tenants():
            if not tenant["consented"]:
                print(f"    {tenant['tenant_id']}  {tenant['name']}", file=out)
    out.flush()

    done = threading.Event()

    def on_signal(signum, frame):  # noqa: ARG001
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        while not done.wait(3600):
            pass
    finally:
        sim.stop()
    print("Graph simulator stopped", file=out)
    return 0


def env(args: argparse.Namespace) -> int:
    """Makes the CA, keys and app registration if missing and prints the environment that
    points TenantAtlas at a simulator serving on these ports (for a Procfile or Makefile)."""
    from .core import _advertised_host
    from .pki import Pki
    from .staff_demo import oidc_environment

    pki = Pki.load_or_create(Path(args.state_dir))
    host = _advertised_host(args.host)
    values = {
        "GRAPH_API_URL": f"https://{host}:{args.api_port}",
        "GRAPH_LOGIN_URL": f"https://{host}:{args.login_port}",
        "GRAPH_CA_BUNDLE": str(pki.ca_bundle.resolve()),
        "GRAPH_CLIENT_ID": pki.client_id,
        "GRAPH_CLIENT_CERTIFICATE": str(pki.app_pem_path.resolve()),
        "TENANTATLAS_GRAPH_SIMULATED": "1",
        **oidc_environment(pki.client_id, str(pki.app_pem_path.resolve())),
    }
    for key, value in values.items():
        print(f"{key}={value}")
    return 0


class ControlClient:
    def __init__(self, args: argparse.Namespace):
        import httpx

        state_dir = Path(args.state_dir)
        info: dict[str, Any] = {}
        connection = state_dir / "connection.json"
        if connection.is_file():
            info = json.loads(connection.read_text())
        self.api_url = (args.api_url or info.get("api_url") or "").rstrip("/")
        ca = args.ca or info.get("ca_bundle") or str(state_dir / "ca.pem")
        if not self.api_url:
            raise SystemExit(f"No running simulator found: {connection} is missing (start `python -m simulator serve` "
                             "or pass --api-url)")
        self.client = httpx.Client(verify=ssl.create_default_context(cafile=ca), trust_env=False, timeout=30)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        import httpx

        try:
            response = self.client.request(method, f"{self.api_url}/_simulator{path}",
                                           json=body if body is not None else None)
        except httpx.HTTPError as error:
            raise SystemExit(f"The simulator at {self.api_url} did not answer: {error}") from None
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text
            raise SystemExit(f"{method} {path}: {response.status_code} {message}")
        if response.status_code == 204 or not response.content:
            return None
        return response.json()


def control(args: argparse.Namespace) -> int:
    client = ControlClient(args)
    command = args.command
    result: Any = None
    if command == "change-object":
        changes: dict[str, Any] = {}
        for pair in args.set or []:
            key, separator, value = pair.partition("=")
            if not separator or not key:
                raise SystemExit(f"--set takes key=value, not {pair!r}")
            changes[key] = _value(value)
        if args.json:
            changes.update(json.loads(args.json))
        if not changes:
            raise SystemExit("nothing to change: give --set key=value (or --json '{...}')")
        result = client.call("PATCH", f"/tenants/{args.tenant}/objects/{args.family}/{args.id}", changes)
    elif command == "add-object":
        result = client.call("POST", f"/tenants/{args.tenant}/objects/{args.family}", json.loads(args.json))
    elif command == "delete-object":
        client.call("DELETE", f"/tenants/{args.tenant}/objects/{args.family}/{args.id}")
        result = {"deleted": args.id}
    elif command == "objects":
        result = client.call("GET", f"/tenants/{args.tenant}/objects/{args.family}")
    elif command == "tenants":
        result = client.call("GET", "/tenants")
    elif command == "add-tenant":
        result = client.call("POST", "/tenants", {"tenant_id": args.tenant, "name": args.name,
                                                  "consented": not args.not_consented, "permissions": args.permissions})
    elif command in ("revoke-consent", "grant-consent"):
        client.call("POST", f"/tenants/{args.tenant}/{command}")
        result = {command: args.tenant}
    elif command == "set-roles":
        client.call("PUT", f"/tenants/{args.tenant}/roles", {"roles": args.role or []})
        result = {"roles": args.role or []}
    elif command == "set-signin-user":
        body: dict[str, Any] = {"username": args.username}
        if args.no_roles:
            body["roles"] = []
        elif args.role:
            body["roles"] = args.role
        result = client.call("PUT", f"/tenants/{args.tenant}/signin-user", body)
    elif command == "inject":
        client.call("POST", "/inject", {"fault": args.fault, "count": args.count, "tenant_id": args.tenant,
                                        "path_contains": args.path_contains, "retry_after": args.retry_after,
                                        "method": args.method})
        result = {"injected": args.fault, "count": args.count}
    elif command == "writes":
        if args.reset:
            client.call("DELETE", f"/tenants/{args.tenant}/writes")
            result = {"reset": True}
        else:
            result = client.call("GET", f"/tenants/{args.tenant}/writes")
    elif command == "refuse-write":
        if not args.id and not args.name:
            raise SystemExit("refuse-write needs --id or --name")
        client.call("POST", f"/tenants/{args.tenant}/refusals", {
            "family": args.family, "object_id": args.id, "name": args.name, "status": args.status,
            "code": args.code, "message": args.message, "count": args.count})
        result = {"refused": args.id or args.name, "status": args.status}
    elif command == "refusals":
        if args.clear:
            client.call("DELETE", f"/tenants/{args.tenant}/refusals")
            result = {"cleared": True}
        else:
            result = client.call("GET", f"/tenants/{args.tenant}/refusals")
    elif command == "consent-mode":
        client.call("PUT", "/consent-mode", {"mode": args.mode})
        result = {"consent_mode": args.mode}
    elif command == "requests":
        if args.reset:
            client.call("DELETE", "/requests")
            result = {"reset": True}
        else:
            result = client.call("GET", "/requests")
    print(json.dumps(result, indent=2))
    return 0


def parser() -> argparse.ArgumentParser:
    from .common import FAULTS

    main = argparse.ArgumentParser(prog="python -m simulator", description="TenantAtlas's Microsoft Graph simulator.")
    commands = main.add_subparsers(dest="command", required=True)

    run = commands.add_parser("serve", help="serve the identity platform and Graph over HTTPS until killed")
    run.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help="CA, keys, app registration (default: %(default)s)")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--api-port", type=int, default=8443)
    run.add_argument("--login-port", type=int, default=8444)
    run.add_argument("--demo-tenants", action="store_true", help="serve the tenants `flask seed-demo` makes")
    run.add_argument("--page-size", type=int, default=100)
    run.add_argument("--latency-ms", type=float, default=0.0)
    run.add_argument("--throttle", action="store_true", help="apply Intune's per-tenant limits (1,000 requests / 20 s)")
    run.add_argument("--throttle-requests", type=int, default=None)
    run.add_argument("--throttle-window", type=float, default=None)
    run.add_argument("--consent-mode", choices=("prompt", "accept", "deny"), default="prompt")
    run.add_argument("--log-requests", action="store_true")
    run.set_defaults(handler=serve)

    setup = commands.add_parser("env", help="make the keys if missing and print the GRAPH_* environment for these ports")
    setup.add_argument("--state-dir", default=DEFAULT_STATE_DIR)
    setup.add_argument("--host", default="127.0.0.1")
    setup.add_argument("--api-port", type=int, default=8443)
    setup.add_argument("--login-port", type=int, default=8444)
    setup.set_defaults(handler=env)

    def control_command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--state-dir", default=DEFAULT_STATE_DIR)
        sub.add_argument("--api-url", default=None, help="default: from <state dir>/connection.json")
        sub.add_argument("--ca", default=None, help="default: from <state dir>/connection.json")
        sub.set_defaults(handler=control)
        return sub

    sub = control_command("change-object", "merge changes into an object (bumps lastModifiedDateTime/version)")
    sub.add_argument("--tenant", required=True)
    sub.add_argument("--family", required=True)
    sub.add_argument("--id", required=True)
    sub.add_argument("--set", action="append", metavar="KEY=VALUE", help="value parsed as JSON when it parses")
    sub.add_argument("--json", default=None, help="changes as a JSON object")
    sub = control_command("add-object", "add an object")
    sub.add_argument("--tenant", required=True)
    sub.add_argument("--family", required=True)
    sub.add_argument("--json", required=True)
    sub = control_command("delete-object", "delete an object")
    sub.add_argument("--tenant", required=True)
    sub.add_argument("--family", required=True)
    sub.add_argument("--id", required=True)
    sub = control_command("objects", "list a family's objects in a tenant")
    sub.add_argument("--tenant", required=True)
    sub.add_argument("--family", required=True)
    control_command("tenants", "list the tenants")
    sub = control_command("add-tenant", "add a tenant (objects from the demo fixtures)")
    sub.add_argument("--tenant", required=True)
    sub.add_argument("--name", default="Contoso")
    sub.add_argument("--not-consented", action="store_true")
    sub.add_argument("--permissions", choices=("read", "write"), default=None,
                     help="the tokens' roles: the read tier only, or read and write (default: both, as a full consent)")
    for name in ("revoke-consent", "grant-consent"):
        sub = control_command(name, f"{name.replace('-', ' ')} for a tenant")
        sub.add_argument("--tenant", required=True)
    sub = control_command("set-roles", "set the roles claim of the next tokens")
    sub.add_argument("--tenant", required=True)
    sub.add_argument("--role", action="append")
    sub = control_command("set-signin-user", "who signs in to a tenant (default admin@<domain>, Global Administrator)")
    sub.add_argument("--tenant", required=True)
    sub.add_argument("--username", default=None)
    sub.add_argument("--role", action="append", metavar="ROLE_TEMPLATE_ID", help="a directory role (wids); repeatable")
    sub.add_argument("--no-roles", action="store_true", help="an ordinary user (no wids)")
    sub = control_command("inject", "make the next matching requests fail")
    sub.add_argument("fault", choices=sorted(FAULTS))
    sub.add_argument("--count", type=int, default=1)
    sub.add_argument("--tenant", default=None)
    sub.add_argument("--path-contains", default=None)
    sub.add_argument("--retry-after", type=int, default=1)
    sub.add_argument("--method", default=None, help="only requests with this HTTP method (e.g. POST)")
    sub = control_command("writes", "the Graph writes done in a tenant (method, family, object id, time)")
    sub.add_argument("--tenant", required=True)
    sub.add_argument("--reset", action="store_true")
    sub = control_command("refuse-write", "make Graph refuse writes to an object (by id or name)")
    sub.add_argument("--tenant", required=True)
    sub.add_argument("--family", required=True)
    sub.add_argument("--id", default=None)
    sub.add_argument("--name", default=None)
    sub.add_argument("--status", type=int, default=400)
    sub.add_argument("--code", default="BadRequest")
    sub.add_argument("--message", default=None)
    sub.add_argument("--count", type=int, default=None, help="default: until cleared")
    sub = control_command("refusals", "the writes a tenant refuses")
    sub.add_argument("--tenant", required=True)
    sub.add_argument("--clear", action="store_true")
    sub = control_command("consent-mode", "how admin consent answers")
    sub.add_argument("mode", choices=("prompt", "accept", "deny"))
    sub = control_command("requests", "the request log")
    sub.add_argument("--reset", action="store_true")
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
