"""The Graph client: paging, $batch, delta, retries, pacing, hostile answers.

Everything that talks HTTP does it over real sockets to the Graph simulator (HTTPS with
its own CA); sleeps are recorded instead of slept. Pure parts (rate limiter, Retry-After,
error bodies, link checks) are tested directly."""
from __future__ import annotations

import email.utils
import threading
import time

import pytest

from app.graph.client import (
    BACKOFF_CAP,
    BACKOFF_FLOOR,
    GraphClient,
    TokenBucket,
    error_for_status,
    graph_error_fields,
    parse_json,
    parse_retry_after,
    tenant_rate_limit,
    tenant_write_limit,
)
from app.graph.credentials import TokenProvider
from app.graph.errors import (
    ForeignLinkError,
    GraphError,
    PermissionDeniedError,
    ThrottledError,
)
from app.graph.families import FAMILIES_BY_KEY
from app.graph.settings import GraphSettings
from tests.graph_support import FakeClock, RecordingSleep

SETTINGS = GraphSettings(api_url="https://graph.example.test", login_url="https://login.example.test",
                         client_id="00000000-0000-0000-0000-000000000001", client_secret="not-a-real-secret")


# --- the rate limiter ---------------------------------------------------------------------

def test_token_bucket_lets_a_burst_through_then_paces_at_its_rate():
    clock = FakeClock()
    bucket = TokenBucket(capacity=10, rate=5, clock=clock)
    assert [bucket.reserve() for _ in range(10)] == [0.0] * 10
    assert bucket.reserve() == pytest.approx(0.2)
    assert bucket.reserve() == pytest.approx(0.4)  # served in order: the second waits behind the first


def test_token_bucket_refills_with_time_up_to_its_capacity():
    clock = FakeClock()
    bucket = TokenBucket(capacity=10, rate=5, clock=clock)
    for _ in range(10):
        bucket.reserve()
    clock.advance(1.0)
    assert bucket.available == pytest.approx(5)
    clock.advance(100.0)
    assert bucket.available == pytest.approx(10)


def test_token_bucket_charges_a_batch_by_its_inner_requests():
    clock = FakeClock()
    bucket = TokenBucket(capacity=30, rate=10, clock=clock)
    assert bucket.reserve(20) == 0.0
    assert bucket.reserve(20) == pytest.approx(1.0)  # 10 short, at 10 a second


def test_token_bucket_acquire_sleeps_with_the_given_sleep():
    clock = FakeClock()
    sleep = RecordingSleep(clock)
    bucket = TokenBucket(capacity=2, rate=1, clock=clock)
    for _ in range(5):
        bucket.acquire(1, sleep)
    assert sleep.waits == pytest.approx([1.0, 1.0, 1.0])
    # Over any 20 seconds a bucket lets through at most capacity + rate * 20.
    assert clock.now - 1_000.0 == pytest.approx(3.0)


def test_token_bucket_is_consistent_under_threads():
    clock = FakeClock()
    bucket = TokenBucket(capacity=100, rate=10, clock=clock)
    waits: list[float] = []
    lock = threading.Lock()

    def worker():
        for _ in range(50):
            wait = bucket.reserve()
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 400 reservations, 100 free: the other 300 are spread 0.1 s apart, none given twice.
    queued = sorted(wait for wait in waits if wait > 0)
    assert waits.count(0.0) == 100 and len(queued) == 300
    assert queued == pytest.approx([0.1 * (index + 1) for index in range(300)])


def test_the_default_rate_limit_is_shared_per_tenant_and_within_intune_limits():
    first = tenant_rate_limit("11111111-1111-1111-1111-111111111111")
    assert tenant_rate_limit("11111111-1111-1111-1111-111111111111") is first
    assert tenant_rate_limit("22222222-2222-2222-2222-222222222222") is not first
    # Intune: 1,000 requests per 20 s per app per tenant. The bucket allows at most
    # capacity + 20 * rate in any 20 seconds; keep a margin below (bench/sync.py measured
    # the pace: a large sync runs close to it, so more margin costs wall time directly).
    assert first.capacity + 20 * first.rate <= 0.9 * 1000
    provider = TokenProvider(SETTINGS)
    one = GraphClient(SETTINGS, "11111111-1111-1111-1111-111111111111", token_provider=provider)
    two = GraphClient(SETTINGS, "11111111-1111-1111-1111-111111111111", token_provider=provider)
    try:
        assert one.rate_limit is two.rate_limit is first
    finally:
        one.close()
        two.close()


def test_the_default_write_limit_is_shared_per_tenant_and_under_intunes_write_limit():
    from simulator import ThrottleLimits

    first = tenant_write_limit("33333333-3333-3333-3333-333333333333")
    assert tenant_write_limit("33333333-3333-3333-3333-333333333333") is first
    assert tenant_write_limit("44444444-4444-4444-4444-444444444444") is not first
    assert first is not tenant_rate_limit("33333333-3333-3333-3333-333333333333")
    # Intune: 100 writes per 20 s per tenant (the simulator's default limits say the same).
    limits = ThrottleLimits.intune()
    assert first.capacity + limits.window_seconds * first.rate <= 0.95 * limits.write_requests
    provider = TokenProvider(SETTINGS)
    one = GraphClient(SETTINGS, "33333333-3333-3333-3333-333333333333", token_provider=provider)
    two = GraphClient(SETTINGS, "33333333-3333-3333-3333-333333333333", token_provider=provider)
    try:
        assert one.write_limit is two.write_limit is first
    finally:
        one.close()
        two.close()


# --- Retry-After ----------------------------------------------------------------------------

def test_retry_after_in_seconds():
    assert parse_retry_after("7", now=0) == 7.0
    assert parse_retry_after(" 0 ", now=0) == 0.0


def test_retry_after_as_an_http_date_counts_from_the_answers_date_header():
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    later = "Wed, 21 Oct 2015 07:28:12 GMT"
    # The server's own Date is the reference, not our (possibly skewed) clock.
    assert parse_retry_after(later, now=0, date_header=date) == 12.0
    now = email.utils.parsedate_to_datetime(date).timestamp()
    assert parse_retry_after(later, now=now + 2) == 10.0
    assert parse_retry_after(date, now=now + 60) == 0.0  # in the past: no wait


@pytest.mark.parametrize("value", [None, "", "soon", "-3", "1e9", "Wed, 99 Foo 2015 07:28:00 GMT", "x" * 500])
def test_retry_after_that_cannot_be_read_is_ignored(value):
    assert parse_retry_after(value, now=0) is None


# --- error bodies -----------------------------------------------------------------------------

HOSTILE_BODIES = [
    b"", b"<html>502 Bad Gateway</html>", b"null", b"[]", b'"error"', b'{"error": "text"}',
    b'{"error": {"code": 42, "message": ["x"]}}', b'{"error": {"code": "' + b"A" * 10_000 + b'"}}',
    b"[" * 100_000, b'{"error": {"message": NaN}}', b"\xff\xfe\x00garbage", b'{"error": {"code": "x", "message": "\\ud800"}}',
]


@pytest.mark.parametrize("body", HOSTILE_BODIES)
def test_a_hostile_error_body_only_ever_gives_a_graph_error(body):
    code, message = graph_error_fields(body)
    assert code is None or len(code) <= 120
    assert message is None or len(message) <= 300
    for status in (400, 403, 404, 429, 500):
        error = error_for_status(status, body, FAMILIES_BY_KEY["settingsCatalog"])
        assert isinstance(error, GraphError)
        assert len(error.message) <= 300


def test_a_graph_error_body_gives_its_code_and_message():
    body = b'{"error": {"code": "Forbidden", "message": "Application is not authorized to perform this operation.", "innerError": {"request-id": "x"}}}'
    error = error_for_status(403, body, FAMILIES_BY_KEY["settingsCatalog"])
    assert isinstance(error, PermissionDeniedError)
    assert error.code == "Forbidden"
    assert error.permission == "DeviceManagementConfiguration.Read.All"
    assert "not authorized" in error.message and "DeviceManagementConfiguration.Read.All" in error.message
    assert isinstance(error_for_status(429, body), ThrottledError)


def test_a_token_echoed_in_an_error_message_is_redacted():
    jwt_like = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJyb2xlcyI6WyJ4Il19.c2lnbmF0dXJlc2lnbmF0dXJl"
    body = ('{"error": {"code": "InvalidAuthenticationToken", "message": "token ' + jwt_like
            + ' refused, header was Bearer abc.def.ghi"}}').encode()
    error = error_for_status(401, body)
    assert jwt_like not in error.message and "abc.def.ghi" not in error.message
    assert "[redacted]" in error.message
    assert jwt_like not in repr(error)


def test_json_that_is_too_deep_or_not_json_is_a_graph_error():
    with pytest.raises(GraphError):
        parse_json(b"[" * 5_000 + b"]" * 5_000)
    with pytest.raises(GraphError):
        parse_json(b'{"a": ' * 200 + b"1" + b"}" * 200)
    with pytest.raises(GraphError):
        parse_json(b'{"value": [Infinity]}')
    assert parse_json(b'{"value": []}') == {"value": []}


# --- links ------------------------------------------------------------------------------------

@pytest.fixture
def offline_client():
    client = GraphClient(SETTINGS, "33333333-3333-3333-3333-333333333333", token_provider=TokenProvider(SETTINGS))
    yield client
    client.close()


@pytest.mark.parametrize("link", [
    "https://graph.example.test/beta/deviceManagement/configurationPolicies?$skiptoken=abc",
    "https://graph.example.test/v1.0/groups/delta?$deltatoken=xyz%3D%3D",
])
def test_a_next_link_under_the_configured_graph_url_is_followed_as_is(offline_client, link):
    assert offline_client._checked_link(link) == link


@pytest.mark.parametrize("link", [
    "https://evil.example/beta/deviceManagement/configurationPolicies",
    "http://graph.example.test/beta/x",
    "https://graph.example.test:444/beta/x",
    "https://graph.example.test.evil.example/beta/x",
    "https://graph.example.test@evil.example/beta/x",
    "https://graph.example.test/other/x",
    "https://graph.example.test/beta/../admin",
    "https://graph.example.test/beta/%2e%2e/admin",
    "https://graph.example.test/beta/x\\@evil.example",
    "https://graph.example.test/beta/x y",
    "//evil.example/beta/x",
    "/beta/deviceManagement/configurationPolicies",
])
def test_a_link_anywhere_else_is_refused(offline_client, link):
    with pytest.raises(ForeignLinkError):
        offline_client._checked_link(link)


def test_backoff_is_jittered_bounded_and_never_zero(offline_client):
    offline_client._jitter = lambda: 0.0
    assert offline_client._backoff(0) == BACKOFF_FLOOR
    offline_client._jitter = lambda: 0.999999
    assert offline_client._backoff(3) == pytest.approx(8.0, rel=1e-3)
    assert offline_client._backoff(40) <= BACKOFF_CAP


# --- against the simulator (real HTTPS) ---------------------------------------------------------

from tests.graph_support import (  # noqa: E402,F401  (fixtures)
    graph_settings,
    graph_simulator,
    make_graph_client,
    make_tenant_id,
    settings_for,
    token_provider,
)

SETTINGS_CATALOG = FAMILIES_BY_KEY["settingsCatalog"]
DEVICE_CONFIGURATIONS = FAMILIES_BY_KEY["deviceConfigurations"]
GROUPS = FAMILIES_BY_KEY["groups"]


def _records(simulator, tenant_id, **match):
    match.setdefault("server", "api")
    return [record for record in simulator.requests
            if record.tenant_id == tenant_id and all(getattr(record, key) == value for key, value in match.items())]


def test_list_all_follows_every_next_link_to_the_last_page(graph_simulator, make_tenant_id, make_graph_client):
    tenant_id = make_tenant_id(policies_per_family=250)
    client = make_graph_client(tenant_id)
    items = client.list_all(SETTINGS_CATALOG)
    assert [item["id"] for item in items] == [item["id"] for item in graph_simulator.objects(tenant_id, "settingsCatalog")]
    pages = _records(graph_simulator, tenant_id, path="/beta/deviceManagement/configurationPolicies")
    assert len(pages) == 3 and [bool(record.query) for record in pages] == [False, True, True]
    assert client.stats.requests == 3 and client.stats.retries == 0


def test_get_related_sends_45_ids_in_three_batches_and_matches_shuffled_answers_by_id(
        graph_simulator, make_tenant_id, make_graph_client):
    tenant_id = make_tenant_id(policies_per_family=50)
    objects = graph_simulator.objects(tenant_id, "deviceConfigurations")[:45]
    client = make_graph_client(tenant_id)
    results = client.get_related(DEVICE_CONFIGURATIONS, [item["id"] for item in objects])
    assert len(results) == 45
    for item in objects:
        result = results[(item["id"], "assignments")]
        assert result.ok and result.status == 200 and result.error is None
        assert result.items == item["assignments"]
    batches = _records(graph_simulator, tenant_id, path="/beta/$batch", in_batch=False)
    inner = _records(graph_simulator, tenant_id, in_batch=True)
    assert len(batches) == 3 and len(inner) == 45
    assert all(record.path.endswith("/assignments") for record in inner)
    assert client.stats.requests == 3 and client.stats.inner_requests == 45


def test_get_related_fetches_every_relation_of_the_family(graph_simulator, make_tenant_id, make_graph_client):
    tenant_id = make_tenant_id(policies_per_family=3)
    objects = graph_simulator.objects(tenant_id, "settingsCatalog")
    client = make_graph_client(tenant_id)
    results = client.get_related(SETTINGS_CATALOG, [item["id"] for item in objects])
    assert set(results) == {(item["id"], relation) for item in objects for relation in ("settings", "assignments")}
    for item in objects:
        assert results[(item["id"], "settings")].items == item["settings"]
        assert results[(item["id"], "assignments")].items == item["assignments"]


def test_an_inner_429_is_retried_alone_after_its_own_retry_after(graph_simulator, make_tenant_id, make_graph_client):
    tenant_id = make_tenant_id(policies_per_family=25)
    ids = [item["id"] for item in graph_simulator.objects(tenant_id, "deviceConfigurations")[:20]]
    graph_simulator.inject("batch-inner-429", count=1, tenant_id=tenant_id, retry_after=3)
    client = make_graph_client(tenant_id)
    results = client.get_related(DEVICE_CONFIGURATIONS, ids)
    assert all(result.ok for result in results.values()) and len(results) == 20
    assert client.recorded_sleep.waits == [3.0]
    inner = _records(graph_simulator, tenant_id, in_batch=True)
    throttled = [record for record in inner if record.status == 429]
    assert len(throttled) == 1 and len(inner) == 21  # 20, then the throttled one again, alone
    assert inner[-1].path == throttled[0].path and inner[-1].status == 200
    assert len(_records(graph_simulator, tenant_id, path="/beta/$batch", in_batch=False)) == 2
    assert client.stats.throttled == 1 and client.stats.retries == 1 and client.stats.inner_requests == 21


def test_an_inner_500_comes_back_as_a_failed_result_without_retry(graph_simulator, make_tenant_id, make_graph_client):
    tenant_id = make_tenant_id(policies_per_family=5)
    ids = [item["id"] for item in graph_simulator.objects(tenant_id, "deviceConfigurations")]
    graph_simulator.inject("batch-inner-500", count=1, tenant_id=tenant_id)
    client = make_graph_client(tenant_id)
    results = client.get_related(DEVICE_CONFIGURATIONS, ids)
    failed = [result for result in results.values() if not result.ok]
    assert len(failed) == 1 and len(results) == 5
    assert failed[0].status == 500 and isinstance(failed[0].error, GraphError)
    assert failed[0].error.code == "InternalServerError" and failed[0].items == []
    assert client.recorded_sleep.waits == [] and client.stats.retries == 0


def test_a_missing_permission_inside_a_batch_is_a_failed_result_per_request(
        graph_simulator, make_tenant_id, make_graph_client):
    tenant_id = make_tenant_id(policies_per_family=2)
    ids = [item["id"] for item in graph_simulator.objects(tenant_id, "deviceConfigurations")]
    graph_simulator.set_roles(tenant_id, ["Group.Read.All"])
    client = make_graph_client(tenant_id)
    results = client.get_related(DEVICE_CONFIGURATIONS, ids)
    assert {result.status for result in results.values()} == {403}
    assert all(isinstance(result.error, PermissionDeniedError) for result in results.values())


def test_retry_after_in_seconds_is_waited_before_the_retry(graph_simulator, make_tenant_id, make_graph_client):
    tenant_id = make_tenant_id(policies_per_family=1)
    graph_simulator.inject("429", tenant_id=tenant_id, retry_after=4)
    client = make_graph_client(tenant_id)
    assert len(client.list_all(SETTINGS_CATALOG)) == 1
    assert client.recorded_sleep.waits == [4.0]
    assert [record.status for record in _records(graph_simulator, tenant_id)] == [429, 200]
    assert (client.stats.throttled, client.stats.retries, client.stats.requests) == (1, 1, 2)


def test_retry_after_as_an_http_date_is_waited_until_that_date(graph_simulator, make_tenant_id, make_graph_client):
    tenant_id = make_tenant_id(policies_per_family=1)
    graph_simulator.inject("429-http-date", tenant_id=tenant_id, retry_after=5)
    client = make_graph_client(tenant_id)
    assert len(client.list_all(SETTINGS_CATALOG)) == 1
    # The simulator dates it ceil(5) + 1 seconds ahead, at one-second resolution.
    assert len(client.recorded_sleep.waits) == 1 and 4.0 <= client.recorded_sleep.waits[0] <= 7.0


def test_a_429_without_retry_after_backs_off_exponentially_with_jitter(graph_simulator, make_tenant_id, make_graph_client):
    tenant_id = make_tenant_id(policies_per_family=1)
    graph_simulator.inject("429-no-retry-after", count=4, tenant_id=tenant_id)
    client = make_graph_client(tenant_id)
    assert len(client.list_all(SETTINGS_CATALOG)) == 1
    waits = client.recorded_sleep.waits
    assert len(waits) == 4
    for attempt, wait in enumerate(waits):
        assert BACKOFF_FLOOR <= wait <= min(BACKOFF_CAP, 2 ** attempt)


def test_503_and_504_are_retried(graph_simulator, make_tenant_id, make_graph_client):
    tenant_id = make_tenant_id(policies_per_family=1)
    graph_simulator.inject("503", tenant_id=tenant_id)
    graph_simulator.inject("504", tenant_id=tenant_id)
    client = make_graph_client(tenant_id)
    assert len(client.list_all(SETTINGS_CATALOG)) == 1
    assert [record.status for record in _records(graph_simulator, tenant_id)] == [503, 504, 200]
    assert len(client.recorded_sleep.waits) == 2
    assert client.stats.throttled == 1 and client.stats.retries == 2


def test_throttling_that_outlasts_the_retries_raises_throttled_error(graph_simulator, make_tenant_id, make_graph_client):
    tenant_id = make_tenant_id(policies_per_family=1)
    graph_simulator.inject("429", count=10, tenant_id=tenant_id, retry_after=2)
    client = make_graph_client(tenant_id, max_retries=2)
    with pytest.raises(ThrottledError) as raised:
        client.list_all(SETTINGS_CATALOG)
    assert raised.value.status == 429 and raised.value.retry_after == 2.0
    assert client.recorded_sleep.waits == [2.0, 2.0]
    assert len(_records(graph_simulator, tenant_id)) == 3
    graph_simulator.clear_faults()


def test_a_foreign_next_link_is_refused_and_nothing_goes_to_the_other_host(
        graph_simulator, make_tenant_id, make_graph_client):
    tenant_id = make_tenant_id(policies_per_family=5)
    graph_simulator.inject("foreign-next-link", tenant_id=tenant_id)
    client = make_graph_client(tenant_id)
    sent = []
    client._http.event_hooks["request"].append(lambda request: sent.append(request.url))
    with pytest.raises(ForeignLinkError):
        client.list_all(SETTINGS_CATALOG)
    api = client._root_url
    assert len(sent) == 1 and all((url.host, url.port) == (api.host, api.port) for url in sent)
    assert len(_records(graph_simulator, tenant_id)) == 1


def test_a_malformed_page_raises_graph_error(graph_simulator, make_tenant_id, make_graph_client):
    tenant_id = make_tenant_id(policies_per_family=5)
    graph_simulator.inject("malformed-page", tenant_id=tenant_id)
    client = make_graph_client(tenant_id)
    with pytest.raises(GraphError) as raised:
        client.list_all(SETTINGS_CATALOG)
    assert raised.value.code == "malformedResponse" and type(raised.value) is GraphError


def test_a_family_without_its_permission_raises_permission_denied(graph_simulator, make_tenant_id, make_graph_client):
    tenant_id = make_tenant_id(roles=["Group.Read.All"], policies_per_family=1)
    client = make_graph_client(tenant_id)
    with pytest.raises(PermissionDeniedError) as raised:
        client.list_all(SETTINGS_CATALOG)
    error = raised.value
    assert error.status == 403 and error.code == "Authorization_RequestDenied"
    assert error.permission == "DeviceManagementConfiguration.Read.All"
    assert "Insufficient privileges" in error.message
    assert len(client.list_all(FAMILIES_BY_KEY["groups"])) >= 0  # what it may read, it reads


def test_every_request_has_its_own_client_request_id_and_low_priority(graph_simulator, make_tenant_id, make_graph_client):
    tenant_id = make_tenant_id(policies_per_family=3)
    client = make_graph_client(tenant_id)
    items = client.list_all(SETTINGS_CATALOG)
    client.get_related(SETTINGS_CATALOG, [item["id"] for item in items])
    records = _records(graph_simulator, tenant_id)
    assert len(records) == 1 + 1 + 6  # the list, one $batch, six inner requests
    ids = [record.client_request_id for record in records]
    assert all(ids) and len(set(ids)) == len(ids)
    assert {record.throttle_priority for record in records} == {"low"}


def test_a_foreground_client_sends_no_throttle_priority(graph_simulator, make_tenant_id, make_graph_client):
    tenant_id = make_tenant_id(policies_per_family=1)
    make_graph_client(tenant_id, background=False).list_all(SETTINGS_CATALOG)
    assert {record.throttle_priority for record in _records(graph_simulator, tenant_id)} == {None}


def test_delta_brings_changes_and_removals_after_a_full_round(graph_simulator, make_tenant_id, make_graph_client):
    tenant_id = make_tenant_id()
    client = make_graph_client(tenant_id)
    first = client.delta(GROUPS, None)
    groups = graph_simulator.objects(tenant_id, "groups")
    assert sorted(item["id"] for item in first.items) == sorted(item["id"] for item in groups)
    assert first.removed_ids == [] and not first.restarted
    changed, deleted = groups[0]["id"], groups[1]["id"]
    graph_simulator.change_object(tenant_id, "groups", changed, {"displayName": "Renamed group"})
    graph_simulator.delete_object(tenant_id, "groups", deleted)
    added = graph_simulator.add_object(tenant_id, "groups", {"displayName": "New group", "mailNickname": "newgroup"})
    second = client.delta(GROUPS, first.delta_link)
    assert {item["id"] for item in second.items} == {changed, added}
    assert next(item for item in second.items if item["id"] == changed)["displayName"] == "Renamed group"
    assert second.removed_ids == [deleted] and not second.restarted
    assert client.delta(GROUPS, second.delta_link).items == []


def test_an_expired_delta_link_restarts_with_a_full_round(graph_simulator, make_tenant_id, make_graph_client):
    tenant_id = make_tenant_id()
    client = make_graph_client(tenant_id)
    first = client.delta(GROUPS, None)
    graph_simulator.inject("delta-expired", tenant_id=tenant_id)
    again = client.delta(GROUPS, first.delta_link)
    assert again.restarted
    assert sorted(item["id"] for item in again.items) == sorted(item["id"] for item in first.items)
    assert [record.status for record in _records(graph_simulator, tenant_id)][-2:] == [410, 200]


def test_a_stored_delta_link_for_another_host_is_never_requested(make_tenant_id, make_graph_client, graph_simulator):
    """A kept link from elsewhere (GRAPH_API_URL changed) is dropped for a full round here: nothing goes to it."""
    tenant_id = make_tenant_id()
    client = make_graph_client(tenant_id)
    page = client.delta(GROUPS, "https://graph.elsewhere.invalid/v1.0/groups/delta?$deltatoken=abc")
    assert page.restarted
    assert not [r for r in graph_simulator.requests if "deltatoken=abc" in r["path"]]


def test_a_batch_counts_each_inner_request_against_the_rate_limit(graph_simulator, make_tenant_id, make_graph_client):
    tenant_id = make_tenant_id(policies_per_family=45)
    ids = [item["id"] for item in graph_simulator.objects(tenant_id, "deviceConfigurations")]
    clock = FakeClock()
    sleep = RecordingSleep(clock)
    client = make_graph_client(tenant_id, sleep=sleep, rate_limit=TokenBucket(capacity=20, rate=10, clock=clock))
    client.get_related(DEVICE_CONFIGURATIONS, ids)
    # 20 free, then 20 more at 10 a second (2 s), then 5 (0.5 s).
    assert sleep.waits == pytest.approx([2.0, 0.5])


def test_an_answer_larger_than_the_limit_is_refused(make_tenant_id, make_graph_client):
    client = make_graph_client(make_tenant_id(policies_per_family=50), max_response_bytes=10_000)
    with pytest.raises(GraphError) as raised:
        client.list_all(SETTINGS_CATALOG)
    assert raised.value.code == "responseTooLarge"


def test_tls_to_graph_needs_the_graph_ca_bundle(graph_simulator, make_tenant_id, make_graph_client):
    tenant_id = make_tenant_id(policies_per_family=1)
    without = settings_for(graph_simulator, ca_bundle=False)
    client = make_graph_client(tenant_id, settings=without, max_retries=0)
    with pytest.raises(GraphError) as raised:
        client.list_all(SETTINGS_CATALOG)
    assert raised.value.code == "networkError" and raised.value.status is None
    assert _records(graph_simulator, tenant_id, server="api") == []  # the handshake failed: no request answered
    assert len(make_graph_client(tenant_id).list_all(SETTINGS_CATALOG)) == 1


class _RetiredKeyProvider(TokenProvider):
    """Hands out tokens of another simulator (signed with a key this Graph does not accept,
    as after a key rollover) until forgotten, then the real ones."""

    def __init__(self, settings, stale: TokenProvider, *, always_stale: bool = False):
        super().__init__(settings)
        self.stale = stale
        self.always_stale = always_stale
        self.forgotten = 0

    def acquire(self, tenant_id):
        if self.always_stale or not self.forgotten:
            return self.stale.acquire(tenant_id)
        return super().acquire(tenant_id)

    def forget(self, tenant_id):
        self.forgotten += 1
        super().forget(tenant_id)


@pytest.fixture
def other_simulator(tmp_path):
    from simulator import Simulator

    simulator = Simulator.start(tmp_path / "other")
    yield simulator
    simulator.stop()


def test_a_401_gets_one_fresh_token_and_the_request_again(graph_simulator, other_simulator, graph_settings,
                                                           make_tenant_id, make_graph_client):
    tenant_id = make_tenant_id(policies_per_family=1)
    other_simulator.add_tenant(tenant_id, name="Same id elsewhere")
    provider = _RetiredKeyProvider(graph_settings, TokenProvider(settings_for(other_simulator)))
    client = make_graph_client(tenant_id, token_provider=provider)
    before = len(graph_simulator.requests)
    assert len(client.list_all(SETTINGS_CATALOG)) == 1
    answered = [record for record in graph_simulator.requests[before:] if record.server == "api"]
    assert [(record.status, record.tenant_id) for record in answered] == [(401, None), (200, tenant_id)]
    assert provider.forgotten == 1 and client.stats.retries == 1


def test_a_second_401_is_an_error_not_a_loop(graph_simulator, other_simulator, graph_settings,
                                             make_tenant_id, make_graph_client):
    tenant_id = make_tenant_id(policies_per_family=1)
    other_simulator.add_tenant(tenant_id, name="Same id elsewhere")
    provider = _RetiredKeyProvider(graph_settings, TokenProvider(settings_for(other_simulator)), always_stale=True)
    client = make_graph_client(tenant_id, token_provider=provider)
    before = len(graph_simulator.requests)
    with pytest.raises(GraphError) as raised:
        client.list_all(SETTINGS_CATALOG)
    assert raised.value.status == 401 and raised.value.code == "InvalidAuthenticationToken"
    answered = [record for record in graph_simulator.requests[before:] if record.server == "api"]
    assert [record.status for record in answered] == [401, 401]


def test_the_pace_keeps_a_client_under_graphs_throttle_that_an_unpaced_one_hits(
        graph_simulator, make_tenant_id, make_graph_client):
    """Real time, small numbers: Graph (the simulator) allows 20 requests per 0.5 s; a bucket
    of 4 refilled at 24 a second lets at most 4 + 12 = 16 through in any 0.5 s."""
    from simulator import ThrottleLimits

    tenant_id = make_tenant_id(policies_per_family=50)
    ids = [item["id"] for item in graph_simulator.objects(tenant_id, "deviceConfigurations")]
    paced = make_graph_client(tenant_id, sleep=time.sleep, rate_limit=TokenBucket(4, 24))
    unpaced = make_graph_client(tenant_id, max_retries=0)
    graph_simulator.set_throttle(ThrottleLimits(requests=20, window_seconds=0.5))
    try:
        for start in range(0, 50, 5):
            assert all(result.ok for result in paced.get_related(DEVICE_CONFIGURATIONS, ids[start:start + 5]).values())
        time.sleep(0.6)
        unpaced_results = [result for start in range(0, 50, 5)
                           for result in unpaced.get_related(DEVICE_CONFIGURATIONS, ids[start:start + 5]).values()]
    finally:
        graph_simulator.set_throttle(None)
    assert paced.stats.throttled == 0 and paced.stats.inner_requests == 50
    refused = [result for result in unpaced_results if not result.ok]
    assert refused and all(isinstance(result.error, ThrottledError) for result in refused)


@pytest.mark.parametrize("suffix", ["..%2fadmin", "%2f%2e%2e%2fadmin", "x/%2e%2e%2f%2e%2e%2fadmin", "%5c..%5cadmin",
                                    "..;/admin", "deviceManagement%252fx"])
def test_links_with_encoded_separators_are_refused(make_graph_client, make_tenant_id, graph_settings, suffix):
    from app.graph.errors import ForeignLinkError

    client = make_graph_client(make_tenant_id())
    with pytest.raises(ForeignLinkError):
        client._checked_link(f"{graph_settings.api_url}/v1.0/{suffix}")


def test_a_kept_delta_link_from_another_graph_root_starts_a_full_round(make_graph_client, make_tenant_id):
    from app.graph.families import family

    client = make_graph_client(make_tenant_id())
    page = client.delta(family("groups"), "https://graph.microsoft.com/v1.0/groups/delta?$deltatoken=old")
    assert page.restarted and page.items and page.delta_link.startswith(client._root)


# --- several objects at once, and paced writes ------------------------------------------------

def test_get_objects_reads_objects_and_their_relations_in_batches_and_none_for_a_missing_id(
        graph_simulator, make_tenant_id, make_graph_client):
    tenant_id = make_tenant_id(policies_per_family=8)
    ids = [item["id"] for item in graph_simulator.objects(tenant_id, "settingsCatalog")[:7]]
    missing = "00000000-0000-0000-0000-00000000dead"
    client = make_graph_client(tenant_id)
    found = client.get_objects(SETTINGS_CATALOG, [*ids, missing, ids[0]])
    # 8 objects x (the object, its settings, its assignments) = 24 inner requests: two round trips.
    assert client.stats.requests == 2 and client.stats.inner_requests == 24
    assert list(found) == [*ids, missing] and found[missing] is None
    inner = _records(graph_simulator, tenant_id, in_batch=True)
    assert sorted(record.status for record in inner) == [200] * 21 + [404] * 3
    for object_id in ids:
        assert found[object_id] == client.get_object(SETTINGS_CATALOG, object_id)
        assert set(found[object_id]) == {"object", "settings", "assignments"}
        assert "@odata.context" not in found[object_id]["object"]


def test_get_objects_of_a_family_without_relations_reads_only_the_objects(
        graph_simulator, make_tenant_id, make_graph_client):
    tenant_id = make_tenant_id()
    filters = FAMILIES_BY_KEY["assignmentFilters"]
    objects = graph_simulator.objects(tenant_id, "assignmentFilters")
    client = make_graph_client(tenant_id)
    found = client.get_objects(filters, [item["id"] for item in objects])
    assert client.stats.requests == 1 and client.stats.inner_requests == len(objects)
    assert {object_id: payload["object"]["displayName"] for object_id, payload in found.items()} == {
        item["id"]: item["displayName"] for item in objects}


@pytest.mark.parametrize("part", ["object", "settings"])
def test_a_malformed_inner_answer_in_get_objects_raises_a_graph_error(graph_simulator, make_tenant_id,
                                                                      make_graph_client, part):
    tenant_id = make_tenant_id(policies_per_family=3)
    ids = [item["id"] for item in graph_simulator.objects(tenant_id, "settingsCatalog")]
    # The object's own GET comes first among its requests, so a fault on its id lands there.
    graph_simulator.inject("batch-inner-malformed", tenant_id=tenant_id,
                           path_contains=ids[1] if part == "object" else f"{ids[1]}/settings")
    client = make_graph_client(tenant_id)
    with pytest.raises(GraphError) as raised:
        client.get_objects(SETTINGS_CATALOG, ids)
    assert type(raised.value) is GraphError and raised.value.code == "malformedBatch"
    assert "not an object" in raised.value.message
    assert not graph_simulator.pending_faults()


def test_get_objects_raises_the_error_of_an_object_graph_fails_to_read(graph_simulator, make_tenant_id,
                                                                       make_graph_client):
    tenant_id = make_tenant_id(policies_per_family=3)
    ids = [item["id"] for item in graph_simulator.objects(tenant_id, "deviceConfigurations")]
    graph_simulator.inject("batch-inner-500", tenant_id=tenant_id, path_contains=f"{ids[2]}/assignments")
    client = make_graph_client(tenant_id)
    with pytest.raises(GraphError) as raised:
        client.get_objects(DEVICE_CONFIGURATIONS, ids)
    assert raised.value.status == 500 and raised.value.code == "InternalServerError"


def test_get_objects_refuses_an_empty_id_before_sending_anything(make_tenant_id, make_graph_client):
    client = make_graph_client(make_tenant_id())
    with pytest.raises(ValueError):
        client.get_objects(SETTINGS_CATALOG, ["fine", ""])
    assert client.stats.requests == 0


def test_writes_are_paced_by_the_write_bucket_and_reads_are_not(graph_simulator, make_tenant_id, make_graph_client):
    """An injected clock: the bucket's waits are recorded, nothing sleeps."""
    tenant_id = make_tenant_id(permissions="write")
    filters = FAMILIES_BY_KEY["assignmentFilters"]
    ids = [item["id"] for item in graph_simulator.objects(tenant_id, "assignmentFilters")][:2]
    clock = FakeClock()
    client = make_graph_client(tenant_id, clock=clock, sleep=RecordingSleep(clock),
                               write_limit=TokenBucket(capacity=2, rate=0.5, clock=clock))
    for number in range(4):
        client.update_object(filters, ids[number % 2], {"description": f"write {number}"})
    # Two free (the burst), then one every 2 s.
    assert client.recorded_sleep.waits == pytest.approx([2.0, 2.0])
    client.get_objects(filters, ids)
    client.list_all(filters)
    assert client.recorded_sleep.waits == pytest.approx([2.0, 2.0])  # reads take no write token
    assert client.stats.writes == 4 and client.stats.throttled == 0
    assert graph_simulator.get_object(tenant_id, "assignmentFilters", ids[1])["description"] == "write 3"
