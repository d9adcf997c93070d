"""The Microsoft Graph side: what the api server answers, derived from FAMILIES.

For each family the server answers, under its own API version only:

    GET /{version}{list_path}                       a page of objects (delta families: a delta round)
    GET /{version}{list_path}/{id}                  one object (delta families: the path without /delta)
    GET /{version}{list_path}/{id}/{relation}       each relation in Family.per_object
    GET /{version}{entity_path}?$filter=NAME eq '…'  objects by name (name_key; '' is a quote)
    POST /{version}/$batch                          up to 20 GETs, urls relative to the version root

and, for the families marked restorable (see writes.py for what is refused):

    POST /{version}{entity_path}                    create (201 and the object)
    PATCH /{version}{entity_path}/{id}              update: the given properties (204)
    PUT /{version}{entity_path}/{id}                replace, where Family.update_method is PUT (204)
    POST /{version}{entity_path}/{id}/assign        replace the assignments (200 and the set; 204 for app protection)

Every request needs an access token of this simulator (its `tid` is the tenant); a family
whose read permission is not among the token's roles answers 403, and so does a write
without the family's write permission. Writes are throttled (they count against the write
budget too), faulted, refused on request (Simulator.refuse_writes) and logged per tenant
(Simulator.write_log). Paging follows
`@odata.nextLink` ($top honoured up to page_size, an opaque $skiptoken). Delta rounds end in
`@odata.deltaLink` with a $deltatoken; the next round returns only what changed since
(`@removed` for deleted objects); an expired delta token answers 410 Gone with a Location
header for a fresh round. Errors are Graph's JSON error bodies; nothing answers a traceback.
"""
from __future__ import annotations

import copy
import json
import random
import re
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from app.graph.families import FAMILIES, Family

from .common import (
    BATCH_FAULTS, GRAPH_JSON, INNER_FAULTS, PAGE_FAULTS, STATUS_FAULTS, GraphError, RequestRecord, http_date, json_response,
)
from . import writes
from .common import WRITE_FAULTS
from .store import StoreError, StoredObject, TenantState, utc_now

if TYPE_CHECKING:
    from .core import Simulator

VERSIONS = ("v1.0", "beta")
MAX_BATCH_REQUESTS = 20
MAX_BODY_BYTES = 4 * 1024 * 1024
DELTA_TOKEN_LIFETIME_SECONDS = 7 * 24 * 3600  # directory objects: seven days (delta query overview)
KNOWN_QUERY_OPTIONS = {"$top", "$skiptoken", "$deltatoken", "$select", "$expand", "$count", "$filter"}
UNIMPLEMENTED_QUERY_OPTIONS = {"$orderby", "$search", "$skip", "$format", "$apply"}
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT"})
# "<property> eq '<text>'" with '' for a quote inside the text: the one $filter implemented.
NAME_FILTER = re.compile(r"\s*([A-Za-z][A-Za-z0-9]*)\s+eq\s+'((?:[^']|'')*)'\s*")


@dataclass
class Call:
    """One Graph request, top-level or inside a $batch."""

    method: str
    version: str
    path: str  # below the version root, e.g. "/deviceManagement/configurationPolicies"
    query: dict[str, str]
    raw_query: str
    tenant_id: str
    roles: frozenset[str]
    client_request_id: str
    throttle_priority: str | None
    in_batch: bool
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    sent_client_request_id: str | None = None  # the client's own header (what the request log records)
    body: bytes | None = None  # a write's request body


@dataclass
class Answer:
    status: int
    body: Any = None  # JSON-able, or None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # a body that is not JSON (malformed-page)


def _graph_date() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())


def error_body(code: str, message: str, request_id: str, client_request_id: str) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {"date": _graph_date(), "request-id": request_id, "client-request-id": client_request_id},
        }
    }


def _permission_names(family: Family) -> set[str]:
    """Roles that let an app read the family: its read or write permission (ReadWrite includes Read)."""
    return {family.read_permission, family.write_permission, family.read_permission.replace(".Read.", ".ReadWrite.")}


def _write_permission_names(family: Family) -> set[str]:
    """Roles that let an app write the family: its write permission only."""
    return {family.write_permission, family.read_permission.replace(".Read.", ".ReadWrite.")}


def _entity_set(family: Family) -> str:
    return family.entity_path.lstrip("/")


def _project(item: StoredObject, select: list[str] | None, expand: list[str]) -> dict[str, Any]:
    data = copy.deepcopy(item.data)
    if select:
        data = {key: value for key, value in data.items() if key in select or key in ("id", "@odata.type")}
    for relation in expand:
        data[relation] = copy.deepcopy(item.relations.get(relation, []))
    return data


def _split_list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


class GraphApp:
    """The WSGI application of the api server (Graph and the loopback control API)."""

    def __init__(self, simulator: Simulator):
        self.sim = simulator
        self.rng = random.Random()

    # --- WSGI ------------------------------------------------------------------------------

    def __call__(self, environ, start_response):
        request = Request(environ)
        request.max_content_length = MAX_BODY_BYTES
        try:
            self.sim._delay()
            if request.path == "/_simulator" or request.path.startswith("/_simulator/"):
                from .control import control

                response = control(self.sim, request)
            else:
                response = self.handle(request)
        except HTTPException as error:  # e.g. a body over the size limit
            request_id = str(uuid.uuid4())
            response = json_response(
                error_body("BadRequest" if (error.code or 500) < 500 else "InternalServerError",
                           error.description or error.name, request_id,
                           request.headers.get("client-request-id") or request_id),
                error.code or 500, {"request-id": request_id},
            )
        except Exception:  # a bug of the simulator: say so in Graph's shape, log the traceback
            traceback.print_exc(file=sys.stderr)
            request_id = str(uuid.uuid4())
            response = json_response(
                error_body("InternalServerError", "The Graph simulator failed on this request.", request_id,
                           request.headers.get("client-request-id") or request_id),
                500, {"request-id": request_id},
            )
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        sent_client_request_id = request.headers.get("client-request-id")
        client_request_id = sent_client_request_id or str(uuid.uuid4())
        priority = request.headers.get("x-ms-throttle-priority")
        segments = request.path.split("/", 2)
        version = segments[1] if len(segments) > 1 else ""
        sub_path = "/" + segments[2] if len(segments) > 2 else "/"
        raw_query = request.query_string.decode("latin-1")
        tenant_id: str | None = None

        def finish(answer: Answer) -> Response:
            self.sim._record(RequestRecord(
                method=request.method, path=request.path, tenant_id=tenant_id, status=answer.status,
                in_batch=False, client_request_id=sent_client_request_id, throttle_priority=priority,
                time=time.time(), query=raw_query, server="api", request_id=request_id,
            ))
            headers = {"request-id": request_id, "client-request-id": client_request_id, **answer.headers}
            if answer.raw is not None:
                return Response(answer.raw, status=answer.status, headers=headers, content_type=GRAPH_JSON)
            if answer.body is None:
                return Response(b"", status=answer.status, headers=headers)
            content_type = GRAPH_JSON if answer.status < 400 else "application/json"
            return json_response(answer.body, answer.status, headers, content_type)

        def fail(error: GraphError) -> Response:
            return finish(Answer(error.status, error_body(error.code, error.message, request_id, client_request_id),
                                 dict(error.headers)))

        if version not in VERSIONS:
            return fail(GraphError(400, "BadRequest", f"Invalid version: {version or '(none)'}"))
        try:
            claims = self.authenticate(request.headers.get("Authorization"))
        except GraphError as error:
            return fail(error)
        tenant_id = claims["tid"]
        call = Call(
            method=request.method, version=version, path=sub_path, query={}, raw_query=raw_query,
            tenant_id=tenant_id, roles=frozenset(claims.get("roles") or ()), client_request_id=client_request_id,
            throttle_priority=priority, in_batch=False, request_id=request_id,
            sent_client_request_id=sent_client_request_id,
        )
        try:
            if request.method in WRITE_METHODS and sub_path != "/$batch":
                call.body = request.get_data(cache=False)
            call.query = self._query(request.args.items(multi=True))
            if sub_path == "/$batch":
                if request.method != "POST":
                    raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")
                fault = self.sim._faults.take(STATUS_FAULTS, tenant_id, request.full_path)
                if fault:
                    return finish(self._fault_answer(fault, call))
                return finish(self.batch(call, request))
            return finish(self.execute(call))
        except GraphError as error:
            return fail(error)

    # --- authentication ----------------------------------------------------------------------

    def authenticate(self, header: str | None) -> dict[str, Any]:
        challenge = {
            "WWW-Authenticate": f'Bearer realm="", authorization_uri="{self.sim.login_url}/common/oauth2/authorize", '
                                f'client_id="00000003-0000-0000-c000-000000000000"'
        }
        if not header:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.", challenge)
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.", challenge)
        try:
            claims = jwt.decode(
                token.strip(), self.sim._pki.signing_key.public_key(), algorithms=["RS256"],
                audience=self.sim.api_url, options={"require": ["exp", "nbf", "iat", "tid", "iss", "aud"]},
                leeway=30,
            )
        except jwt.ExpiredSignatureError:
            raise GraphError(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.", challenge) from None
        except jwt.InvalidAudienceError:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.", challenge) from None
        except jwt.PyJWTError:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure.", challenge) from None
        if claims.get("iss") != f"https://sts.windows.net/{claims['tid']}/" or claims.get("appid") != self.sim.client_id:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid issuer.", challenge)
        with self.sim._lock:
            tenant = self.sim._tenants.get(claims["tid"])
            if tenant is None:
                raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure. Unknown tenant.", challenge)
            if not tenant.consented:
                # The app's service principal is gone from the tenant (consent revoked, app removed):
                # Graph no longer accepts app-only tokens issued to it before.
                raise GraphError(401, "Authorization_IdentityNotFound",
                                 "The identity of the calling application could not be established.", challenge)
        return claims

    # --- one request -------------------------------------------------------------------------

    @staticmethod
    def _query(pairs) -> dict[str, str]:
        query: dict[str, str] = {}
        for key, value in pairs:
            name = key if not key.startswith("$") else key.lower()
            if name in query:
                raise GraphError(400, "BadRequest", f"Query option '{key}' was specified more than once.")
            query[name] = value
        for name in query:
            if name in UNIMPLEMENTED_QUERY_OPTIONS:
                raise GraphError(501, "NotImplemented", f"The Graph simulator does not implement the query option '{name}'.")
            if name.startswith("$") and name not in KNOWN_QUERY_OPTIONS:
                raise GraphError(400, "BadRequest", f"Query option '{name}' is not allowed.")
        return query

    def execute(self, call: Call) -> Answer:
        target = f"/{call.version}{call.path}" + (f"?{call.raw_query}" if call.raw_query else "")
        kinds = set(STATUS_FAULTS) | (INNER_FAULTS if call.in_batch else set())
        fault = self.sim._faults.take(kinds, call.tenant_id, target, call.method)
        if fault:
            return self._fault_answer(fault, call)

        throttle = self.sim._throttle
        if throttle is not None:
            wait = throttle.admit(call.tenant_id, call.method not in ("GET", "HEAD"))
            if wait is not None:
                seconds = max(1, int(wait + 0.999))
                limits = throttle.limits
                raise GraphError(
                    429, "TooManyRequests",
                    f"Too many requests from tenant {call.tenant_id} for this application: at most "
                    f"{limits.requests} requests per {limits.window_seconds:g} seconds. Retry after {seconds} seconds.",
                    {"Retry-After": str(seconds)},
                )

        operation, family, object_id, relation = self.route(call.version, call.path)
        if call.method in WRITE_METHODS and self._writable(operation, family, call.method):
            if not (_write_permission_names(family) & call.roles):
                raise GraphError(
                    403, "Authorization_RequestDenied",
                    "Insufficient privileges to complete the operation. Application must have the following "
                    f"application permission: {family.write_permission}.",
                )
            if call.in_batch:
                raise GraphError(501, "NotImplemented", "The Graph simulator does not take writes inside $batch.")
            return self.write(call, family, operation, object_id, target)
        if not (_permission_names(family) & call.roles):
            raise GraphError(
                403, "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation. Application must have one of the following "
                f"application permissions: {family.read_permission}, {family.write_permission}.",
            )
        if call.method != "GET" or operation == "action":
            raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")
        if "$filter" in call.query and operation != "list":
            raise GraphError(501, "NotImplemented", "The Graph simulator implements $filter on collections only.")

        with self.sim._lock:
            tenant = self.sim._tenants.get(call.tenant_id)
            if tenant is None:
                raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure. Unknown tenant.")
            if operation == "list":
                answer = self.list_objects(call, tenant, family)
            elif operation == "delta":
                answer = self.delta(call, tenant, family)
            elif operation == "get":
                answer = self.get_object(call, tenant, family, object_id)
            else:
                answer = self.relation(call, tenant, family, object_id, relation)

        if not call.in_batch and operation in ("list", "delta", "relation"):
            fault = self.sim._faults.take(PAGE_FAULTS, call.tenant_id, target)
            if fault and fault.kind == "malformed-page":
                text = json.dumps(answer.body)
                return Answer(200, raw=text[: max(1, len(text) // 2)].encode() + b'{"value":[,')
            if fault and fault.kind == "foreign-next-link":
                body = dict(answer.body)
                body.pop("@odata.deltaLink", None)
                link = body.get("@odata.nextLink") or f"{self.sim.api_url}/{call.version}{call.path}?$skiptoken=x"
                parts = urlsplit(link)
                body["@odata.nextLink"] = f"https://graph.elsewhere.invalid{parts.path}?{parts.query}"
                return Answer(200, body, answer.headers)
        return answer

    # --- writes ------------------------------------------------------------------------------

    @staticmethod
    def _writable(operation: str, family: Family, method: str) -> bool:
        """Whether this method writes at this route: create on a collection, PATCH (or the
        family's PUT) on an object, POST on its action."""
        if not family.restorable:
            return False
        if operation == "list":
            return method == "POST"
        if operation == "get":
            return method == "PATCH" or method == family.update_method
        return operation == "action" and method == "POST"

    def write(self, call: Call, family: Family, operation: str, object_id: str | None, target: str) -> Answer:
        body = writes.parse_body(call.body or b"")
        now = utc_now()
        with self.sim._lock:
            tenant = self.sim._tenants.get(call.tenant_id)
            if tenant is None:
                raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure. Unknown tenant.")
            current = None
            if object_id is not None:
                try:
                    current = tenant.get(family.key, object_id)
                except StoreError:
                    raise GraphError(404, "ResourceNotFound", f"Resource '{object_id}' does not exist or one of its "
                                     "queried reference-property objects are not present.") from None
            if operation == "list":
                names = writes.check_create(family, body)
            elif operation == "get":
                names = writes.check_update(family, body, current, replace=call.method == "PUT")
            else:
                assignments = writes.check_assign(body)
                names = {writes.name_of(family, current.data)} - {None}
            writes.check_refusal(tenant, family, object_id, names)
            # A fault that answers after doing the write: taken once the write is sure to happen.
            late_fault = self.sim._faults.take(WRITE_FAULTS, call.tenant_id, target, call.method)
            status = 504 if late_fault else None
            if operation == "list":
                item = writes.create(family, tenant, body, now)
                kind, answer = "create", Answer(201, self._entity_body(call, family, item))
                answer.headers["Location"] = f"{self.sim.api_url}/{call.version}{family.entity_path}/{item.id}"
            elif operation == "get":
                replace = call.method == "PUT"
                item = writes.update(family, tenant, current, body, now, replace=replace)
                kind, answer = ("replace" if replace else "update"), Answer(204)
            else:
                item = writes.assign(family, tenant, current, assignments)
                kind = "assign"
                # deviceAppManagement's assign answers 204; deviceManagement's the new set.
                answer = Answer(204) if family.entity_path.startswith("/deviceAppManagement/") else Answer(
                    200, {"@odata.context": f"{self.sim.api_url}/{call.version}/$metadata#Collection(microsoft.graph."
                          "deviceAndAppManagementAssignment)", "value": copy.deepcopy(item.relations["assignments"])})
            writes.record(tenant, call.method, family, item, kind, status or answer.status)
        if late_fault:
            return Answer(504, error_body("GatewayTimeout", "The gateway did not receive a timely response.",
                                          call.request_id, call.client_request_id))
        return answer

    def _entity_body(self, call: Call, family: Family, item: StoredObject) -> dict[str, Any]:
        body = {"@odata.context": f"{self.sim.api_url}/{call.version}/$metadata#{_entity_set(family)}/$entity"}
        body.update(_project(item, None, []))
        return body

    def _fault_answer(self, fault, call: Call) -> Answer:
        kind = fault.kind
        if kind in ("429", "batch-inner-429", "429-http-date", "429-no-retry-after"):
            headers: dict[str, str] = {}
            if kind in ("429", "batch-inner-429"):
                headers["Retry-After"] = str(fault.retry_after)
            elif kind == "429-http-date":
                headers["Retry-After"] = http_date(fault.retry_after)
            return Answer(429, error_body("TooManyRequests", "Too many requests. Please retry again later.",
                                          call.request_id, call.client_request_id), headers)
        if kind == "batch-inner-malformed":
            return Answer(200, ["not", "an", "object"])
        if kind == "503":
            return Answer(503, error_body("serviceNotAvailable", "The service is temporarily unavailable.",
                                          call.request_id, call.client_request_id))
        if kind == "504":
            return Answer(504, error_body("GatewayTimeout", "The gateway did not receive a timely response.",
                                          call.request_id, call.client_request_id))
        return Answer(500, error_body("InternalServerError", "An internal server error occurred.",
                                      call.request_id, call.client_request_id))

    # --- routing (from FAMILIES) -------------------------------------------------------------

    def route(self, version: str, path: str) -> tuple[str, Family, str | None, str | None]:
        normalized = re.sub(r"\('([^'/]*)'\)", r"/\1", path).rstrip("/") or "/"
        normalized = normalized.replace("/microsoft.graph.delta", "/delta")
        unknown_segment = normalized.rsplit("/", 1)[-1] or "/"
        for family in FAMILIES:
            list_path = family.list_path
            if family.delta:
                base = list_path.removesuffix("/delta")
                if normalized in (list_path, base):
                    candidate = ("delta" if normalized == list_path else "list", family, None, None)
                    if family.api_version == version:
                        return candidate
                    unknown_segment = list_path.rsplit("/", 2)[-2]
                    continue
            else:
                base = list_path
                if normalized == list_path:
                    if family.api_version == version:
                        return ("list", family, None, None)
                    unknown_segment = list_path.rsplit("/", 1)[-1]
                    continue
            if normalized.startswith(base + "/"):
                if family.api_version != version:
                    unknown_segment = base.rsplit("/", 1)[-1]
                    continue
                rest = normalized[len(base) + 1:].split("/")
                if len(rest) == 1 and rest[0] and not (family.delta and rest[0] == "delta"):
                    return ("get", family, rest[0], None)
                if len(rest) == 2 and rest[1] in family.per_object:
                    return ("relation", family, rest[0], rest[1])
                if len(rest) == 2 and rest[0] and rest[1] == family.assign_action:
                    return ("action", family, rest[0], rest[1])
                raise GraphError(400, "BadRequest", f"Resource not found for the segment '{rest[-1]}'.")
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{unknown_segment}'.")

    # --- collections -------------------------------------------------------------------------

    def _page_size(self, call: Call) -> int:
        page_size = self.sim.page_size
        top = call.query.get("$top")
        if top is None:
            return page_size
        if not re.fullmatch(r"[0-9]{1,9}", top) or int(top) < 1:
            raise GraphError(400, "BadRequest", f"Invalid value '{top}' for the query option '$top'.")
        return min(int(top), page_size)

    def _expand(self, call: Call, family: Family) -> list[str]:
        expand = _split_list(call.query.get("$expand"))
        for name in expand:
            if name not in family.per_object:
                raise GraphError(400, "BadRequest", f"Could not find a property named '{name}' to expand.")
        return expand

    def _read_token(self, call: Call, token: str, kind: str, family: Family) -> dict[str, Any]:
        payload, genuine = self.sim._tokens.decode(token)
        if payload is None or not genuine or payload.get("k") != kind or payload.get("f") != family.key:
            raise GraphError(400, "BadRequest", "The $skiptoken is not valid for this request.")
        if payload.get("t") != call.tenant_id:
            raise GraphError(400, "BadRequest", "The $skiptoken was issued for another tenant.")
        return payload

    def _link(self, call: Call, path: str, keep: dict[str, str], token_name: str, token: str) -> str:
        query = {key: value for key, value in keep.items() if key not in ("$skiptoken", "$deltatoken")}
        query[token_name] = token
        return f"{self.sim.api_url}/{call.version}{path}?{urlencode(query, safe='$,')}"

    def list_objects(self, call: Call, tenant: TenantState, family: Family) -> Answer:
        page_size = self._page_size(call)
        select = _split_list(call.query.get("$select"))
        expand = self._expand(call, family)
        after = 0
        if "$skiptoken" in call.query:
            after = int(self._read_token(call, call.query["$skiptoken"], "list", family).get("o", 0))
        live = tenant.live(family.key)
        if "$filter" in call.query:
            wanted = self._name_filter(call.query["$filter"], family)
            live = [item for item in live if item.data.get(family.name_key) == wanted]
        remaining = [item for item in live if item.ordinal > after]
        page = remaining[:page_size]
        body: dict[str, Any] = {"@odata.context": f"{self.sim.api_url}/{call.version}/$metadata#{_entity_set(family)}"}
        if call.query.get("$count", "").lower() == "true":
            body["@odata.count"] = len(live)
        if len(remaining) > page_size:
            token = self.sim._tokens.encode({"k": "list", "f": family.key, "t": call.tenant_id, "o": page[-1].ordinal})
            body["@odata.nextLink"] = self._link(call, family.entity_path, call.query, "$skiptoken", token)
        body["value"] = [_project(item, select, expand) for item in page]
        return Answer(200, body)

    @staticmethod
    def _name_filter(expression: str, family: Family) -> str:
        """The name in "<name_key> eq '<name>'" (exact match); other filters are not implemented."""
        match = NAME_FILTER.fullmatch(expression)
        if match is None:
            if expression.count("'") % 2:
                raise GraphError(400, "BadRequest", "Invalid filter clause: unterminated string literal.")
            raise GraphError(501, "NotImplemented",
                             f"The Graph simulator implements only $filter={family.name_key} eq '...'.")
        if match.group(1) != family.name_key:
            raise GraphError(400, "BadRequest", f"Invalid filter clause: '{match.group(1)}' cannot be filtered on "
                             f"here (use {family.name_key}).")
        return match.group(2).replace("''", "'")

    def get_object(self, call: Call, tenant: TenantState, family: Family, object_id: str) -> Answer:
        try:
            item = tenant.get(family.key, object_id)
        except StoreError:
            raise GraphError(404, "ResourceNotFound", f"Resource '{object_id}' does not exist or one of its queried "
                             "reference-property objects are not present.") from None
        body = {"@odata.context": f"{self.sim.api_url}/{call.version}/$metadata#{_entity_set(family)}/$entity"}
        body.update(_project(item, _split_list(call.query.get("$select")), self._expand(call, family)))
        return Answer(200, body)

    def relation(self, call: Call, tenant: TenantState, family: Family, object_id: str, relation: str) -> Answer:
        try:
            item = tenant.get(family.key, object_id)
        except StoreError:
            raise GraphError(404, "ResourceNotFound", f"Resource '{object_id}' does not exist or one of its queried "
                             "reference-property objects are not present.") from None
        page_size = self._page_size(call)
        start = 0
        if "$skiptoken" in call.query:
            payload = self._read_token(call, call.query["$skiptoken"], "relation", family)
            if payload.get("i") != object_id or payload.get("r") != relation:
                raise GraphError(400, "BadRequest", "The $skiptoken is not valid for this request.")
            start = int(payload.get("n", 0))
        items = item.relations.get(relation, [])
        page = items[start:start + page_size]
        body: dict[str, Any] = {
            "@odata.context": f"{self.sim.api_url}/{call.version}/$metadata#{_entity_set(family)}('{object_id}')/{relation}"
        }
        if call.query.get("$count", "").lower() == "true":
            body["@odata.count"] = len(items)
        if start + page_size < len(items):
            token = self.sim._tokens.encode({
                "k": "relation", "f": family.key, "t": call.tenant_id, "i": object_id, "r": relation, "n": start + page_size,
            })
            body["@odata.nextLink"] = self._link(call, f"{family.list_path}/{object_id}/{relation}", call.query,
                                                 "$skiptoken", token)
        body["value"] = copy.deepcopy(page)
        return Answer(200, body)

    def delta(self, call: Call, tenant: TenantState, family: Family) -> Answer:
        """A delta round: the full state first, then what changed since the round's deltaLink."""
        select = _split_list(call.query.get("$select"))
        context = f"{self.sim.api_url}/{call.version}/$metadata#{_entity_set(family)}"
        restart = {"Location": f"{self.sim.api_url}/{call.version}{family.list_path}"}
        if "$deltatoken" in call.query:
            token = call.query["$deltatoken"]
            if token.lower() == "latest":
                fresh = self.sim._tokens.encode({"k": "delta", "f": family.key, "t": call.tenant_id, "s": tenant.seq,
                                                 "iat": time.time(), "sel": select})
                return Answer(200, {"@odata.context": context, "value": [],
                                    "@odata.deltaLink": self._link(call, family.list_path, {}, "$deltatoken", fresh)})
            payload, genuine = self.sim._tokens.decode(token)
            if payload is None or payload.get("k") != "delta" or payload.get("f") != family.key:
                raise GraphError(400, "BadRequest", "Badly formed delta token.")
            if payload.get("t") != call.tenant_id:
                raise GraphError(400, "BadRequest", "The delta token was issued for another tenant.")
            fault = self.sim._faults.take({"delta-expired"}, call.tenant_id, f"/{call.version}{call.path}?{call.raw_query}")
            expired = time.time() - float(payload.get("iat", 0)) > self.sim.delta_token_lifetime
            if fault or expired or not genuine:
                raise GraphError(410, "syncStateNotFound", "The delta token has expired or is not known: start a new "
                                 "delta round from the Location URL.", restart)
            since, upto, after, select = int(payload["s"]), tenant.seq, "", list(payload.get("sel") or [])
        elif "$skiptoken" in call.query:
            payload = self._read_token(call, call.query["$skiptoken"], "delta-page", family)
            since, upto, after = payload.get("s"), int(payload["u"]), str(payload.get("a", ""))
            select = list(payload.get("sel") or [])
        else:
            since, upto, after = None, tenant.seq, ""

        candidates = [
            item for item in tenant.family_objects(family.key).values()
            if (since is None and not item.deleted) or (since is not None and item.seq > since)
        ]
        candidates = sorted((item for item in candidates if item.id > after), key=lambda item: item.id)
        page_size = self.sim.page_size
        page = candidates[:page_size]
        values = []
        for item in page:
            if item.deleted:
                values.append({"id": item.id, "@removed": {"reason": "changed"}})
            else:
                values.append(_project(item, select, []))
        body: dict[str, Any] = {"@odata.context": context}
        if len(candidates) > page_size:
            token = self.sim._tokens.encode({"k": "delta-page", "f": family.key, "t": call.tenant_id, "s": since,
                                             "u": upto, "a": page[-1].id, "sel": select})
            body["@odata.nextLink"] = self._link(call, family.list_path, {}, "$skiptoken", token)
        else:
            token = self.sim._tokens.encode({"k": "delta", "f": family.key, "t": call.tenant_id, "s": upto,
                                             "iat": time.time(), "sel": select})
            body["@odata.deltaLink"] = self._link(call, family.list_path, {}, "$deltatoken", token)
        body["value"] = values
        return Answer(200, body)

    # --- $batch ------------------------------------------------------------------------------

    def batch(self, outer: Call, request: Request) -> Answer:
        try:
            payload = json.loads(request.get_data(cache=False) or b"null")
        except (ValueError, UnicodeDecodeError):
            raise GraphError(400, "BadRequest", "Invalid batch payload format: the body is not JSON.") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("requests"), list):
            raise GraphError(400, "BadRequest", "Invalid batch payload format: a 'requests' array is required.")
        items = payload["requests"]
        if not items:
            raise GraphError(400, "BadRequest", "Invalid batch payload format: 'requests' is empty.")
        if len(items) > MAX_BATCH_REQUESTS:
            raise GraphError(400, "BadRequest",
                             f"The number of batch requests ({len(items)}) exceeds the maximum of {MAX_BATCH_REQUESTS}.")
        seen: set[str] = set()
        for item in items:
            if not isinstance(item, dict):
                raise GraphError(400, "BadRequest", "Invalid batch payload format: each request must be an object.")
            for key in ("id", "method", "url"):
                if not isinstance(item.get(key), str) or not item[key].strip():
                    raise GraphError(400, "BadRequest", f"Invalid batch payload format: every request needs a '{key}'.")
            if item["id"].lower() in seen:
                raise GraphError(400, "BadRequest", f"Batch request ids must be unique: '{item['id']}' is repeated.")
            seen.add(item["id"].lower())
            depends = item.get("dependsOn", [])
            if not isinstance(depends, list) or not all(isinstance(entry, str) for entry in depends):
                raise GraphError(400, "BadRequest", "Invalid batch payload format: dependsOn must be a list of ids.")
            headers = item.get("headers", {})
            if not isinstance(headers, dict):
                raise GraphError(400, "BadRequest", "Invalid batch payload format: headers must be an object.")

        statuses: dict[str, int] = {}
        responses = []
        for item in items:
            responses.append(self._inner(outer, item, statuses))
            statuses[item["id"].lower()] = responses[-1]["status"]
        if self.sim._faults.take(BATCH_FAULTS, outer.tenant_id, f"/{outer.version}/$batch", "POST"):
            # Two objects' answers under each other's request ids: a client must check what it got.
            objects = [r for r in responses if r["status"] == 200 and isinstance(r.get("body"), dict)
                       and "id" in r["body"] and "value" not in r["body"]]
            if len(objects) >= 2:
                objects[0]["id"], objects[1]["id"] = objects[1]["id"], objects[0]["id"]
        order = list(range(len(responses)))
        self.rng.shuffle(order)
        if len(order) > 1 and order == sorted(order):
            order.reverse()
        return Answer(200, {"responses": [responses[index] for index in order]}, {})

    def _inner(self, outer: Call, item: dict[str, Any], statuses: dict[str, int]) -> dict[str, Any]:
        headers = {str(key).lower(): str(value) for key, value in (item.get("headers") or {}).items()}
        sent_client_request_id = headers.get("client-request-id") or outer.sent_client_request_id
        client_request_id = sent_client_request_id or outer.client_request_id
        priority = headers.get("x-ms-throttle-priority") or outer.throttle_priority
        url = item["url"].strip()
        parts = urlsplit(url)
        path = parts.path if parts.path.startswith("/") else "/" + parts.path
        call = Call(
            method=item["method"].upper(), version=outer.version, path=path, query={}, raw_query=parts.query,
            tenant_id=outer.tenant_id, roles=outer.roles, client_request_id=client_request_id,
            throttle_priority=priority, in_batch=True,
        )
        try:
            if parts.scheme or parts.netloc:
                raise GraphError(400, "BadRequest", "A batch request url must be relative to the version root "
                                 f"(e.g. /deviceManagement/...), not absolute: {url}")
            first = path.split("/", 2)[1] if path.count("/") >= 1 else ""
            if first in VERSIONS or first == "$batch":
                raise GraphError(400, "BadRequest", f"Resource not found for the segment '{first}'.")
            failed = [dep for dep in item.get("dependsOn", []) if statuses.get(dep.lower(), 0) >= 400]
            missing = [dep for dep in item.get("dependsOn", []) if dep.lower() not in statuses]
            if missing:
                raise GraphError(400, "BadRequest", f"dependsOn names a request that does not come before it: {missing[0]}")
            if failed:
                answer = Answer(424, error_body("FailedDependency", f"Request '{failed[0]}' failed.",
                                                call.request_id, client_request_id))
            else:
                call.query = self._query(parse_qsl(parts.query, keep_blank_values=True))
                answer = self.execute(call)
        except GraphError as error:
            answer = Answer(error.status, error_body(error.code, error.message, call.request_id, client_request_id),
                            dict(error.headers))
        self.sim._record(RequestRecord(
            method=call.method, path=f"/{outer.version}{path}", tenant_id=outer.tenant_id, status=answer.status,
            in_batch=True, client_request_id=sent_client_request_id, throttle_priority=priority, time=time.time(),
            query=parts.query, server="api", request_id=call.request_id,
        ))
        response_headers = {"Cache-Control": "no-cache", "request-id": call.request_id,
                            "client-request-id": client_request_id, **answer.headers}
        response: dict[str, Any] = {"id": item["id"], "status": answer.status}
        if answer.body is not None:
            response_headers.setdefault("Content-Type", GRAPH_JSON if answer.status < 400 else "application/json")
            response["body"] = answer.body
        response["headers"] = response_headers
        return response
