"""The only code that speaks HTTP to Microsoft Graph: paging, $batch, delta, writes, retries, pacing.

One ``GraphClient`` per tenant and job (not shared between threads; the per-tenant rate
limit it uses is). Every request carries ``Authorization``, a fresh ``client-request-id``,
``Accept: application/json``, a TenantAtlas ``User-Agent`` and, for background work,
``x-ms-throttle-priority: low``.

Documented behaviour this code relies on (Microsoft Graph documentation):

- Paging ("Paging Microsoft Graph data in your app"): follow ``@odata.nextLink`` as the
  entire URL, without taking it apart, until it is absent; a page may hold zero items.
  TenantAtlas follows a link only when it points under the configured Graph URL.
- JSON batching ("Combine multiple HTTP requests using JSON batching"): POST
  ``/{version}/$batch`` with at most 20 requests; each ``url`` is relative to the version
  root (``/deviceManagement/...``); answers come in any order and are matched by ``id``;
  a 200 for the batch says nothing about its parts; requests in a batch are evaluated
  individually against throttling limits and a throttled one fails alone with 429 (and its
  own Retry-After in its ``headers``).
- Throttling ("Microsoft Graph throttling guidance"): on 429 wait the Retry-After and
  retry; without Retry-After use exponential backoff. 503 may carry Retry-After too
  ("Microsoft Graph error responses"); 504 "may occur together with 503". Retry-After is
  delay-seconds or an HTTP-date (RFC 7231 section 7.1.3).
- Intune limits ("Microsoft Graph service-specific throttling limits", Intune service
  limits: device configuration, device config v2, applications): any request type, 1,000
  requests per 20 seconds per app per tenant and 2,000 per 20 seconds per tenant for all
  apps. The default pace here is 40 requests a second with a burst of 100: at most 900 in
  any 20 seconds (burst + 20 x rate), 90 % of the per-app limit, and each request inside a
  $batch counts (measured by bench/sync.py: a large sync runs close to this pace).
- Delta ("Use delta query to track changes in Microsoft Graph data"): follow nextLinks
  until a deltaLink; removed objects come as ``{"id", "@removed": {...}}``; the same object
  may appear more than once in a round; a 410 Gone means "restart with a full
  synchronization"; an expired token may instead come as a 4xx with the code
  ``syncStateNotFound`` / ``resyncRequired`` ("Microsoft Graph error responses").
- Error bodies are ``{"error": {"code", "message", "innerError"}}`` (OData v4); the
  message is for developers, so it is kept short and scrubbed.

Writes (restore; what each family accepts is in app/graph/families.py):

- Create: ``POST {collection}`` answers 201 with the new object ("Create
  deviceConfiguration", https://learn.microsoft.com/en-us/graph/api/intune-deviceconfig-deviceconfiguration-create).
  A POST is not idempotent, so it is never sent twice on an unclear outcome: a 5xx, a
  timeout or a connection lost after sending raises AmbiguousWriteError for the caller to
  reconcile. A 429 is retried after its Retry-After: "the request was throttled", i.e. not
  done (throttling guidance). A connection that could not be opened sent nothing and is retried.
- Update: PATCH (or PUT, Settings Catalog) of the object's URL, 200 or 204; assign:
  ``POST {collection}/{id}/assign``, 200 with the new set or 204 (app protection,
  https://learn.microsoft.com/en-us/graph/api/intune-mam-targetedmanagedappprotection-assign).
  Both write the same state however often they are sent, so they are retried like GETs.
- Pacing writes: Intune allows 100 writes per 20 s per tenant besides the request limit;
  writes take a token from a second per-tenant bucket (burst 5, 4.5/s: at most 95 in any
  20 s) as well as from the general one, so a restore runs at the write limit instead of
  being answered 429 with whole-second waits. A $batch of GETs is a read.
- Reading several objects: ``get_objects`` sends each object's GET and its relations
  inside ``$batch`` (20 inner requests a batch), a 404 meaning "no such object".
- Lookups: ``$filter=displayName eq '...'`` with single quotes doubled inside the literal
  ("Escaping single quotes", https://learn.microsoft.com/en-us/graph/query-parameters);
  groups by id or name inside ``$batch`` (20 a batch, as above).
"""
from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path
from urllib.parse import quote

import httpx

from .credentials import USER_AGENT, AccessToken, TokenProvider, trusted_ca_pem
from .errors import (
    AmbiguousWriteError,
    ConsentError,
    ForeignLinkError,
    GraphError,
    PermissionDeniedError,
    ThrottledError,
    WriteRefusedError,
    clean_text,
)
from .families import FAMILIES_BY_KEY, Family, name_filter
from .writable import assignment_body
from .settings import GraphSettings

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=30.0, pool=30.0)
MAX_RESPONSE_BYTES = 50 * 1024 * 1024  # a Graph page or $batch answer larger than this is refused
MAX_JSON_DEPTH = 128  # Settings Catalog trees nest deep, but not this deep
MAX_PAGES = 10_000  # per listing: a paging loop ends here with an error
MAX_LINK_LENGTH = 16_384
BATCH_SIZE = 20  # Graph's limit of requests in one $batch
RETRY_STATUSES = frozenset({429, 503, 504})
THROTTLE_STATUSES = frozenset({429, 503})
MAX_RETRY_AFTER = 300.0  # a longer wait is not slept through: ThrottledError(retry_after=...) instead
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
BACKOFF_FLOOR = 0.25  # full jitter, but never an immediate retry ("avoid immediate retries")
# Intune: 1,000 requests / 20 s per app per tenant; the worst 20 s window of this pace is
# burst + 20 x rate = 900, 90 % of it.
DEFAULT_RATE_PER_SECOND = 40.0
DEFAULT_BURST = 100.0
# Intune also limits writes (POST, PATCH, PUT): 100 per 20 s per tenant (simulator/common.py
# ThrottleLimits). Writes take a token from this bucket too, so a restore is paced under that
# limit instead of being answered 429 with whole-second waits: burst + 20 x rate = 95.
DEFAULT_WRITE_RATE_PER_SECOND = 4.5
DEFAULT_WRITE_BURST = 5.0
# Codes of an expired or invalid delta token ("Microsoft Graph error responses", code property).
RESYNC_CODES = frozenset({"syncStateNotFound", "resyncRequired", "syncStateInvalid"})
# Failures that happen before a request leaves: sending it again cannot do anything twice.
NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Keys of an object answer that are about the answer, not the object.
ANSWER_ANNOTATIONS = frozenset({"@odata.context", "@odata.etag"})
# The key of an object's own GET among its relations in get_objects' $batch (no relation has this name).
OBJECT_PART = "(object)"


# --- pacing -------------------------------------------------------------------------------

class TokenBucket:
    """A token bucket (``capacity`` tokens, refilled at ``rate`` per second) that hands out
    reservations: ``reserve(cost)`` takes the tokens at once, going into debt if need be,
    and says how long the caller must wait before sending. Thread-safe; nobody sleeps
    while holding the lock, and waiting callers are served in order of arrival."""

    def __init__(self, capacity: float = DEFAULT_BURST, rate: float = DEFAULT_RATE_PER_SECOND, *,
                 clock=time.monotonic):
        if capacity <= 0 or rate <= 0:
            raise ValueError("capacity and rate must be positive")
        self.capacity = float(capacity)
        self.rate = float(rate)
        self._clock = clock
        self._tokens = float(capacity)
        self._updated = clock()
        self._lock = threading.Lock()

    def reserve(self, cost: float = 1.0) -> float:
        """Take ``cost`` tokens; return the seconds to wait before the request may go."""
        if cost < 0:
            raise ValueError("cost must not be negative")
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._updated)
            self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
            self._updated = now
            self._tokens -= cost
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(self, cost: float = 1.0, sleep=time.sleep) -> float:
        wait = self.reserve(cost)
        if wait > 0:
            sleep(wait)
        return wait

    @property
    def available(self) -> float:
        with self._lock:
            elapsed = max(0.0, self._clock() - self._updated)
            return min(self.capacity, self._tokens + elapsed * self.rate)


_shared_limits: dict[str, TokenBucket] = {}
_shared_write_limits: dict[str, TokenBucket] = {}
_shared_lock = threading.Lock()


def _shared_bucket(buckets: dict[str, TokenBucket], tenant_id: str, burst: float, rate: float) -> TokenBucket:
    key = str(tenant_id).lower()
    with _shared_lock:
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = TokenBucket(burst, rate)
        return bucket


def tenant_rate_limit(tenant_id: str) -> TokenBucket:
    """The process-wide bucket of one tenant, shared by every GraphClient for it."""
    return _shared_bucket(_shared_limits, tenant_id, DEFAULT_BURST, DEFAULT_RATE_PER_SECOND)


def tenant_write_limit(tenant_id: str) -> TokenBucket:
    """The process-wide bucket of one tenant's writes (see DEFAULT_WRITE_RATE_PER_SECOND)."""
    return _shared_bucket(_shared_write_limits, tenant_id, DEFAULT_WRITE_BURST, DEFAULT_WRITE_RATE_PER_SECOND)


# --- TLS ----------------------------------------------------------------------------------

_ssl_contexts: dict[tuple, ssl.SSLContext] = {}
_ssl_lock = threading.Lock()


def graph_ssl_context(settings: GraphSettings) -> ssl.SSLContext:
    """An SSL context trusting exactly certifi's CAs plus GRAPH_CA_BUNDLE (nothing read from
    the environment: SSL_CERT_FILE and friends do not apply), cached per bundle file."""
    key: tuple = (settings.ca_bundle,)
    if settings.ca_bundle:
        try:
            stat = Path(settings.ca_bundle).stat()
            key += (stat.st_mtime_ns, stat.st_size)
        except OSError:
            pass
    with _ssl_lock:
        context = _ssl_contexts.get(key)
        if context is None:
            # With cadata given, create_default_context loads no default certificates.
            context = ssl.create_default_context(cadata=trusted_ca_pem(settings))
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            _ssl_contexts[key] = context
        return context


# --- results ------------------------------------------------------------------------------

@dataclass(frozen=True)
class RelatedResult:
    """One relation of one object, fetched inside a $batch. ``items`` are the values of a
    collection answer (all pages); ``body`` the first answer's JSON (None when failed)."""

    object_id: str
    relation: str
    ok: bool
    status: int | None
    items: list = field(default_factory=list)
    body: dict | None = None
    error: GraphError | None = None


@dataclass(frozen=True)
class DeltaPage:
    """A delta round: changed/new objects, removed ids, the deltaLink for next time, and
    whether the round had to start over from a full listing (then it is complete)."""

    items: list
    removed_ids: list
    delta_link: str
    restarted: bool = False


@dataclass
class GraphStats:
    requests: int = 0  # HTTP round trips answered
    inner_requests: int = 0  # requests sent inside $batch bodies (retries included)
    throttled: int = 0  # 429/503 answers seen, outer and inner
    retries: int = 0  # requests sent again (throttling, 5xx, network, one fresh token)
    elapsed: float = 0.0  # seconds spent talking to Graph (listing, $batch, delta, writes), waits included
    writes: int = 0  # creates, updates and assigns Graph answered with success

    def as_dict(self) -> dict:
        return {
            "requests": self.requests, "inner_requests": self.inner_requests, "throttled": self.throttled,
            "retries": self.retries, "elapsed": round(self.elapsed, 3), "writes": self.writes,
        }


@dataclass
class _Answer:
    status: int
    headers: httpx.Headers
    content: bytes


# --- parsing helpers ----------------------------------------------------------------------

def parse_retry_after(value, *, now: float, date_header: str | None = None) -> float | None:
    """Retry-After as seconds to wait: delay-seconds, or an HTTP-date (RFC 7231 7.1.3).

    For a date, the answer's own Date header is the reference when present (same server
    clock, so our clock's skew does not matter), else ``now`` (epoch seconds)."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if re.fullmatch(r"\d{1,9}(\.\d{1,6})?", value):
        return float(value)
    when = _http_date(value)
    if when is None:
        return None
    reference = _http_date(date_header) if date_header else None
    return max(0.0, when - (reference if reference is not None else now))


def _http_date(value) -> float | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:  # an HTTP-date is always GMT
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def parse_json(content: bytes, status: int | None = None):
    """JSON from Graph, or GraphError: not JSON, too deep, NaN/Infinity all refused."""
    try:
        data = json.loads(content, parse_constant=_reject_constant)
    except (ValueError, RecursionError, UnicodeDecodeError, TypeError):
        raise GraphError(status, "malformedResponse", "Microsoft Graph answered with something that is not JSON") from None
    check_depth(data, status)
    return data


def check_depth(data, status: int | None = None, limit: int = MAX_JSON_DEPTH) -> None:
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise GraphError(status, "malformedResponse", "Microsoft Graph answered with JSON nested too deep")
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values() if isinstance(child, (dict, list)))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node if isinstance(child, (dict, list)))


def graph_error_fields(body) -> tuple[str | None, str | None]:
    """(code, message) of a Graph error body; (None, None) for anything else. Never raises."""
    if isinstance(body, (bytes, bytearray)):
        try:
            body = json.loads(body, parse_constant=_reject_constant)
        except (ValueError, RecursionError, UnicodeDecodeError, TypeError):
            return None, None
    if not isinstance(body, dict):
        return None, None
    error = body.get("error")
    if not isinstance(error, dict):
        return None, None
    return clean_text(error.get("code"), 120), clean_text(error.get("message"))


def error_for_status(status: int | None, body, family: Family | None = None,
                     retry_after: float | None = None, *, writing: bool = False) -> GraphError:
    """The GraphError for a failed answer (body: bytes or parsed JSON). ``writing``: the
    request was a write, so a 403 names the write permission and a refusal (4xx) is a
    WriteRefusedError."""
    code, message = graph_error_fields(body)
    if status == 403:
        permission = (family.write_permission if writing else family.read_permission) if family else None
        what = f"{'writing' if writing else 'reading'} {family.label}" if family else "this request"
        text = f"Permission denied {what}" + (f" (needs {permission})" if permission else "")
        if message:
            text += f": {message}"
        return PermissionDeniedError(403, code, text, permission=permission)
    if status in THROTTLE_STATUSES:
        return ThrottledError(status, code, None, retry_after=retry_after)
    if writing and status is not None and 400 <= status < 500 and status != 401:
        text = f"Refused by Microsoft Graph ({status}" + (f" {code}" if code else "") + ")"
        if message:
            text += f": {message}"
        return WriteRefusedError(status, code, text)
    text = f"Microsoft Graph answered {status}" if status else "Microsoft Graph request failed"
    if message:
        text += f": {message}"
    return GraphError(status, code, text)


def _lower_headers(headers) -> dict:
    if not isinstance(headers, dict):
        return {}
    return {str(key).lower(): value for key, value in headers.items() if isinstance(value, str)}


# --- the client ---------------------------------------------------------------------------


def the_object_asked_for(data: dict, object_id: str, status: int) -> dict:
    """Graph's answer for one object without its annotations, refused when it is another object:
    a restore writes to the id it reads here, so an answer naming another id (a swapped $batch
    answer, a proxy's mix-up) must never become that object's content. Without an id, it is the
    one asked for."""
    answered = data.get("id")
    if answered is not None and (not isinstance(answered, str) or answered.lower() != str(object_id).lower()):
        raise GraphError(status, "malformedResponse",
                         "Microsoft Graph answered with another object than the one asked for")
    found = {key: value for key, value in data.items() if key not in ANSWER_ANNOTATIONS}
    found.setdefault("id", str(object_id))
    return found

class GraphClient:
    """Reads one tenant's objects from Graph for the sync engine, and writes them back for a
    restore. See the module docstring."""

    def __init__(self, settings: GraphSettings, tenant_id: str, *, token_provider: TokenProvider,
                 clock=time.monotonic, sleep=time.sleep, background: bool = True,
                 rate_limit: TokenBucket | None = None, write_limit: TokenBucket | None = None,
                 max_retries: int = 6,
                 timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
                 wall_clock=time.time, jitter=random.random, max_response_bytes: int = MAX_RESPONSE_BYTES):
        self.settings = settings
        self.tenant_id = str(tenant_id)
        self.background = background
        self.max_retries = max(0, int(max_retries))
        self.max_response_bytes = int(max_response_bytes)
        self.stats = GraphStats()
        self.rate_limit = rate_limit if rate_limit is not None else tenant_rate_limit(self.tenant_id)
        self.write_limit = write_limit if write_limit is not None else tenant_write_limit(self.tenant_id)
        self._token_provider = token_provider
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._jitter = jitter
        self._root = settings.api_url.rstrip("/")
        self._root_url = httpx.URL(self._root)
        self._http = httpx.Client(
            verify=graph_ssl_context(settings),
            trust_env=False,  # no proxies, no SSL_CERT_FILE, no netrc from the environment
            timeout=timeout,
            follow_redirects=False,  # a redirect is an error, never a request to elsewhere
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=4, keepalive_expiry=30.0),
            headers={"User-Agent": USER_AGENT},
        )

    # context management

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GraphClient(tenant_id={self.tenant_id!r}, api_url={self._root!r})"

    # what the sync engine calls

    def list_all(self, family: Family) -> list[dict]:
        """Every object of the family: the list URL and its nextLinks, all pages."""
        return [item for page in self.iter_pages(family) for item in page]

    def iter_pages(self, family: Family):
        """The family's objects a page at a time (the list URL, then each nextLink), so that a
        caller can write one page before the next is read and hold no more than a page."""
        return self._iter_pages(family, self._root + family.list_url_path)

    def _iter_pages(self, family: Family, url: str):
        seen: set[str] = set()
        while True:
            started = self._clock()
            try:
                page = self._get_page(url, family)
            finally:
                self.stats.elapsed += self._clock() - started
            yield page["value"]
            next_link = page.get("@odata.nextLink")
            if next_link is None:
                return
            url = self._checked_link(next_link)
            if url in seen or len(seen) >= MAX_PAGES:
                raise GraphError(None, "pagingLoop", "Microsoft Graph kept returning pages without end")
            seen.add(url)

    def get_related(self, family: Family, object_ids) -> dict[tuple[str, str], RelatedResult]:
        """Each relation of ``family.per_object`` for each id, with $batch (20 a batch).
        Keys are ``(object_id, relation)``. A failed part is a result with ``ok=False``."""
        started = self._clock()
        try:
            ids = [str(object_id) for object_id in dict.fromkeys(object_ids)]
            pairs = [(object_id, relation) for object_id in ids for relation in family.per_object]
            results: dict[tuple[str, str], RelatedResult] = {}
            for start in range(0, len(pairs), BATCH_SIZE):
                results.update(self._run_batch(family, pairs[start:start + BATCH_SIZE]))
            return results
        finally:
            self.stats.elapsed += self._clock() - started

    def delta(self, family: Family, delta_link: str | None) -> DeltaPage:
        """A delta round: a full one when ``delta_link`` is None, else the changes since.
        A 410 Gone (or an expired-token code) restarts once with a full round."""
        started = self._clock()
        try:
            return self._delta(family, delta_link)
        finally:
            self.stats.elapsed += self._clock() - started

    # what the restore engine calls

    def get_object(self, family: Family, object_id: str) -> dict | None:
        """One object with its per-object relations, in a backup payload's shape:
        ``{"object": {...}, "settings": [...], "assignments": [...]}`` (one key per relation of
        ``family.per_object``); None when Graph answers 404. ``object`` is Graph's answer
        without its annotations (@odata.context). A relation that fails raises its error."""
        started = self._clock()
        try:
            answer = self._send("GET", self._object_url(family, object_id))
        finally:
            self.stats.elapsed += self._clock() - started
        if answer.status == 404:
            return None
        if not 200 <= answer.status < 300:
            raise self._failure(answer, family)
        data = parse_json(answer.content, answer.status)
        if not isinstance(data, dict):
            raise GraphError(answer.status, "malformedResponse", "Microsoft Graph returned an object that is not an object")
        payload: dict = {"object": the_object_asked_for(data, object_id, answer.status)}
        if family.per_object:
            for (_, relation), result in self.get_related(family, [object_id]).items():  # counts its own time
                if not result.ok:
                    raise result.error
                payload[relation] = list(result.items)
        return payload

    def get_objects(self, family: Family, object_ids) -> dict[str, dict | None]:
        """Several objects with their per-object relations, as ``get_object`` gives one, read
        inside ``$batch`` (the object's GET and each relation an inner request, 20 a batch):
        id -> payload, or None when Graph answers 404 for the object. Any other failure of an
        object or of one of its relations raises that error (as ``get_object`` does)."""
        ids = [str(object_id) for object_id in dict.fromkeys(object_ids)]
        for object_id in ids:
            self._object_url(family, object_id)  # refuses an empty id before anything is sent
        urls: dict[tuple[str, str], str] = {}
        for object_id in ids:
            urls[(object_id, OBJECT_PART)] = f"{family.entity_path}/{quote(object_id, safe='')}"
            for relation in family.per_object:
                urls[(object_id, relation)] = self._relative_url(family, object_id, relation)
        results = self._batched(family, urls)
        found: dict[str, dict | None] = {}
        for object_id in ids:
            head = results[(object_id, OBJECT_PART)]
            if not head.ok:
                if head.status == 404:
                    found[object_id] = None
                    continue
                raise head.error or GraphError(head.status, None, "Microsoft Graph could not read an object")
            payload: dict = {"object": the_object_asked_for(head.body, object_id, head.status)}
            for relation in family.per_object:
                result = results[(object_id, relation)]
                if not result.ok:
                    raise result.error or GraphError(result.status, None, "Microsoft Graph could not read an object")
                payload[relation] = list(result.items)
            found[object_id] = payload
        return found

    def find_by_name(self, family: Family, name: str) -> list[dict]:
        """The family's objects named ``name`` (``$filter`` on ``family.name_key``, every page),
        as Graph lists them. Graph decides how names compare (directory objects compare
        without regard to case), so a caller that needs an exact match checks the names."""
        if not isinstance(name, str) or not name:
            raise ValueError("a name to look for is a non-empty string")
        url = f"{self._root}{family.entity_url_path}?$filter={quote(name_filter(family, name), safe='')}"
        return [item for page in self._iter_pages(family, url) for item in page]  # counts its own time

    def create_object(self, family: Family, body: dict) -> dict:
        """POST the body (see app.graph.writable) to the family's collection; Graph's answer,
        the new object (with its id). Never sent twice on an unclear outcome: a 5xx or a
        connection lost after sending raises AmbiguousWriteError (see the module docstring).
        A refusal raises WriteRefusedError with Graph's code and message."""
        self._check_writable(family, body)
        answer = self._write("POST", self._root + family.entity_url_path, body, family, idempotent=False)
        if answer.status >= 500:
            code, message = graph_error_fields(answer.content)
            text = f"Microsoft Graph answered {answer.status} to a create" + (f": {message}" if message else "")
            raise AmbiguousWriteError(answer.status, code, text + "; it may have been created: look for it before trying again")
        created = parse_json(answer.content, answer.status) if answer.content else None
        if not isinstance(created, dict) or not isinstance(created.get("id"), str):
            # Graph said it created something but not what: as unclear as a timeout.
            raise AmbiguousWriteError(answer.status, "malformedResponse",
                                      "Microsoft Graph answered a create without the new object's id")
        return {key: value for key, value in created.items() if key not in ANSWER_ANNOTATIONS}

    def update_object(self, family: Family, object_id: str, body: dict) -> None:
        """Write the body over the object: ``family.update_method`` (PATCH merges the given
        properties; PUT, Settings Catalog, replaces the policy and its settings). Safe to
        send again, so 503/504 and lost connections are retried."""
        self._check_writable(family, body)
        self._write(family.update_method, self._object_url(family, object_id), body, family, idempotent=True)

    def assign(self, family: Family, object_id: str, assignments: list[dict]) -> None:
        """Replace the object's assignments with ``assignments`` (``POST …/{id}/assign``; each
        ``{"target": {...}}``; group ids must already be the target tenant's). An empty list
        removes them all. The same call twice leaves the same set, so it is retried."""
        if family.assign_action is None:
            raise ValueError(f"{family.label} has no assignments to write")
        url = f"{self._object_url(family, object_id)}/{quote(family.assign_action, safe='')}"
        self._write("POST", url, assignment_body(assignments), family, idempotent=True)

    def groups_by_ids(self, ids) -> dict[str, dict]:
        """The target tenant's groups with these ids (``GET /groups/{id}`` in $batch, 20 a
        batch): id -> group. An id that is not a group there is absent from the answer."""
        groups = FAMILIES_BY_KEY["groups"]
        wanted = [str(group_id) for group_id in dict.fromkeys(ids) if str(group_id)]
        urls = {(group_id, "id"): f"{groups.entity_path}/{quote(group_id, safe='')}" for group_id in wanted}
        found: dict[str, dict] = {}
        for key, result in self._batched(groups, urls).items():
            if result.ok and isinstance(result.body, dict):
                found[key[0]] = {k: v for k, v in result.body.items() if k not in ANSWER_ANNOTATIONS}
            elif result.status != 404:
                raise result.error or GraphError(result.status, None, "Microsoft Graph could not look up a group")
        return found

    def groups_by_names(self, names) -> dict[str, list[dict]]:
        """The target tenant's groups by display name (``GET /groups?$filter=displayName eq
        '…'`` in $batch, 20 a batch): name -> the groups Graph found (none, one or several:
        names are not unique in Entra)."""
        groups = FAMILIES_BY_KEY["groups"]
        wanted = [str(name) for name in dict.fromkeys(names) if isinstance(name, str) and name]
        urls = {(name, "name"): f"{groups.entity_path}?$filter={quote(name_filter(groups, name), safe='')}"
                for name in wanted}
        found: dict[str, list[dict]] = {}
        for key, result in self._batched(groups, urls).items():
            if not result.ok:
                raise result.error or GraphError(result.status, None, "Microsoft Graph could not look up a group")
            found[key[0]] = list(result.items)
        return found

    def _batched(self, family: Family, urls: dict[tuple[str, str], str]) -> dict[tuple[str, str], RelatedResult]:
        started = self._clock()
        try:
            keys = list(urls)
            results: dict[tuple[str, str], RelatedResult] = {}
            for start in range(0, len(keys), BATCH_SIZE):
                results.update(self._batch(family, {key: urls[key] for key in keys[start:start + BATCH_SIZE]}))
            return results
        finally:
            self.stats.elapsed += self._clock() - started

    def _object_url(self, family: Family, object_id: str) -> str:
        if not isinstance(object_id, str) or not object_id:
            raise ValueError("an object id is a non-empty string")
        # Percent-encoded: an id from a backup or a tenant never changes the path.
        return f"{self._root}{family.entity_url_path}/{quote(object_id, safe='')}"

    @staticmethod
    def _check_writable(family: Family, body) -> None:
        if not family.restorable:
            raise ValueError(f"{family.label} is not written by TenantAtlas")
        if not isinstance(body, dict):
            raise ValueError("a write body is a JSON object (see app.graph.writable)")

    def _write(self, method: str, url: str, body: dict, family: Family, *, idempotent: bool) -> _Answer:
        """Send a write; a refusal raises (WriteRefusedError, PermissionDeniedError, ...). Only a
        create's 5xx comes back as an answer, for create_object to call it ambiguous."""
        started = self._clock()
        try:
            answer = self._send(method, url, json_body=body, idempotent=idempotent, write=True)
        finally:
            self.stats.elapsed += self._clock() - started
        if 200 <= answer.status < 300:
            self.stats.writes += 1
        elif not (idempotent is False and answer.status >= 500):
            raise self._failure(answer, family, writing=True)
        return answer

    # links

    def _checked_link(self, link) -> str:
        """A nextLink/deltaLink, as is, when it points under the configured Graph URL
        (same scheme, host and port, a path under /v1.0/ or /beta/); else ForeignLinkError.
        Nothing is ever sent to a link that fails this."""
        if not isinstance(link, str) or not link:
            raise GraphError(None, "malformedResponse", "Microsoft Graph returned a link that is not a URL")
        if len(link) > MAX_LINK_LENGTH or any(ord(ch) <= 0x20 or ch in "\\\x7f" for ch in link):
            raise ForeignLinkError("Microsoft Graph returned a link that is not a clean URL; it was not followed")
        prefix = self._root + "/"
        # Scheme and host compare without regard to case (Graph may write them differently).
        if (link[:len(prefix)].lower() != prefix.lower()
                or not link[len(prefix):].startswith(("v1.0/", "beta/"))):
            raise ForeignLinkError()
        try:
            parsed = httpx.URL(link)
        except (httpx.InvalidURL, ValueError):
            raise ForeignLinkError("Microsoft Graph returned a link that is not a URL; it was not followed") from None
        root = self._root_url
        if (parsed.scheme != "https" or parsed.host != root.host or parsed.port != root.port
                or parsed.userinfo or parsed.fragment):
            raise ForeignLinkError()
        # Dot segments would move the path out of /v1.0/ or /beta/ (httpx removes them when
        # it parses), so they are looked for in the link as written.
        raw_path = link[len(prefix) - 1:].split("?", 1)[0].split("#", 1)[0]
        if any(segment.lower().replace("%2e", ".") in (".", "..") for segment in raw_path.split("/")):
            raise ForeignLinkError("Microsoft Graph returned a link with dot segments; it was not followed")
        # Encoded separators, parameters and escapes: a proxy in front of Graph may decode them
        # into a path of its own choosing. Graph's links never carry them in the path.
        if any(token in raw_path.lower() for token in ("%2f", "%5c", "%25", ";")):
            raise ForeignLinkError("Microsoft Graph returned a link with encoded separators; it was not followed")
        root_path = root.path.rstrip("/")
        if not parsed.path.startswith((f"{root_path}/v1.0/", f"{root_path}/beta/")):
            raise ForeignLinkError()
        return link

    # pages

    def _get_page(self, url: str, family: Family | None) -> dict:
        answer = self._send("GET", url)
        if not 200 <= answer.status < 300:
            raise self._failure(answer, family)
        page = parse_json(answer.content, answer.status)
        self._check_page(page, answer.status)
        return page

    @staticmethod
    def _check_page(page, status: int | None) -> None:
        if (not isinstance(page, dict) or not isinstance(page.get("value"), list)
                or not all(isinstance(item, dict) for item in page["value"])):
            raise GraphError(status, "malformedPage", "Microsoft Graph returned a page without a list of objects")
        for key in ("@odata.nextLink", "@odata.deltaLink"):
            if key in page and not isinstance(page[key], str):
                raise GraphError(status, "malformedPage", "Microsoft Graph returned a page with a broken link")

    # $batch

    def _relative_url(self, family: Family, object_id: str, relation: str) -> str:
        # Relative to the version root of the $batch endpoint ("/deviceManagement/..."),
        # each segment percent-encoded: an id from a tenant never changes the path.
        return f"{family.list_path}/{quote(object_id, safe='')}/{quote(relation, safe='')}"

    def _run_batch(self, family: Family, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], RelatedResult]:
        return self._batch(family, {pair: self._relative_url(family, *pair) for pair in pairs})

    def _batch(self, family: Family, urls: dict[tuple[str, str], str]) -> dict[tuple[str, str], RelatedResult]:
        """GETs in one $batch (at most BATCH_SIZE), each ``(key, label): relative url``; the
        results by the same keys. Throttled parts are sent again alone, after their wait."""
        batch_url = f"{self._root}/{family.api_version}/$batch"
        pending = {str(index + 1): pair for index, pair in enumerate(urls)}
        attempts = dict.fromkeys(pending, 0)
        results: dict[tuple[str, str], RelatedResult] = {}
        while pending:
            body = {"requests": [
                {"id": request_id, "method": "GET", "url": urls[pair], "headers": self._inner_headers()}
                for request_id, pair in pending.items()
            ]}
            # A $batch of GETs reads only, so it is as safe to send again as a GET.
            answer = self._send("POST", batch_url, json_body=body, cost=len(pending), idempotent=True)
            self.stats.inner_requests += len(pending)
            if not 200 <= answer.status < 300:
                raise self._failure(answer, family)
            data = parse_json(answer.content, answer.status)
            responses = data.get("responses") if isinstance(data, dict) else None
            if not isinstance(responses, list):
                raise GraphError(answer.status, "malformedBatch", "Microsoft Graph returned a $batch answer without responses")
            by_id: dict[str, dict] = {}
            for response in responses:  # any order; matched by id; unknown or repeated ids ignored
                if isinstance(response, dict) and isinstance(response.get("id"), str):
                    by_id.setdefault(response["id"], response)
            again: dict[str, tuple[str, str]] = {}
            waits: list[float] = []
            for request_id, (object_id, relation) in pending.items():
                response = by_id.get(request_id)
                status = response.get("status") if response else None
                if response is None or not isinstance(status, int) or isinstance(status, bool):
                    results[(object_id, relation)] = self._failed(
                        object_id, relation, None,
                        GraphError(None, "malformedBatch", "Microsoft Graph left a $batch request unanswered"))
                    continue
                headers = _lower_headers(response.get("headers"))
                inner_body = response.get("body")
                if 200 <= status < 300:
                    results[(object_id, relation)] = self._related_ok(family, object_id, relation, status, inner_body)
                    continue
                if status in RETRY_STATUSES:
                    if status in THROTTLE_STATUSES:
                        self.stats.throttled += 1
                    retry_after = parse_retry_after(headers.get("retry-after"), now=self._wall_clock(),
                                                    date_header=headers.get("date"))
                    if attempts[request_id] < self.max_retries and (retry_after is None or retry_after <= MAX_RETRY_AFTER):
                        waits.append(retry_after if retry_after is not None else self._backoff(attempts[request_id]))
                        attempts[request_id] += 1
                        again[request_id] = (object_id, relation)
                        continue
                    error = error_for_status(status, inner_body, family, retry_after)
                else:
                    error = error_for_status(status, inner_body, family)
                results[(object_id, relation)] = self._failed(object_id, relation, status, error)
            pending = again
            if pending:
                # Only the throttled requests go again, each after its own Retry-After:
                # waiting for the longest one covers them all.
                self.stats.retries += len(pending)
                log.info("Graph $batch: %d inner request(s) throttled for tenant %s, waiting %.1fs",
                         len(pending), self.tenant_id, max(waits))
                self._sleep(max(waits))
        return results

    @staticmethod
    def _failed(object_id: str, relation: str, status: int | None, error: GraphError) -> RelatedResult:
        return RelatedResult(object_id=object_id, relation=relation, ok=False, status=status, error=error)

    def _related_ok(self, family: Family, object_id: str, relation: str, status: int, body) -> RelatedResult:
        if body is None and relation == OBJECT_PART:
            return self._failed(object_id, relation, status,
                                GraphError(status, "malformedBatch", "Microsoft Graph returned an object without a body"))
        if body is None:
            return RelatedResult(object_id, relation, True, status, [], None, None)
        if not isinstance(body, dict):
            return self._failed(object_id, relation, status,
                                GraphError(status, "malformedBatch", "Microsoft Graph returned a $batch answer that is not an object"))
        try:
            check_depth(body, status)
        except GraphError as error:
            return self._failed(object_id, relation, status, error)
        if relation == OBJECT_PART:  # an object, whatever keys it has: never taken for a page
            return RelatedResult(object_id, relation, True, status, [], body, None)
        if "value" not in body:
            return RelatedResult(object_id, relation, True, status, [], body, None)
        try:
            self._check_page(body, status)
            items = list(body["value"])
            next_link = body.get("@odata.nextLink")
            seen: set[str] = set()
            while next_link is not None:
                # An inner answer with more pages: the rest with plain GETs.
                url = self._checked_link(next_link)
                if url in seen or len(seen) >= MAX_PAGES:
                    raise GraphError(None, "pagingLoop", "Microsoft Graph kept returning pages without end")
                seen.add(url)
                page = self._get_page(url, family)
                items.extend(page["value"])
                next_link = page.get("@odata.nextLink")
        except ConsentError:
            raise
        except GraphError as error:
            return self._failed(object_id, relation, error.status, error)
        return RelatedResult(object_id, relation, True, status, items, body, None)

    # delta

    def _delta(self, family: Family, delta_link: str | None) -> DeltaPage:
        start = self._root + family.list_url_path
        restarted = False
        url = start
        if delta_link:
            try:
                url = self._checked_link(delta_link)
            except ForeignLinkError:
                # Kept from another Graph root (GRAPH_API_URL changed: another cloud, a proxy,
                # the simulator): useless here, so a full round, as after 410 Gone.
                log.info("Graph delta for %s in tenant %s: the kept delta link is not under %s, full round",
                         family.key, self.tenant_id, self._root)
                restarted = True
        pages = 0
        objects: dict[str, dict] = {}
        anonymous: list[dict] = []
        removed: dict[str, None] = {}
        while True:
            pages += 1
            if pages > MAX_PAGES:
                raise GraphError(None, "pagingLoop", "Microsoft Graph kept returning delta pages without end")
            answer = self._send("GET", url)
            if self._needs_resync(answer):
                if restarted:
                    raise GraphError(answer.status, "resyncLoop", "Microsoft Graph asked to restart the delta round twice")
                # Start over with the initial query (never the Location Graph may send).
                log.info("Graph delta for %s in tenant %s: token expired (%s), full round", family.key,
                         self.tenant_id, answer.status)
                restarted = True
                objects.clear()
                anonymous.clear()
                removed.clear()
                url = start
                continue
            if not 200 <= answer.status < 300:
                raise self._failure(answer, family)
            page = parse_json(answer.content, answer.status)
            self._check_page(page, answer.status)
            for item in page["value"]:
                object_id = item.get("id")
                if not isinstance(object_id, str):
                    anonymous.append(item)
                elif "@removed" in item:
                    objects.pop(object_id, None)
                    removed[object_id] = None
                else:
                    # The same object may come more than once in a round: the last one wins.
                    removed.pop(object_id, None)
                    objects.pop(object_id, None)
                    objects[object_id] = item
            next_link = page.get("@odata.nextLink")
            if next_link is not None:
                url = self._checked_link(next_link)
                continue
            final = page.get("@odata.deltaLink")
            if final is None:
                raise GraphError(answer.status, "malformedPage", "Microsoft Graph ended a delta round without a deltaLink")
            return DeltaPage(items=list(objects.values()) + anonymous, removed_ids=list(removed),
                             delta_link=self._checked_link(final), restarted=restarted)

    @staticmethod
    def _needs_resync(answer: _Answer) -> bool:
        if answer.status == 410:
            return True
        if 400 <= answer.status < 500 and answer.status not in (401, 403, 429):
            code, _ = graph_error_fields(answer.content)
            return code in RESYNC_CODES
        return False

    # one request, with pacing, token, retries

    def _headers(self, token: AccessToken) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {token.value}",
            "client-request-id": str(uuid.uuid4()),
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        if self.background:
            # Throttled first when Graph must throttle; "does not change the limits".
            headers["x-ms-throttle-priority"] = "low"
        return headers

    def _inner_headers(self) -> dict[str, str]:
        headers = {"client-request-id": str(uuid.uuid4()), "Accept": "application/json"}
        if self.background:
            headers["x-ms-throttle-priority"] = "low"
        return headers

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter, capped (and floored, see BACKOFF_FLOOR)."""
        ceiling = min(BACKOFF_CAP, BACKOFF_BASE * (2 ** min(attempt, 16)))
        return max(BACKOFF_FLOOR, ceiling * self._jitter())

    def _failure(self, answer: _Answer, family: Family | None, *, writing: bool = False) -> GraphError:
        retry_after = parse_retry_after(answer.headers.get("retry-after"), now=self._wall_clock(),
                                        date_header=answer.headers.get("date"))
        return error_for_status(answer.status, answer.content, family, retry_after, writing=writing)

    def _round_trip(self, method: str, url: str, json_body, token: AccessToken) -> _Answer:
        with self._http.stream(method, url, headers=self._headers(token), json=json_body) as response:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_response_bytes:
                raise GraphError(response.status_code, "responseTooLarge", "Microsoft Graph answered with more data than allowed")
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise GraphError(response.status_code, "responseTooLarge", "Microsoft Graph answered with more data than allowed")
                chunks.append(chunk)
            return _Answer(response.status_code, response.headers, b"".join(chunks))

    def _send(self, method: str, url: str, *, json_body=None, cost: float = 1, idempotent: bool | None = None,
              write: bool = False) -> _Answer:
        """One request, paced, with a token, retried where that is safe. ``idempotent``
        (default: GET only): the request may be sent again after a 503/504 or a lost
        connection. A request that is not (a create) is sent again only when Graph refused
        it (429) or it never left (no connection); a 5xx answer is returned to the caller,
        and a connection lost after sending raises AmbiguousWriteError. ``write``: a write
        (not a $batch of reads), paced by the write bucket as well."""
        if idempotent is None:
            idempotent = method == "GET"
        retry_statuses = RETRY_STATUSES if idempotent else frozenset({429})
        retries = 0
        refreshed = False
        while True:
            if write:
                self.write_limit.acquire(1, self._sleep)
            self.rate_limit.acquire(cost, self._sleep)
            token = self._token_provider.acquire(self.tenant_id)
            try:
                answer = self._round_trip(method, url, json_body, token)
            except httpx.TransportError as error:  # connect/read/write timeouts, refused, TLS, protocol
                if (idempotent or isinstance(error, NOT_SENT_ERRORS)) and retries < self.max_retries:
                    delay = self._backoff(retries)
                    retries += 1
                    self.stats.retries += 1
                    log.info("Graph %s for tenant %s failed (%s), retry in %.1fs", method, self.tenant_id,
                             type(error).__name__, delay)
                    self._sleep(delay)
                    continue
                if not idempotent and not isinstance(error, NOT_SENT_ERRORS):
                    raise AmbiguousWriteError(None, "networkError", None) from None
                raise GraphError(None, "networkError",
                                 f"Microsoft Graph could not be reached ({type(error).__name__})") from None
            self.stats.requests += 1
            if answer.status in retry_statuses:
                if answer.status in THROTTLE_STATUSES:
                    self.stats.throttled += 1
                retry_after = parse_retry_after(answer.headers.get("retry-after"), now=self._wall_clock(),
                                                date_header=answer.headers.get("date"))
                if retries >= self.max_retries or (retry_after is not None and retry_after > MAX_RETRY_AFTER):
                    raise self._failure(answer, None)
                delay = retry_after if retry_after is not None else self._backoff(retries)
                retries += 1
                self.stats.retries += 1
                log.info("Graph answered %d for tenant %s, retry in %.1fs", answer.status, self.tenant_id, delay)
                self._sleep(delay)
                continue
            if answer.status == 401 and not refreshed:
                # Expired (or otherwise refused) token: one fresh token from a fresh msal client.
                refreshed = True
                self.stats.retries += 1
                self._token_provider.forget(self.tenant_id)
                continue
            return answer
