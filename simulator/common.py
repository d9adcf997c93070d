"""Small pieces the servers share: request and write records, throttling, faults, refusals,
opaque tokens, JSON answers."""
from __future__ import annotations

import base64
import collections
import datetime as dt
import hashlib
import hmac
import json
import math
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from werkzeug.wrappers import Response

GRAPH_JSON = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"


class GraphError(Exception):
    """What Graph answers with an error body: status, Graph's error code and message, headers."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True)
class RequestRecord:
    """One request the simulator answered (`Simulator.requests`).

    server: "api" or "login"; path without the query (inner $batch requests: the version
    root and the inner url, e.g. "/beta/deviceManagement/configurationPolicies/ID/settings").
    Fields read as attributes or as keys (record.path or record["path"]).
    """

    method: str
    path: str
    tenant_id: str | None
    status: int
    in_batch: bool
    client_request_id: str | None
    throttle_priority: str | None
    time: float
    query: str = ""
    server: str = "api"
    request_id: str = ""

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WriteRecord:
    """One write Graph did in a tenant (`Simulator.write_log`): only writes that changed
    something are recorded (a refused or throttled one is not; one that was done and then
    answered with a fault is, with that status).

    operation: "create", "update" (PATCH), "replace" (PUT) or "assign"; object_id: the object
    written (a create's new id); name: its name after the write.
    """

    method: str
    family: str
    object_id: str
    operation: str
    status: int
    time: float
    name: str | None = None

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Refusal:
    """Writes to one object (by id, or by name) of a family that Graph refuses with this
    status and error (`Simulator.refuse_writes`); `remaining` None: until cleared."""

    family: str
    object_id: str | None
    name: str | None
    status: int
    code: str
    message: str
    remaining: int | None = None

    def matches(self, family_key: str, object_id: str | None, names: set[str]) -> bool:
        if family_key != self.family or self.remaining == 0:
            return False
        return ((self.object_id is not None and self.object_id == object_id)
                or (self.name is not None and self.name in names))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ThrottleLimits:
    """Per-tenant request budget over a sliding window; each request inside a $batch counts.

    The defaults are Microsoft's published Intune limits ("Microsoft Graph service-specific
    throttling limits", Intune device configuration / device config v2 services): per app
    per tenant 1,000 requests per 20 seconds, of which POST/PUT/PATCH/DELETE 100 (per
    tenant for all apps: 2,000 and 200; the simulator serves one app, so the per-app
    figures bind first).
    """

    requests: int = 1000
    window_seconds: float = 20.0
    write_requests: int | None = 100

    def __post_init__(self) -> None:
        if self.requests < 1 or self.window_seconds <= 0:
            raise ValueError("ThrottleLimits needs requests >= 1 and window_seconds > 0")
        if self.write_requests is not None and self.write_requests < 1:
            raise ValueError("write_requests must be >= 1 (or None: writes count as requests only)")

    @classmethod
    def intune(cls) -> ThrottleLimits:
        return cls()


class Throttle:
    """Sliding-window counters per tenant. Only admitted requests count."""

    def __init__(self, limits: ThrottleLimits):
        self.limits = limits
        self._all: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._writes: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()

    def admit(self, tenant_id: str, is_write: bool, now: float | None = None) -> float | None:
        """None when admitted (and counted); else the seconds until a slot frees up."""
        now = time.monotonic() if now is None else now
        window = self.limits.window_seconds
        with self._lock:
            checks = [(self._all[tenant_id], self.limits.requests)]
            if is_write and self.limits.write_requests is not None:
                checks.append((self._writes[tenant_id], self.limits.write_requests))
            wait = 0.0
            for stamps, limit in checks:
                while stamps and stamps[0] <= now - window:
                    stamps.popleft()
                if len(stamps) >= limit:
                    wait = max(wait, stamps[len(stamps) - limit] + window - now)
            if wait > 0:
                return wait
            for stamps, _ in checks:
                stamps.append(now)
            return None


FAULTS = {
    "429": "429 Too Many Requests with Retry-After in seconds",
    "429-http-date": "429 with Retry-After as an HTTP date",
    "429-no-retry-after": "429 without Retry-After",
    "503": "503 Service Unavailable",
    "504": "504 Gateway Timeout",
    "batch-inner-429": "inside a $batch answer: 429 for one inner request, Retry-After in its own headers",
    "batch-inner-500": "inside a $batch answer: 500 for one inner request",
    "batch-inner-malformed": "inside a $batch answer: 200 for one inner request, its body a JSON list, not an object",
    "batch-swapped-objects": "a $batch answer in which two objects' GET answers carry each other's request ids",
    "malformed-page": "a list page answered 200 with invalid JSON",
    "foreign-next-link": "a list page whose @odata.nextLink points at another host",
    "delta-expired": "410 Gone on a delta link (the client must start a full delta round)",
    "consent-revoked": "the token endpoint answers AADSTS700016 (no state change)",
    "consent-required": "the token endpoint answers AADSTS65001 (no state change)",
    "write-then-504": "a write (POST, PATCH, PUT) is done, then answered 504 Gateway Timeout (a create that did happen)",
}
STATUS_FAULTS = {"429", "429-http-date", "429-no-retry-after", "503", "504"}
INNER_FAULTS = {"batch-inner-429", "batch-inner-500", "batch-inner-malformed"}
BATCH_FAULTS = {"batch-swapped-objects"}
PAGE_FAULTS = {"malformed-page", "foreign-next-link"}
TOKEN_FAULTS = {"consent-revoked", "consent-required"}
WRITE_FAULTS = {"write-then-504"}


@dataclass
class Fault:
    kind: str
    remaining: int
    tenant_id: str | None
    path_contains: str | None
    retry_after: int
    method: str | None = None  # only requests with this HTTP method (None: any)


class Faults:
    def __init__(self) -> None:
        self._items: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, kind: str, count: int, tenant_id: str | None, path_contains: str | None, retry_after: int,
            method: str | None = None) -> None:
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULTS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        if retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        if method is not None and (not isinstance(method, str) or not method.isalpha()):
            raise ValueError(f"method is an HTTP method such as POST, not {method!r}")
        with self._lock:
            self._items.append(Fault(kind, count, tenant_id.lower() if tenant_id else None, path_contains, retry_after,
                                     method.upper() if method else None))

    def take(self, kinds: set[str], tenant_id: str | None, target: str, method: str | None = None) -> Fault | None:
        """The first pending fault of one of `kinds` matching this request (its count used up by one)."""
        with self._lock:
            for fault in self._items:
                if fault.kind not in kinds or fault.remaining < 1:
                    continue
                if fault.method is not None and fault.method != (method or "").upper():
                    continue
                if fault.tenant_id is not None and fault.tenant_id != (tenant_id or "").lower():
                    continue
                if fault.path_contains is not None and fault.path_contains not in target:
                    continue
                fault.remaining -= 1
                self._items = [item for item in self._items if item.remaining > 0]
                return fault
            return None

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(fault) for fault in self._items]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def http_date(seconds_from_now: float) -> str:
    moment = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=math.ceil(seconds_from_now) + 1)
    return moment.strftime("%a, %d %b %Y %H:%M:%S GMT")


class Tokens:
    """Opaque, tamper-evident state tokens ($skiptoken, $deltatoken) for this simulator run."""

    def __init__(self, secret: bytes):
        self._secret = secret

    def encode(self, payload: dict[str, Any]) -> str:
        body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).rstrip(b"=")
        mac = hmac.new(self._secret, body, hashlib.sha256).digest()[:16]
        return body.decode() + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def decode(self, token: str) -> tuple[dict[str, Any] | None, bool]:
        """(payload, genuine): payload None when the token cannot be read at all;
        genuine False when it reads but was not made by this run (or was altered)."""
        try:
            body, _, mac = token.partition(".")
            payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            given = base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4))
        except (ValueError, TypeError, UnicodeDecodeError):
            return None, False
        if not isinstance(payload, dict):
            return None, False
        expected = hmac.new(self._secret, body.encode(), hashlib.sha256).digest()[:16]
        return payload, hmac.compare_digest(expected, given)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None,
                  content_type: str = "application/json; charset=utf-8") -> Response:
    return Response(
        json.dumps(body, separators=(",", ":"), ensure_ascii=False), status=status,
        headers=headers or {}, content_type=content_type,
    )
