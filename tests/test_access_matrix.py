"""Every route under /admin/t/ and /admin/w/, every kind of visitor.

The routes come from app.url_map, so a route added later is checked too; one
whose argument has no sample here, or that answers a stranger with anything but
a login redirect or a 404, fails this test.
"""
from __future__ import annotations

import re
import uuid

import pytest

from tests.conftest import csrf_token, enter, sign_in

GUARDED_PREFIXES = ("/admin/t/", "/admin/w/")


def guarded_rules(app, method: str):
    return sorted(
        (rule for rule in app.url_map.iter_rules()
         if rule.rule.startswith(GUARDED_PREFIXES) and method in rule.methods),
        key=lambda rule: rule.rule,
    )


def operations_rows(world) -> dict:
    """A tag, a baseline (with a policy, assigned to the tag), a bulk run and an alert rule of workspace A."""
    if hasattr(world, "operations_ids"):
        return world.operations_ids
    from app.extensions import db
    from app.operations_models import (AlertRule, Baseline, BaselineAssignment, BaselinePolicy, BulkRun, Tag)

    tag = Tag(workspace_id=world.a.id, name="Matrix tag")
    baseline = Baseline(workspace_id=world.a.id, name="Matrix baseline")
    run = BulkRun(workspace_id=world.a.id, action="sync", label="Sync now")
    rule = AlertRule(workspace_id=world.a.id, name="Matrix rule", event="new_finding", channel="email",
                     target="ops@example.test")
    db.session.add_all([tag, baseline, run, rule])
    db.session.flush()
    item = BaselinePolicy(workspace_id=world.a.id, baseline_id=baseline.id, policy_type="deviceConfiguration",
                          platform="windows10", name="Matrix policy", settings={"a": True})
    assignment = BaselineAssignment(workspace_id=world.a.id, baseline_id=baseline.id, tag_id=tag.id)
    db.session.add_all([item, assignment])
    db.session.commit()
    world.operations_ids = {"tag_id": tag.id, "baseline_id": baseline.id, "baseline_policy_id": item.id,
                            "assignment_id": assignment.id, "bulk_run_id": run.id, "rule_id": rule.id}
    return world.operations_ids


def sample_arguments(world) -> dict:
    ids = world.ids_a
    return {
        **operations_rows(world),
        "tenant_ext": str(world.tenant_a.external_id),
        "external_id": str(world.tenant_a.external_id),
        "slug": world.a.slug,
        "policy_id": ids["policy_id"],
        "backup_set_id": ids["backup_set_id"],
        "restore_run_id": ids["restore_run_id"],
        "schedule_id": ids["schedule_id"],
        "item_id": ids["item_id"],
        "finding_id": ids["finding_id"],
        "run_id": ids["run_id"],
        "backup_item_id": ids["backup_item_id"],
        "version_id": ids["version_a"],
        "action": "acknowledge",
        "rest": f"policies/{ids['policy_id']}",
        # Staff identity routes (tests/test_input_edges.py and test_security_headers.py walk every route).
        "invitation_id": 1, "session_id": 999999, "user_id": world.olivia.id, "token": "A" * 43,
        "credential_id": 1,
    }


def sample_query(endpoint: str, world) -> str:
    if endpoint == "tenant.policy_diff":
        return f"?a={world.ids_a['version_a']}&b={world.ids_a['version_b']}"
    if endpoint == "portfolio.tenant_permalink":
        return "?page=2"
    return ""


# Routes that, when allowed, answer with a redirect to a tenant page (which must then be served).
REDIRECTING_ENDPOINTS = {"portfolio.tenant_permalink", "tenant.trailing_slash"}


def build_url(rule, world, **extra) -> str:
    samples = {**sample_arguments(world), **extra}
    missing = rule.arguments - samples.keys()
    assert not missing, f"{rule.rule}: add a sample value for {sorted(missing)} to this test"
    path = rule.rule
    for name in rule.arguments:
        path = re.sub(r"<(?:[^:<>]+:)?%s>" % name, str(samples[name]), path)
        path = re.sub(r"<any\([^)]*\):%s>" % name, str(samples[name]), path)
    return path + sample_query(rule.endpoint, world)


def actor_client(app, world, actor: str):
    """A signed-in client in the situation the actor name describes."""
    client = app.test_client()
    if actor == "anonymous":
        return client
    user = {"outsider": world.olivia, "other_workspace_member": world.bob, "member_no_current": world.dual,
            "member_current_other": world.dual, "rightful_member": world.ada}[actor]
    assert sign_in(client, user.email).status_code == 302
    if actor == "member_current_other":
        enter(client, world.b)
    elif actor == "other_workspace_member":
        enter(client, world.b)
    elif actor == "rightful_member":
        enter(client, world.a)
    return client


def expected_denial(rule, actor: str) -> bool:
    """Whether `actor` must be refused (login redirect or 404) on `rule`."""
    if actor == "rightful_member":
        return False
    if rule.rule.startswith("/admin/w/") and actor in ("member_no_current", "member_current_other"):
        # Visiting /admin/w/<slug> as a member of it is how a workspace becomes current.
        return False
    return True


def assert_denied(response, actor: str, url: str):
    if actor == "anonymous":
        assert response.status_code == 302, url
        assert response.headers["Location"].startswith("/login?next="), url
    else:
        assert response.status_code == 404, f"{actor} got {response.status_code} on {url}"


ACTORS = ("anonymous", "outsider", "other_workspace_member", "member_no_current", "member_current_other",
          "rightful_member")


@pytest.mark.parametrize("actor", ACTORS)
def test_every_guarded_get_route(app, world, actor):
    rules = guarded_rules(app, "GET")
    assert len(rules) >= 20
    client = actor_client(app, world, actor)
    for rule in rules:
        url = build_url(rule, world)
        # Buffered: a streamed export is read to its end before the next request (the test's
        # requests share one database connection; production requests each have their own).
        response = client.get(url, buffered=True)
        if expected_denial(rule, actor):
            assert_denied(response, actor, url)
            body = response.get_data(as_text=True)
            assert "ALPHA" not in body and world.tenant_a.name not in body, url
        elif rule.endpoint in REDIRECTING_ENDPOINTS:
            # A permalink into a workspace the actor belongs to (it becomes current), or a pasted
            # URL with a trailing slash: a redirect, then the tenant page.
            assert response.status_code in (301, 302), f"{actor} got {response.status_code} on {url}"
            location = response.headers["Location"]
            assert location.startswith(f"/admin/t/{world.tenant_a.external_id}"), location
            assert client.get(location).status_code == 200, f"{actor}: {url} -> {location}"
        else:
            assert response.status_code == 200, f"{actor} got {response.status_code} on {url}"


@pytest.mark.parametrize("actor", [a for a in ACTORS if a != "rightful_member"])
def test_every_guarded_post_route_refuses_strangers(app, world, actor, db_session):
    rules = guarded_rules(app, "POST")
    assert len(rules) >= 8
    client = actor_client(app, world, actor)
    token = csrf_token(client) if actor != "anonymous" else ""
    for rule in rules:
        if not expected_denial(rule, actor):
            continue
        url = build_url(rule, world)
        response = client.post(url, data={"csrf_token": token, "external_id": str(uuid.uuid4()), "name": "X"})
        if actor == "anonymous":
            # No session, so no CSRF token: refused before anything else.
            assert response.status_code in (302, 400), url
        else:
            assert_denied(response, actor, url)
