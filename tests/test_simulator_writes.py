"""The Graph simulator's writes over real HTTPS: create, PATCH/PUT, assign, name filters,
what they refuse, their faults, throttling, refusals and the write log, the control API and CLI.

Bodies come from app.graph.writable (what TenantAtlas sends) or are written by hand where a
test needs one Graph refuses. Cases are derived from FAMILIES wherever the rule is per family.
"""
from __future__ import annotations

import json
import re
import ssl
import uuid

import httpx
import pytest

from app.graph.families import FAMILIES, family, restorable_families
from app.graph.writable import writable_body
from simulator import ThrottleLimits
from simulator.__main__ import main as cli_main
from tests.graph_support import (  # noqa: F401  (fixtures)
    backup_payload,
    graph_settings,
    graph_simulator,
    make_tenant_id,
    token_provider,
)

RESTORABLE = restorable_families()
GUID = re.compile(r"(T_)?[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}")


class Graph:
    """Raw requests to the simulator's Graph as one tenant's app (a real token)."""

    def __init__(self, simulator, http: httpx.Client, tenant_id: str, token: str):
        self.sim, self.http, self.tenant_id, self.token = simulator, http, tenant_id, token

    def request(self, method: str, path: str, body=None, *, content: bytes | None = None) -> httpx.Response:
        url = path if path.startswith("https://") else f"{self.sim.api_url}{path}"
        headers = {"Authorization": f"Bearer {self.token}"}
        if content is not None:
            return self.http.request(method, url, content=content, headers={**headers, "Content-Type": "application/json"})
        return self.http.request(method, url, json=body, headers=headers)

    def create(self, item, body) -> httpx.Response:
        return self.request("POST", item.entity_url_path, body)

    def object_path(self, item, object_id: str) -> str:
        return f"{item.entity_url_path}/{object_id}"


@pytest.fixture(scope="module")
def http(graph_simulator):
    context = ssl.create_default_context(cafile=graph_simulator.ca_bundle)
    with httpx.Client(verify=context, trust_env=False, timeout=15) as client:
        yield client


@pytest.fixture
def connect(graph_simulator, http, token_provider):
    def make(tenant_id: str) -> Graph:
        return Graph(graph_simulator, http, tenant_id, token_provider.acquire(tenant_id).value)

    return make


@pytest.fixture
def source(make_tenant_id):
    """A tenant with the demo objects: where bodies come from."""
    return make_tenant_id()


@pytest.fixture
def target(make_tenant_id, connect):
    """An empty tenant with the write permissions, and its Graph."""
    return connect(make_tenant_id(objects={}, permissions="write"))


def create_body(simulator, tenant_id: str, item) -> dict:
    return writable_body(item, backup_payload(item, simulator.objects(tenant_id, item.key)[-1]), for_update=False)


def assert_graph_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
    if code:
        assert error["code"] == code
    return error


# --- create ------------------------------------------------------------------------------------


@pytest.mark.parametrize("item", RESTORABLE, ids=lambda item: item.key)
def test_a_create_answers_201_with_the_new_object_its_own_id_and_server_set_properties(
        graph_simulator, source, target, item):
    body = create_body(graph_simulator, source, item)
    response = target.create(item, body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert GUID.fullmatch(created["id"]) and created["id"] not in {obj["id"] for obj in graph_simulator.objects(source, item.key)}
    assert response.headers["Location"].endswith(f"{item.entity_url_path}/{created['id']}")
    assert created[item.name_key] == body[item.name_key]
    for key in item.read_only_keys & {"createdDateTime", "lastModifiedDateTime"}:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created[key])
    read = target.request("GET", target.object_path(item, created["id"])).json()
    assert {key: value for key, value in read.items() if key != "@odata.context"} == {
        key: value for key, value in created.items() if key != "@odata.context"}
    for relation in item.inline_relations:
        listed = target.request("GET", f"{target.object_path(item, created['id'])}/{relation}").json()["value"]
        assert [entry["settingInstance"] for entry in listed] == [entry["settingInstance"] for entry in body[relation]]
    log = graph_simulator.write_log(target.tenant_id)
    assert [(entry.method, entry.family, entry.object_id, entry.operation, entry.status) for entry in log] == [
        ("POST", item.key, created["id"], "create", 201)]


@pytest.mark.parametrize("item", RESTORABLE, ids=lambda item: item.key)
def test_every_read_only_key_in_a_create_body_is_refused_with_400_and_nothing_is_made(
        graph_simulator, source, target, item):
    body = create_body(graph_simulator, source, item)
    for key in sorted(item.read_only_keys):
        response = target.create(item, {**body, key: "x" if key != "assignments" else []})
        error = assert_graph_error(response, 400, "BadRequest")
        assert key in error["message"]
    assert graph_simulator.objects(target.tenant_id, item.key) == []
    assert graph_simulator.write_log(target.tenant_id) == []


@pytest.mark.parametrize("item", RESTORABLE, ids=lambda item: item.key)
def test_a_create_needs_a_non_empty_name(graph_simulator, source, target, item):
    body = create_body(graph_simulator, source, item)
    for name in (None, "", "   ", 12):
        changed = {key: value for key, value in body.items() if key != item.name_key}
        if name is not None:
            changed[item.name_key] = name
        assert_graph_error(target.create(item, changed), 400, "BadRequest")
    assert graph_simulator.objects(target.tenant_id, item.key) == []


@pytest.mark.parametrize("item", [item for item in RESTORABLE if item.has_subtypes], ids=lambda item: item.key)
def test_a_create_in_a_collection_of_several_types_must_name_its_type(graph_simulator, source, target, item):
    body = create_body(graph_simulator, source, item)
    untyped = {key: value for key, value in body.items() if key != "@odata.type"}
    error = assert_graph_error(target.create(item, untyped), 400)
    assert "@odata.type" in error["message"]
    assert_graph_error(target.create(item, {**body, "@odata.type": "#microsoft.graph.not a type"}), 400)
    assert target.create(item, body).status_code == 201


def test_a_compliance_policy_is_created_with_exactly_one_block_action_which_is_not_returned(
        graph_simulator, source, target):
    item = family("compliancePolicies")
    body = create_body(graph_simulator, source, item)
    block = {"actionType": "block", "gracePeriodHours": 0}
    for rules in ([], [{"ruleName": None, "scheduledActionConfigurations": []}],
                  [{"ruleName": None, "scheduledActionConfigurations": [block, dict(block)]}]):
        error = assert_graph_error(target.create(item, {**body, "scheduledActionsForRule": rules}), 400)
        assert error["message"] == "Compliance policy must have one and only one block scheduled action"
    created = target.create(item, body)
    assert created.status_code == 201 and "scheduledActionsForRule" not in created.json()


def test_a_body_that_is_not_one_json_object_or_too_large_is_refused(graph_simulator, source, target):
    item = family("deviceConfigurations")
    for content in (b"", b"{not json", b"[]", b'"text"', b"[" * 100_000):
        assert_graph_error(target.request("POST", item.entity_url_path, content=content), 400, "BadRequest")
    body = create_body(graph_simulator, source, item)
    huge = {**body, "description": "x" * (5 * 1024 * 1024)}
    assert target.create(item, huge).status_code == 413
    assert graph_simulator.objects(target.tenant_id, item.key) == []


def test_annotations_in_a_body_are_ignored_as_odata_services_do(graph_simulator, source, target):
    item = family("assignmentFilters")
    body = {**create_body(graph_simulator, source, item), "@odata.context": "x", "rule@odata.type": "#String"}
    created = target.create(item, body).json()
    assert "@odata.context" not in graph_simulator.get_object(target.tenant_id, item.key, created["id"])
    assert "rule@odata.type" not in created


# --- update ------------------------------------------------------------------------------------


def test_patch_changes_only_the_given_properties_and_moves_version_and_time(graph_simulator, source, target):
    item = family("deviceConfigurations")
    created = target.create(item, create_body(graph_simulator, source, item)).json()
    response = target.request("PATCH", target.object_path(item, created["id"]), {"description": "patched"})
    assert response.status_code == 204 and response.content == b""
    after = graph_simulator.get_object(target.tenant_id, item.key, created["id"])
    assert after["description"] == "patched" and after["version"] == created["version"] + 1
    assert after["lastModifiedDateTime"] >= created["lastModifiedDateTime"]
    unchanged = {key for key in created if key not in ("description", "version", "lastModifiedDateTime", "@odata.context")}
    assert all(after[key] == created[key] for key in unchanged)
    assert [entry.operation for entry in graph_simulator.write_log(target.tenant_id)] == ["create", "update"]


@pytest.mark.parametrize("item", RESTORABLE, ids=lambda item: item.key)
def test_an_update_refuses_read_only_and_create_only_keys_and_a_change_of_type(graph_simulator, source, target, item):
    created = target.create(item, create_body(graph_simulator, source, item)).json()
    path = target.object_path(item, created["id"])
    for key in sorted(item.read_only_keys | item.create_only_keys):
        assert_graph_error(target.request(item.update_method, path, {item.name_key: "n", key: "x"}), 400)
    if "@odata.type" in created:
        assert_graph_error(target.request("PATCH", path, {"@odata.type": "#microsoft.graph.otherType"}), 400)
    assert_graph_error(target.request("PATCH", path, {item.name_key: ""}), 400)
    assert [entry.operation for entry in graph_simulator.write_log(target.tenant_id)] == ["create"]


def test_the_settings_catalog_is_replaced_whole_with_put_and_its_settings_are_refused_in_a_patch(
        graph_simulator, source, target):
    item = family("settingsCatalog")
    body = create_body(graph_simulator, source, item)
    created = target.create(item, body).json()
    path = target.object_path(item, created["id"])
    assert_graph_error(target.request("PATCH", path, {"settings": body["settings"][:1]}), 400)
    assert target.request("PATCH", path, {"description": "metadata only"}).status_code == 204

    replacement = {**body, "description": "replaced", "settings": body["settings"][:1]}
    replacement.pop("roleScopeTagIds")
    assert target.request("PUT", path, replacement).status_code == 204
    after = graph_simulator.get_object(target.tenant_id, item.key, created["id"])
    assert after["description"] == "replaced" and "roleScopeTagIds" not in after  # PUT replaces: what is absent is gone
    assert after["createdDateTime"] == created["createdDateTime"] and after["settingCount"] == 1
    assert [entry["settingInstance"] for entry in after["settings"]] == [body["settings"][0]["settingInstance"]]
    assert_graph_error(target.request("PUT", path, {"settings": []}), 400)  # a PUT names the policy
    assert [entry.operation for entry in graph_simulator.write_log(target.tenant_id)] == ["create", "update", "replace"]


@pytest.mark.parametrize("item", [item for item in RESTORABLE if item.update_method == "PATCH"], ids=lambda item: item.key)
def test_put_is_not_allowed_where_a_family_updates_with_patch(graph_simulator, source, target, item):
    created = target.create(item, create_body(graph_simulator, source, item)).json()
    assert_graph_error(target.request("PUT", target.object_path(item, created["id"]), {item.name_key: "x"}), 405)


def test_a_write_to_an_object_that_is_not_there_is_404(target):
    for item in RESTORABLE:
        missing = target.object_path(item, str(uuid.uuid4()))
        assert_graph_error(target.request(item.update_method, missing, {item.name_key: "x"}), 404, "ResourceNotFound")
        if item.assign_action:
            assert_graph_error(target.request("POST", f"{missing}/assign", {"assignments": []}), 404)


def test_families_that_are_not_restored_take_no_writes(target):
    for item in FAMILIES:
        if item.restorable:
            continue
        assert_graph_error(target.create(item, {item.name_key: "x"}), 405)


# --- assign ------------------------------------------------------------------------------------


@pytest.mark.parametrize("item", [item for item in RESTORABLE if item.assign_action], ids=lambda item: item.key)
def test_assign_replaces_the_whole_set_of_assignments(graph_simulator, source, target, item):
    created = target.create(item, create_body(graph_simulator, source, item)).json()
    path = f"{target.object_path(item, created['id'])}/{item.assign_action}"
    groups = [str(uuid.uuid4()) for _ in range(3)]
    first = [{"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": group}} for group in groups]
    response = target.request("POST", path, {"assignments": first})
    assert response.status_code in (200, 204), response.text
    if item.entity_path.startswith("/deviceAppManagement/"):
        assert response.status_code == 204  # app protection's assign answers 204 No Content
    else:
        assert [entry["target"]["groupId"] for entry in response.json()["value"]] == groups
    listed = target.request("GET", f"{target.object_path(item, created['id'])}/assignments").json()["value"]
    assert [entry["target"]["groupId"] for entry in listed] == groups
    assert all(entry["sourceId"] == created["id"] and entry["source"] == "direct" for entry in listed)

    excluded = {"target": {"@odata.type": "#microsoft.graph.exclusionGroupAssignmentTarget", "groupId": groups[2]}}
    target.request("POST", path, {"assignments": [first[0], excluded]})
    listed = target.request("GET", f"{target.object_path(item, created['id'])}/assignments").json()["value"]
    assert [(entry["target"]["@odata.type"], entry["target"]["groupId"]) for entry in listed] == [
        ("#microsoft.graph.groupAssignmentTarget", groups[0]), ("#microsoft.graph.exclusionGroupAssignmentTarget", groups[2])]
    assert target.request("POST", path, {"assignments": []}).status_code in (200, 204)
    assert graph_simulator.get_object(target.tenant_id, item.key, created["id"])["assignments"] == []
    assert [entry.operation for entry in graph_simulator.write_log(target.tenant_id)] == ["create"] + ["assign"] * 3


def test_assign_refuses_targets_without_a_type_and_group_or_filter_ids_that_are_not_guids(graph_simulator, source, target):
    item = family("deviceConfigurations")
    created = target.create(item, create_body(graph_simulator, source, item)).json()
    path = f"{target.object_path(item, created['id'])}/assign"
    group = "#microsoft.graph.groupAssignmentTarget"
    for body in ({}, {"assignments": {}}, {"assignments": [{}]}, {"assignments": [{"target": {"groupId": str(uuid.uuid4())}}]},
                 {"assignments": [{"target": {"@odata.type": group, "groupId": "Finance Team"}}]},
                 {"assignments": [{"target": {"@odata.type": group}}]},
                 {"assignments": [{"target": {"@odata.type": group, "groupId": str(uuid.uuid4()),
                                              "deviceAndAppManagementAssignmentFilterType": "include",
                                              "deviceAndAppManagementAssignmentFilterId": "my filter"}}]}):
        assert_graph_error(target.request("POST", path, body), 400)
    assert graph_simulator.get_object(target.tenant_id, item.key, created["id"])["assignments"] == []
    assert_graph_error(target.request("GET", path), 405)


# --- lookups -----------------------------------------------------------------------------------


def test_a_name_filter_finds_exact_names_with_quotes_doubled(graph_simulator, make_tenant_id, connect):
    tenant_id = make_tenant_id(objects={})
    graph = connect(tenant_id)
    names = ["O'Brien's policy", "O'Brien's policy (copy)", "Plain"]
    for item in (family("settingsCatalog"), family("deviceConfigurations"), family("groups")):
        made = {name: graph_simulator.add_object(tenant_id, item.key, {item.name_key: name}) for name in names}
        path = f"{item.entity_url_path}?$filter={item.name_key} eq 'O''Brien''s policy'"
        found = graph.request("GET", path).json()["value"]
        assert [entry["id"] for entry in found] == [made["O'Brien's policy"]], item.key
        assert graph.request("GET", f"{item.entity_url_path}?$filter={item.name_key} eq 'nobody'").json()["value"] == []
    wrong_property = "name" if family("deviceConfigurations").name_key != "name" else "displayName"
    assert_graph_error(graph.request("GET", f"/beta/deviceManagement/deviceConfigurations?$filter={wrong_property} eq 'Plain'"), 400)
    assert_graph_error(graph.request("GET", "/beta/deviceManagement/deviceConfigurations?$filter=displayName eq 'O'Brien'"), 400)
    assert_graph_error(graph.request("GET", "/beta/deviceManagement/deviceConfigurations?$filter=startswith(displayName,'P')"), 501)


def test_a_name_filter_pages_with_the_filter_kept(graph_simulator, make_tenant_id, connect):
    tenant_id = make_tenant_id(objects={})
    graph = connect(tenant_id)
    item = family("assignmentFilters")
    ids = [graph_simulator.add_object(tenant_id, item.key, {"displayName": "Same"}) for _ in range(5)]
    graph_simulator.add_object(tenant_id, item.key, {"displayName": "Other"})
    seen, url = [], f"{item.entity_url_path}?$filter=displayName eq 'Same'&$top=2"
    while url:
        page = graph.request("GET", url).json()
        seen += [entry["id"] for entry in page["value"]]
        url = page.get("@odata.nextLink")
        assert url is None or "filter" in url
    assert seen == ids


def test_a_group_is_read_by_id_and_groups_are_listed_by_name(graph_simulator, make_tenant_id, connect):
    tenant_id = make_tenant_id()
    graph = connect(tenant_id)
    group = graph_simulator.objects(tenant_id, "groups")[0]
    read = graph.request("GET", f"/v1.0/groups/{group['id']}").json()
    assert read["id"] == group["id"] and read["displayName"] == group["displayName"]
    assert_graph_error(graph.request("GET", f"/v1.0/groups/{uuid.uuid4()}"), 404)
    name = group["displayName"].replace("'", "''")
    listed = graph.request("GET", f"/v1.0/groups?$filter=displayName eq '{name}'").json()["value"]
    assert [entry["id"] for entry in listed] == [group["id"]]


# --- permissions, consent, throttling, faults, refusals ----------------------------------------


def test_writes_need_the_write_permission_while_reads_go_on(graph_simulator, make_tenant_id, connect):
    tenant_id = make_tenant_id(permissions="read")
    graph = connect(tenant_id)
    assert not any(".ReadWrite." in role for role in graph_simulator.roles(tenant_id))
    for item in RESTORABLE:
        existing = graph_simulator.objects(tenant_id, item.key)[0]
        body = writable_body(item, backup_payload(item, existing), for_update=False)
        error = assert_graph_error(graph.create(item, body), 403, "Authorization_RequestDenied")
        assert item.write_permission in error["message"]
        path = graph.object_path(item, existing["id"])
        assert_graph_error(graph.request(item.update_method, path, {item.name_key: "x"}), 403)
        if item.assign_action:
            assert_graph_error(graph.request("POST", f"{path}/assign", {"assignments": []}), 403)
        assert graph.request("GET", path).status_code == 200
    assert graph_simulator.write_log(tenant_id) == []


def test_a_revoked_consent_stops_writes_with_tokens_issued_before(graph_simulator, source, target):
    item = family("scopeTags")
    graph_simulator.revoke_consent(target.tenant_id)
    error = assert_graph_error(target.create(item, create_body(graph_simulator, source, item)), 401)
    assert error["code"] == "Authorization_IdentityNotFound"
    assert graph_simulator.objects(target.tenant_id, item.key) == []


def test_writes_count_against_the_write_budget_and_are_answered_429_beyond_it(graph_simulator, source, target):
    item = family("scopeTags")
    body = create_body(graph_simulator, source, item)
    graph_simulator.set_throttle(ThrottleLimits(requests=100, window_seconds=30, write_requests=2))
    try:
        assert [target.create(item, {**body, "displayName": f"Tag {n}"}).status_code for n in range(2)] == [201, 201]
        throttled = target.create(item, {**body, "displayName": "Tag 3"})
        assert_graph_error(throttled, 429, "TooManyRequests")
        assert 1 <= int(throttled.headers["Retry-After"]) <= 30
        assert target.request("GET", item.entity_url_path).status_code == 200  # reads have their own budget
    finally:
        graph_simulator.set_throttle(None)
    assert [entry.name for entry in graph_simulator.write_log(target.tenant_id)] == ["Tag 0", "Tag 1"]


def test_a_write_then_504_fault_does_the_write_and_answers_504(graph_simulator, source, target):
    item = family("deviceConfigurations")
    body = create_body(graph_simulator, source, item)
    graph_simulator.inject("write-then-504", tenant_id=target.tenant_id, method="POST")
    assert_graph_error(target.create(item, body), 504, "GatewayTimeout")
    made = graph_simulator.objects(target.tenant_id, item.key)
    assert [entry[item.name_key] for entry in made] == [body[item.name_key]]
    assert [(entry.object_id, entry.status) for entry in graph_simulator.write_log(target.tenant_id)] == [(made[0]["id"], 504)]


def test_a_fault_limited_to_a_method_leaves_other_methods_alone(graph_simulator, source, target):
    item = family("assignmentFilters")
    graph_simulator.inject("503", tenant_id=target.tenant_id, method="POST", path_contains="assignmentFilters")
    assert target.request("GET", item.entity_url_path).status_code == 200
    assert target.create(item, create_body(graph_simulator, source, item)).status_code == 503
    assert target.create(item, create_body(graph_simulator, source, item)).status_code == 201


def test_refused_writes_answer_the_given_error_and_write_nothing(graph_simulator, source, target):
    item = family("deviceConfigurations")
    body = create_body(graph_simulator, source, item)
    graph_simulator.refuse_writes(target.tenant_id, item.key, name=body["displayName"], status=400,
                                  code="ModelValidationFailure", message="Value 'x' is not valid for 'passwordRequired'.")
    error = assert_graph_error(target.create(item, body), 400, "ModelValidationFailure")
    assert error["message"] == "Value 'x' is not valid for 'passwordRequired'."
    other = target.create(item, {**body, "displayName": "Another name"}).json()
    graph_simulator.refuse_writes(target.tenant_id, item.key, object_id=other["id"], status=409, code="Conflict", count=1)
    path = target.object_path(item, other["id"])
    assert_graph_error(target.request("PATCH", path, {"description": "x"}), 409, "Conflict")
    assert target.request("PATCH", path, {"description": "x"}).status_code == 204  # count=1: used up
    assert len(graph_simulator.refusals(target.tenant_id)) == 2
    graph_simulator.clear_refusals(target.tenant_id)
    assert target.create(item, body).status_code == 201
    assert [entry.operation for entry in graph_simulator.write_log(target.tenant_id)] == ["create", "update", "create"]


def test_writes_inside_a_batch_are_not_taken(graph_simulator, source, target):
    item = family("scopeTags")
    response = target.request("POST", "/beta/$batch", {"requests": [
        {"id": "1", "method": "POST", "url": item.entity_path, "body": {"displayName": "x"},
         "headers": {"Content-Type": "application/json"}}]})
    assert response.status_code == 200 and response.json()["responses"][0]["status"] == 501
    assert graph_simulator.objects(target.tenant_id, item.key) == []


# --- control API and CLI -----------------------------------------------------------------------


def test_the_write_log_refusals_and_read_only_tenants_through_the_control_api_and_cli(
        graph_simulator, http, source, target, capsys):
    item = family("scopeTags")
    created = target.create(item, create_body(graph_simulator, source, item)).json()
    control = f"{graph_simulator.api_url}/_simulator/tenants/{target.tenant_id}"
    logged = http.get(f"{control}/writes").json()["value"]
    assert [(entry["method"], entry["family"], entry["object_id"]) for entry in logged] == [("POST", "scopeTags", created["id"])]
    assert isinstance(logged[0]["time"], float)
    cli = ["--api-url", graph_simulator.api_url, "--ca", graph_simulator.ca_bundle]
    assert cli_main(["writes", *cli, "--tenant", target.tenant_id]) == 0
    assert json.loads(capsys.readouterr().out)["value"][0]["object_id"] == created["id"]

    assert cli_main(["refuse-write", *cli, "--tenant", target.tenant_id, "--family", "scopeTags", "--id", created["id"],
                     "--status", "400", "--code", "BadRequest", "--message", "Scope tag is in use."]) == 0
    capsys.readouterr()
    error = assert_graph_error(target.request("PATCH", target.object_path(item, created["id"]), {"description": "x"}), 400)
    assert error["message"] == "Scope tag is in use."
    assert cli_main(["refusals", *cli, "--tenant", target.tenant_id, "--clear"]) == 0
    assert http.get(f"{control}/refusals").json()["value"] == []
    assert http.post(f"{control}/refusals", json={"family": "nope", "name": "x"}).status_code == 404
    assert http.post(f"{control}/refusals", json={"family": "scopeTags"}).status_code == 400

    assert cli_main(["writes", *cli, "--tenant", target.tenant_id, "--reset"]) == 0
    assert graph_simulator.write_log(target.tenant_id) == []
    read_only = str(uuid.uuid4())
    assert cli_main(["add-tenant", *cli, "--tenant", read_only, "--permissions", "read"]) == 0
    assert not any(".ReadWrite." in role for role in graph_simulator.roles(read_only))
    with pytest.raises(ValueError):
        graph_simulator.add_tenant(str(uuid.uuid4()), permissions="admin")
    with pytest.raises(ValueError):
        graph_simulator.add_tenant(str(uuid.uuid4()), permissions="read", roles=["Group.Read.All"])
