"""The Graph client's writes and lookups (restore), over real HTTPS against the simulator:
create, get_object, update, assign, find_by_name, groups by id and name; what is retried and
what is not; errors that carry Graph's code and message.

A "backup" here is a payload made from a source tenant's object the way the backup engine
stores it (tests.graph_support.backup_payload); content is compared as the product compares
it, normalized and hashed (payload_hash)."""
from __future__ import annotations

import dataclasses
import socket
import time
import uuid

import pytest

from app.graph.client import BATCH_SIZE
from app.graph.errors import AmbiguousWriteError, GraphError, PermissionDeniedError, ThrottledError, WriteRefusedError
from app.graph.families import FAMILIES, family, name_filter, restorable_families
from app.graph.writable import WritableError, assignment_body, writable_body
from tests.graph_support import (  # noqa: F401  (fixtures)
    backup_payload,
    graph_settings,
    graph_simulator,
    make_graph_client,
    make_tenant_id,
    payload_hash,
    settings_for,
    token_provider,
)

RESTORABLE = restorable_families()


@pytest.fixture
def source(make_tenant_id):
    """A tenant with the demo objects: what backups are taken of."""
    return make_tenant_id()


@pytest.fixture
def target(make_tenant_id):
    """An empty tenant with the write permissions: where backups are restored."""
    return make_tenant_id(objects={}, permissions="write")


def backup_of(simulator, tenant_id: str, item, index: int = -1) -> dict:
    return backup_payload(item, simulator.objects(tenant_id, item.key)[index])


def posts(simulator, tenant_id: str) -> list:
    return [record for record in simulator.requests if record.server == "api" and record.tenant_id == tenant_id
            and record.method == "POST" and not record.path.endswith("$batch")]


# --- the family table and bodies -------------------------------------------------------------


def test_the_write_tier_lists_each_write_permission_once():
    from app.graph.families import required_permissions

    names = required_permissions("write")
    assert len(names) == len(set(names))
    assert set(names) == {item.write_permission for item in FAMILIES}
    assert all(".ReadWrite." in item.write_permission for item in RESTORABLE)


def test_a_name_filter_doubles_single_quotes_and_uses_the_familys_name_key():
    assert name_filter(family("settingsCatalog"), "O'Brien's") == "name eq 'O''Brien''s'"
    assert name_filter(family("groups"), "Sales") == "displayName eq 'Sales'"


@pytest.mark.parametrize("item", RESTORABLE, ids=lambda item: item.key)
def test_a_body_drops_what_graph_refuses_and_keeps_the_type(graph_simulator, source, item):
    payload = backup_of(graph_simulator, source, item)
    payload["object"]["@odata.context"] = "https://graph.example/$metadata#x/$entity"
    created = writable_body(item, payload, for_update=False)
    updated = writable_body(item, payload, for_update=True)
    assert not (set(created) & item.read_only_keys) and not (set(updated) & (item.read_only_keys | item.create_only_keys))
    assert "@odata.context" not in created and "assignments" not in created
    assert created.get("@odata.type") == payload["object"].get("@odata.type")
    assert created[item.name_key] == payload["object"][item.name_key]
    assert set(item.create_defaults) <= set(created)
    assert "id" in payload["object"]  # the payload itself is left as it was


def test_settings_catalog_settings_are_sent_typed_without_their_ids(graph_simulator, source):
    item = family("settingsCatalog")
    payload = backup_of(graph_simulator, source, item)
    body = writable_body(item, payload, for_update=True)
    assert len(body["settings"]) == len(payload["settings"]) > 0
    for sent, stored in zip(body["settings"], payload["settings"]):
        assert sent == {"@odata.type": "#microsoft.graph.deviceManagementConfigurationSetting",
                        "settingInstance": stored["settingInstance"]}


def test_a_payload_that_is_not_a_backup_or_a_family_that_is_not_restored_gives_no_body():
    with pytest.raises(WritableError):
        writable_body(family("deviceConfigurations"), {"displayName": "x"}, for_update=False)
    with pytest.raises(WritableError):
        writable_body(family("groups"), {"object": {"displayName": "x"}}, for_update=False)
    with pytest.raises(WritableError):
        writable_body(family("settingsCatalog"), {"object": {"name": "x"}, "settings": [{"id": "0"}]}, for_update=False)
    assert assignment_body([{"id": "p_g", "source": "direct", "sourceId": "p", "intent": "apply",
                             "target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"}}]) == {
        "assignments": [{"intent": "apply", "target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"}}]}


# --- every restorable family round-trips --------------------------------------------------------


@pytest.mark.parametrize("item", RESTORABLE, ids=lambda item: item.key)
def test_a_created_object_reads_back_with_the_backups_content(graph_simulator, source, target, make_graph_client, item):
    backup = backup_of(graph_simulator, source, item)
    client = make_graph_client(target)
    created = client.create_object(item, writable_body(item, backup, for_update=False))
    assert created["id"] != backup["object"]["id"] and "@odata.context" not in created
    if item.assign_action:
        client.assign(item, created["id"], backup["assignments"])
    restored = client.get_object(item, created["id"])
    assert set(restored) == {"object", *item.per_object}
    assert restored["object"]["id"] == created["id"] and "@odata.context" not in restored["object"]
    assert payload_hash(item, restored) == payload_hash(item, backup)
    assert client.stats.writes == (2 if item.assign_action else 1)


@pytest.mark.parametrize("item", RESTORABLE, ids=lambda item: item.key)
def test_an_update_writes_a_backup_over_a_changed_object(graph_simulator, source, target, make_graph_client, item):
    backup = backup_of(graph_simulator, source, item)
    client = make_graph_client(target)
    created = client.create_object(item, writable_body(item, backup, for_update=False))
    drifted = {"description": "changed by someone", item.name_key: backup["object"][item.name_key]}
    if "settings" in item.inline_relations:
        drifted["settings"] = {backup["settings"][0]["settingInstance"]["settingDefinitionId"]: None}
    graph_simulator.change_object(target, item.key, created["id"], drifted)
    assert payload_hash(item, {**client.get_object(item, created["id"]), "assignments": []}) != payload_hash(
        item, {**backup, "assignments": []})
    client.update_object(item, created["id"], writable_body(item, backup, for_update=True))
    restored = client.get_object(item, created["id"])
    assert payload_hash(item, {**restored, "assignments": []}) == payload_hash(item, {**backup, "assignments": []})
    methods = [entry.method for entry in graph_simulator.write_log(target)]
    assert methods == ["POST", item.update_method]


@pytest.mark.parametrize("item", [item for item in RESTORABLE if item.assign_action], ids=lambda item: item.key)
def test_assign_replaces_the_set_and_an_empty_list_removes_it(graph_simulator, target, make_graph_client, item):
    object_id = graph_simulator.add_object(target, item.key, {item.name_key: "Assigned"})
    client = make_graph_client(target)
    groups = [str(uuid.uuid4()) for _ in range(3)]
    targets = [{"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": group}} for group in groups]
    client.assign(item, object_id, targets)
    client.assign(item, object_id, targets[1:])
    assigned = client.get_object(item, object_id)["assignments"]
    assert [entry["target"]["groupId"] for entry in assigned] == groups[1:]
    client.assign(item, object_id, [])
    assert client.get_object(item, object_id)["assignments"] == []


def test_assign_is_refused_for_a_family_without_assignments(target, make_graph_client):
    with pytest.raises(ValueError):
        make_graph_client(target).assign(family("scopeTags"), "1", [])


# --- lookups -----------------------------------------------------------------------------------


def test_get_object_is_none_for_an_object_that_is_not_there(target, make_graph_client):
    client = make_graph_client(target)
    for item in RESTORABLE:
        assert client.get_object(item, str(uuid.uuid4())) is None


def test_find_by_name_finds_a_name_with_quotes_and_nothing_else(graph_simulator, target, make_graph_client):
    client = make_graph_client(target)
    for item in RESTORABLE:
        wanted = graph_simulator.add_object(target, item.key, {item.name_key: "Ana's 'quoted' policy"})
        graph_simulator.add_object(target, item.key, {item.name_key: "Ana's"})
        found = client.find_by_name(item, "Ana's 'quoted' policy")
        assert [entry["id"] for entry in found] == [wanted], item.key
        assert client.find_by_name(item, "Nobody's") == []
    with pytest.raises(ValueError):
        client.find_by_name(family("deviceConfigurations"), "")


def test_groups_are_looked_up_by_id_and_by_name_twenty_to_a_batch(graph_simulator, make_tenant_id, make_graph_client):
    tenant_id = make_tenant_id(objects={"groups": []})
    made = {graph_simulator.add_object(tenant_id, "groups", {"displayName": f"Group {number}"}): f"Group {number}"
            for number in range(30)}
    graph_simulator.add_object(tenant_id, "groups", {"displayName": "O'Neil team"})
    twin = graph_simulator.add_object(tenant_id, "groups", {"displayName": "Group 0"})
    missing = [str(uuid.uuid4()) for _ in range(15)]
    client = make_graph_client(tenant_id)
    before = len(graph_simulator.requests)
    by_id = client.groups_by_ids([*made, *missing, *made])
    assert {group_id: group["displayName"] for group_id, group in by_id.items()} == made
    batches = [record for record in graph_simulator.requests[before:] if record.path == "/v1.0/$batch"]
    assert len(batches) == -(-45 // BATCH_SIZE)
    by_name = client.groups_by_names(["Group 0", "Group 7", "O'Neil team", "Nobody"])
    assert sorted(group["id"] for group in by_name["Group 0"]) == sorted([next(iter(made)), twin])
    assert [group["displayName"] for group in by_name["O'Neil team"]] == ["O'Neil team"]
    assert by_name["Nobody"] == [] and len(by_name["Group 7"]) == 1
    assert client.groups_by_ids([]) == {} and client.groups_by_names([]) == {}


def test_a_group_lookup_without_permission_raises_permission_denied(make_tenant_id, make_graph_client):
    client = make_graph_client(make_tenant_id(roles=["DeviceManagementConfiguration.ReadWrite.All"]))
    with pytest.raises(PermissionDeniedError):
        client.groups_by_ids([str(uuid.uuid4())])


# --- what is retried, what is not --------------------------------------------------------------


def test_a_create_done_but_answered_504_is_ambiguous_and_not_sent_again(graph_simulator, source, target, make_graph_client):
    item = family("deviceConfigurations")
    backup = backup_of(graph_simulator, source, item)
    graph_simulator.inject("write-then-504", tenant_id=target, method="POST")
    client = make_graph_client(target)
    with pytest.raises(AmbiguousWriteError) as raised:
        client.create_object(item, writable_body(item, backup, for_update=False))
    assert raised.value.status == 504 and raised.value.code == "GatewayTimeout"
    assert "look for it" in raised.value.message
    found = client.find_by_name(item, backup["object"]["displayName"])
    assert len(found) == 1  # it was created, once: the caller reconciles by name
    assert len(posts(graph_simulator, target)) == 1 and client.recorded_sleep.waits == []
    assert [entry.operation for entry in graph_simulator.write_log(target)] == ["create"]


@pytest.mark.parametrize("fault", ["503", "504"])
def test_a_create_answered_5xx_is_ambiguous_and_not_sent_again(graph_simulator, source, target, make_graph_client, fault):
    item = family("scopeTags")
    graph_simulator.inject(fault, tenant_id=target, method="POST")
    client = make_graph_client(target)
    with pytest.raises(AmbiguousWriteError) as raised:
        client.create_object(item, writable_body(item, backup_of(graph_simulator, source, item), for_update=False))
    assert raised.value.status == int(fault)
    assert len(posts(graph_simulator, target)) == 1 and client.stats.retries == 0


def test_a_create_answered_429_waits_the_retry_after_and_is_sent_again(graph_simulator, source, target, make_graph_client):
    item = family("settingsCatalog")
    graph_simulator.inject("429", tenant_id=target, method="POST", retry_after=3)
    client = make_graph_client(target)
    created = client.create_object(item, writable_body(item, backup_of(graph_simulator, source, item), for_update=False))
    assert client.recorded_sleep.waits == [3.0]
    assert [record.status for record in posts(graph_simulator, target)] == [429, 201]
    assert [entry.object_id for entry in graph_simulator.write_log(target)] == [created["id"]]
    assert (client.stats.throttled, client.stats.retries, client.stats.writes) == (1, 1, 1)


def test_writes_throttled_past_the_retries_raise_throttled_error(graph_simulator, source, target, make_graph_client):
    item = family("assignmentFilters")
    graph_simulator.inject("429", count=5, tenant_id=target, method="POST", retry_after=2)
    client = make_graph_client(target, max_retries=2)
    with pytest.raises(ThrottledError) as raised:
        client.create_object(item, writable_body(item, backup_of(graph_simulator, source, item), for_update=False))
    assert raised.value.retry_after == 2.0 and client.recorded_sleep.waits == [2.0, 2.0]
    graph_simulator.clear_faults()
    assert graph_simulator.write_log(target) == []


def test_an_update_and_an_assign_answered_503_are_sent_again(graph_simulator, target, make_graph_client):
    item = family("deviceConfigurations")
    object_id = graph_simulator.add_object(target, item.key, {"@odata.type": "#microsoft.graph.windows10GeneralConfiguration",
                                                              "displayName": "Ring"})
    graph_simulator.inject("503", tenant_id=target, method="PATCH")
    graph_simulator.inject("504", tenant_id=target, path_contains="/assign")
    client = make_graph_client(target)
    client.update_object(item, object_id, {"description": "again"})
    client.assign(item, object_id, [{"target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"}}])
    assert graph_simulator.get_object(target, item.key, object_id)["description"] == "again"
    assert [entry.operation for entry in graph_simulator.write_log(target)] == ["update", "assign"]
    assert client.stats.retries == 2


def test_a_create_whose_answer_times_out_is_ambiguous_and_the_object_exists(
        graph_simulator, source, target, make_graph_client):
    """The request reaches Graph and is carried out, but the answer comes after the client's
    read timeout (the simulator answers 1.2 s late; the client waits 0.4 s)."""
    import httpx

    item = family("compliancePolicies")
    backup = backup_of(graph_simulator, source, item)
    client = make_graph_client(target, timeout=httpx.Timeout(10.0, read=0.4))
    client.get_object(item, str(uuid.uuid4()))  # the token first, before the simulator slows down
    graph_simulator.set_latency(1200)
    try:
        with pytest.raises(AmbiguousWriteError) as raised:
            client.create_object(item, writable_body(item, backup, for_update=False))
        assert raised.value.status is None and raised.value.code == "networkError"
        deadline = time.monotonic() + 10
        while not graph_simulator.write_log(target) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        graph_simulator.set_latency(0)
    assert [entry.operation for entry in graph_simulator.write_log(target)] == ["create"]
    assert len(posts(graph_simulator, target)) == 1


def test_a_create_that_never_reached_graph_is_sent_again_then_fails_as_unreachable(
        graph_simulator, graph_settings, target, make_graph_client):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"https://127.0.0.1:{probe.getsockname()[1]}"
    settings = dataclasses.replace(graph_settings, api_url=closed)
    client = make_graph_client(target, settings=settings, max_retries=2)
    with pytest.raises(GraphError) as raised:
        client.create_object(family("scopeTags"), {"displayName": "Never sent"})
    assert type(raised.value) is GraphError and raised.value.code == "networkError"
    assert client.stats.retries == 2 and len(client.recorded_sleep.waits) == 2


# --- refusals ----------------------------------------------------------------------------------


def test_a_refused_write_carries_graphs_code_and_message(graph_simulator, source, target, make_graph_client):
    item = family("deviceConfigurations")
    backup = backup_of(graph_simulator, source, item)
    graph_simulator.refuse_writes(target, item.key, name=backup["object"]["displayName"], status=400,
                                  code="ModelValidationFailure", message="Cannot convert the literal 'x' to Edm.Boolean.")
    client = make_graph_client(target)
    with pytest.raises(WriteRefusedError) as raised:
        client.create_object(item, writable_body(item, backup, for_update=False))
    error = raised.value
    assert (error.status, error.code) == (400, "ModelValidationFailure")
    assert error.message == "Refused by Microsoft Graph (400 ModelValidationFailure): Cannot convert the literal 'x' to Edm.Boolean."
    assert client.stats.writes == 0 and client.stats.retries == 0 and graph_simulator.write_log(target) == []


def test_a_body_graph_refuses_raises_write_refused_error(graph_simulator, source, target, make_graph_client):
    item = family("compliancePolicies")
    client = make_graph_client(target)
    body = writable_body(item, backup_of(graph_simulator, source, item), for_update=False)
    body["id"] = "kept by mistake"
    with pytest.raises(WriteRefusedError) as raised:
        client.create_object(item, body)
    assert raised.value.status == 400 and "'id'" in raised.value.message
    with pytest.raises(WriteRefusedError) as raised:
        client.update_object(item, str(uuid.uuid4()), {"description": "x"})
    assert raised.value.status == 404


def test_writing_without_the_write_permission_raises_permission_denied_naming_it(
        graph_simulator, make_tenant_id, make_graph_client):
    tenant_id = make_tenant_id(permissions="read")
    client = make_graph_client(tenant_id)
    for item in RESTORABLE:
        existing = graph_simulator.objects(tenant_id, item.key)[0]
        with pytest.raises(PermissionDeniedError) as raised:
            client.update_object(item, existing["id"], {"description": "x"})
        assert raised.value.permission == item.write_permission
        assert f"writing {item.label}" in raised.value.message
        assert client.get_object(item, existing["id"]) is not None  # reading still works
    assert graph_simulator.write_log(tenant_id) == []


def test_writes_carry_a_client_request_id_and_the_throttle_priority(graph_simulator, source, target, make_graph_client):
    item = family("iosAppProtection")
    client = make_graph_client(target, background=False)
    created = client.create_object(item, writable_body(item, backup_of(graph_simulator, source, item), for_update=False))
    client.update_object(item, created["id"], {"description": "x"})
    records = [record for record in graph_simulator.requests if record.server == "api" and record.tenant_id == target]
    assert [record.method for record in records] == ["POST", "PATCH"]
    assert all(record.client_request_id for record in records) and {r.throttle_priority for r in records} == {None}


def test_a_family_that_is_not_restored_is_never_sent(target, make_graph_client):
    client = make_graph_client(target)
    with pytest.raises(ValueError):
        client.create_object(family("groups"), {"displayName": "x"})
    with pytest.raises(ValueError):
        client.update_object(family("roleDefinitions"), "1", {"displayName": "x"})
    with pytest.raises(ValueError):
        client.create_object(family("scopeTags"), [{"displayName": "x"}])
