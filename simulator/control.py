"""The loopback-only control API on the api server, for the demo and the CLI.

    GET    /_simulator/tenants                                   tenants (summary)
    POST   /_simulator/tenants                                   add one: {"tenant_id", "name", "roles" | "permissions": "read"|"write", "consented", "policies_per_family", "objects"}
    GET    /_simulator/tenants/{tenant}/objects/{family}         its objects (relations inline)
    POST   /_simulator/tenants/{tenant}/objects/{family}         add one (body: the object) -> {"id"}
    PATCH  /_simulator/tenants/{tenant}/objects/{family}/{id}    change one (body: the changes) -> the object
    DELETE /_simulator/tenants/{tenant}/objects/{family}/{id}
    POST   /_simulator/tenants/{tenant}/revoke-consent
    POST   /_simulator/tenants/{tenant}/grant-consent
    PUT    /_simulator/tenants/{tenant}/roles                    {"roles": [...]}
    GET    /_simulator/tenants/{tenant}/writes                   the Graph writes done there (write log); DELETE empties it
    POST   /_simulator/tenants/{tenant}/refusals                 refuse writes: {"family", "object_id" | "name", "status", "code", "message", "count"}
    GET    /_simulator/tenants/{tenant}/refusals ; DELETE /_simulator/tenants/{tenant}/refusals
    GET    /_simulator/tenants/{tenant}/signin-user              who signs in there (username, name, object_id, roles)
    PUT    /_simulator/tenants/{tenant}/signin-user              {"username": null, "roles": [role template ids], "name": null}
    POST   /_simulator/inject                                    {"fault", "count", "tenant_id", "path_contains", "retry_after", "method"}
    GET    /_simulator/faults ; DELETE /_simulator/faults
    PUT    /_simulator/consent-mode                              {"mode": "prompt" | "accept" | "deny"}
    GET    /_simulator/requests ; DELETE /_simulator/requests
    GET    /_simulator/info                                      URLs, client id, CA path

Only clients on the loopback interface are answered (others get 403).
"""
from __future__ import annotations

import ipaddress
import json
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from .common import json_response
from .store import StoreError

if TYPE_CHECKING:
    from .core import Simulator


def _is_loopback(address: str | None) -> bool:
    try:
        return ipaddress.ip_address((address or "").split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _body(request: Request) -> Any:
    data = request.get_data(cache=False)
    if not data:
        return {}
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise StoreError("the body is not JSON") from None


def _error(status: int, message: str) -> Response:
    return json_response({"error": {"code": "SimulatorControl", "message": message}}, status)


def control(sim: Simulator, request: Request) -> Response:
    if not _is_loopback(request.remote_addr):
        return _error(403, "the simulator's control API answers loopback clients only")
    parts = [part for part in request.path.split("/") if part][1:]
    method = request.method
    try:
        if parts == ["info"] and method == "GET":
            return json_response(sim.connection_info())
        if parts == ["tenants"] and method == "GET":
            return json_response({"value": sim.tenants()})
        if parts == ["tenants"] and method == "POST":
            body = _body(request)
            if not isinstance(body, dict) or not body.get("tenant_id"):
                raise StoreError("tenant_id is required")
            tenant_id = sim.add_tenant(
                body["tenant_id"], name=body.get("name", "Contoso"), roles=body.get("roles"),
                consented=bool(body.get("consented", True)), objects=body.get("objects"),
                policies_per_family=body.get("policies_per_family"), permissions=body.get("permissions"),
            )
            return json_response({"tenant_id": tenant_id}, 201)
        if len(parts) >= 3 and parts[0] == "tenants":
            tenant_id, action = parts[1], parts[2]
            if action == "objects" and len(parts) == 4:
                family = parts[3]
                if method == "GET":
                    return json_response({"value": sim.objects(tenant_id, family)})
                if method == "POST":
                    return json_response({"id": sim.add_object(tenant_id, family, _body(request))}, 201)
            if action == "objects" and len(parts) == 5:
                family, object_id = parts[3], parts[4]
                if method == "GET":
                    found = [item for item in sim.objects(tenant_id, family) if item.get("id") == object_id]
                    if not found:
                        raise StoreError(f"no {family} object {object_id!r}", 404)
                    return json_response(found[0])
                if method == "PATCH":
                    return json_response(sim.change_object(tenant_id, family, object_id, _body(request)))
                if method == "DELETE":
                    sim.delete_object(tenant_id, family, object_id)
                    return Response(status=204)
            if action == "writes" and len(parts) == 3 and method == "GET":
                return json_response({"value": [record.as_dict() for record in sim.write_log(tenant_id)]})
            if action == "writes" and len(parts) == 3 and method == "DELETE":
                sim.reset_write_log(tenant_id)
                return Response(status=204)
            if action == "refusals" and len(parts) == 3 and method == "GET":
                return json_response({"value": sim.refusals(tenant_id)})
            if action == "refusals" and len(parts) == 3 and method == "DELETE":
                sim.clear_refusals(tenant_id)
                return Response(status=204)
            if action == "refusals" and len(parts) == 3 and method == "POST":
                body = _body(request)
                if not isinstance(body, dict) or not body.get("family"):
                    raise StoreError('the body must be {"family": ..., "object_id" or "name": ..., "status": 400, '
                                     '"code": "BadRequest", "message": ...}')
                count = body.get("count")
                sim.refuse_writes(tenant_id, body["family"], object_id=body.get("object_id"), name=body.get("name"),
                                  status=int(body.get("status", 400)), code=body.get("code") or "BadRequest",
                                  message=body.get("message"), count=int(count) if count is not None else None)
                return Response(status=204)
            if action == "revoke-consent" and method == "POST" and len(parts) == 3:
                sim.revoke_consent(tenant_id)
                return Response(status=204)
            if action == "grant-consent" and method == "POST" and len(parts) == 3:
                sim.grant_consent(tenant_id)
                return Response(status=204)
            if action == "roles" and method == "PUT" and len(parts) == 3:
                body = _body(request)
                roles = body.get("roles") if isinstance(body, dict) else None
                if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
                    raise StoreError('the body must be {"roles": [permission names]}')
                sim.set_roles(tenant_id, roles)
                return Response(status=204)
            if action == "signin-user" and len(parts) == 3 and method == "GET":
                return json_response(sim.signin_user(tenant_id))
            if action == "signin-user" and len(parts) == 3 and method == "PUT":
                body = _body(request)
                if not isinstance(body, dict):
                    raise StoreError('the body must be {"username": ..., "roles": [role template ids]}')
                options = {key: body[key] for key in ("username", "roles", "name") if body.get(key) is not None}
                return json_response(sim.set_signin_user(tenant_id, **options))
        if parts == ["inject"] and method == "POST":
            body = _body(request)
            if not isinstance(body, dict) or "fault" not in body:
                raise StoreError('the body must be {"fault": ..., "count": 1, "tenant_id": null, "path_contains": null}')
            sim.inject(body["fault"], count=int(body.get("count", 1)), tenant_id=body.get("tenant_id"),
                       path_contains=body.get("path_contains"), retry_after=int(body.get("retry_after", 1)),
                       method=body.get("method"))
            return Response(status=204)
        if parts == ["faults"] and method == "GET":
            return json_response({"value": sim.pending_faults()})
        if parts == ["faults"] and method == "DELETE":
            sim.clear_faults()
            return Response(status=204)
        if parts == ["consent-mode"] and method == "PUT":
            body = _body(request)
            sim.set_consent_mode(body.get("mode") if isinstance(body, dict) else None)
            return Response(status=204)
        if parts == ["requests"] and method == "GET":
            return json_response({"value": [record.as_dict() for record in sim.requests]})
        if parts == ["requests"] and method == "DELETE":
            sim.reset_log()
            return Response(status=204)
    except StoreError as error:
        return _error(error.status, str(error))
    except (ValueError, TypeError) as error:
        return _error(400, str(error))
    return _error(404, f"no control endpoint {method} {request.path}")
