"""Property-based tests (hypothesis): hostile input never breaks a page, and no sequence of
sign-ins, workspace switches and membership changes ever shows one workspace's data in another."""
from __future__ import annotations

import re
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from app.models import WorkspaceMembership
from tests.conftest import csrf_token, enter, sign_in
from tests.test_access_matrix import sample_arguments

FUZZ_SETTINGS = settings(max_examples=60, deadline=None,
                         suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

hostile_text = st.one_of(
    st.text(min_size=0, max_size=40),
    st.text(alphabet="0123456789", min_size=1, max_size=30),
    st.sampled_from(["", "0", "-1", "9" * 25, "../..", "%00", "'; DROP TABLE tenants;--", "<script>x</script>",
                     "\u202e", "\u00b2", "\u0661\u0662", "\uff11", "😀" * 50, "a" * 3000, "%2F", "{{7*7}}", "null", "NaN", "1e309"]),
    st.uuids().map(str),
)
# What a paste or a terminal adds around an id: `$` in a pattern matches before a final newline.
WHITESPACE = st.sampled_from(["\n", "\r\n", "\r", " ", "\t", "\x0b", "\x0c", "\u00a0", "\u2028", "\u0085", "\n\n"])
hostile_text = st.one_of(
    hostile_text,
    st.tuples(st.uuids().map(str), WHITESPACE).map("".join),
    st.tuples(WHITESPACE, st.uuids().map(str)).map("".join),
)
query_values = st.dictionaries(
    st.sampled_from(["q", "sort", "dir", "page", "per_page", "status", "severity", "a", "b", "next", "x"]),
    hostile_text, max_size=5)


def fill(rule, world, draw_value) -> str:
    samples = {**sample_arguments(world), "membership_id": 1, "filename": "css/app.css", "rest": "x"}
    path = rule.rule
    for name in rule.arguments:
        value = draw_value(name, samples.get(name))
        path = re.sub(r"<(?:[^<>]*:)?%s>" % name, quote(str(value), safe=""), path)
        path = re.sub(r"<any\([^)]*\):%s>" % name, quote(str(value), safe=""), path)
    return path


def routes(app):
    return sorted((r for r in app.url_map.iter_rules() if r.endpoint != "static"), key=lambda r: r.rule)


def no_server_error(response, url):
    assert response.status_code < 500, f"{response.status_code} on {url}"
    assert b"Traceback" not in response.get_data(), url  # bytes: a backup download is a zip, not text


@pytest.fixture
def member(client, world):
    sign_in(client, world.ada.email)
    enter(client, world.a)
    client.token = csrf_token(client)
    return client


@FUZZ_SETTINGS
@given(data=st.data())
def test_random_path_segments_and_query_values_never_give_a_500(app, world, member, data):
    for rule in routes(app):
        def draw_value(name, sample):
            # Mostly hostile values; sometimes the real one, or the real one with whitespace after it,
            # so deeper code runs too.
            if sample is None:
                return data.draw(hostile_text)
            return data.draw(st.one_of(hostile_text, st.just(sample),
                                       st.tuples(st.just(str(sample)), WHITESPACE).map("".join)))

        url = fill(rule, world, draw_value)
        query = data.draw(query_values)
        target = url + ("?" + urlencode(query) if query else "")
        if "GET" in rule.methods:
            no_server_error(member.get(target), target)
        if "POST" in rule.methods and rule.endpoint not in ("auth.logout", "auth.login"):
            form = {**data.draw(query_values), "csrf_token": member.token}
            no_server_error(member.post(target, data=form), target)


ACTIONS = st.lists(st.one_of(
    st.tuples(st.just("sign_in"), st.sampled_from(["ada", "bob", "dual", "olivia"])),
    st.tuples(st.just("enter"), st.sampled_from(["a", "b"])),
    st.tuples(st.just("switch"), st.sampled_from(["a", "b"])),
    st.tuples(st.just("revoke"), st.sampled_from(["a", "b"])),
    st.tuples(st.just("restore"), st.sampled_from(["a", "b"])),
    st.tuples(st.just("visit"), st.sampled_from(["a", "b"]), st.sampled_from(
        ["", "/policies", "/findings?status=all", "/backups", "/inventory", "/audit", "/policies/{policy_id}"])),
    st.tuples(st.just("legacy"), st.sampled_from(["a", "b"])),
), min_size=1, max_size=14)

MARKER = {"a": "ALPHA", "b": "BRAVO"}


@FUZZ_SETTINGS
@given(actions=ACTIONS)
def test_no_sequence_of_actions_shows_another_workspaces_data(app, world, db_session, actions):
    """Invariant on every tenant page: a login redirect, a 404, or a page of the session's
    current workspace, to a member of it, with no marker of the other workspace."""
    users = {"ada": world.ada, "bob": world.bob, "dual": world.dual, "olivia": world.olivia}
    workspaces = {"a": world.a, "b": world.b}
    tenants = {"a": (world.tenant_a, world.ids_a), "b": (world.tenant_b, world.ids_b)}
    original = set(db_session.execute(select(WorkspaceMembership.workspace_id, WorkspaceMembership.user_id,
                                             WorkspaceMembership.role)).all())
    client = app.test_client()
    who, current = None, None
    try:
        for action in actions:
            kind = action[0]
            if kind == "sign_in":
                client = app.test_client()
                sign_in(client, users[action[1]].email)
                who = users[action[1]]
                with client.session_transaction() as session:
                    current = session.get("current_workspace_id")
            elif kind in ("enter", "switch") and who is not None:
                workspace = workspaces[action[1]]
                if kind == "enter":
                    response = client.get(f"/admin/w/{workspace.slug}/managed-tenants")
                else:
                    response = client.post("/admin/workspaces/switch",
                                           data={"workspace_id": workspace.id, "csrf_token": csrf_token(client)})
                if response.status_code in (200, 302) and _is_member(db_session, who, workspace):
                    current = workspace.id
            elif kind == "revoke" and who is not None:
                db_session.execute(delete(WorkspaceMembership).where(
                    WorkspaceMembership.user_id == who.id, WorkspaceMembership.workspace_id == workspaces[action[1]].id))
                db_session.commit()
            elif kind == "restore":
                _restore(db_session, original)
            elif kind in ("visit", "legacy"):
                key = action[1]
                tenant, ids = tenants[key]
                other = MARKER["b" if key == "a" else "a"]
                url = (f"/admin/t/{tenant.external_id}" + action[2].format(**ids) if kind == "visit"
                       else f"/admin/managed-tenants/{tenant.id}/policies")
                response = client.get(url)
                body = response.get_data(as_text=True)
                if who is None:
                    assert response.status_code == 302 and "/login" in response.headers["Location"]
                    continue
                allowed = current == workspaces[key].id and _is_member(db_session, who, workspaces[key])
                if kind == "legacy":
                    assert response.status_code == (302 if allowed else 404), (repr(actions), url, response.status_code, current, who.email)
                    continue
                assert response.status_code == (200 if allowed else 404), (actions, url, response.status_code)
                assert other not in body, (actions, url)
                if not allowed:
                    assert MARKER[key] not in body and tenant.name not in body
    finally:
        _restore(db_session, original)


def _is_member(db_session, user, workspace) -> bool:
    return db_session.scalar(select(WorkspaceMembership.id).where(
        WorkspaceMembership.user_id == user.id, WorkspaceMembership.workspace_id == workspace.id)) is not None


def _restore(db_session, original) -> None:
    present = set(db_session.execute(select(WorkspaceMembership.workspace_id, WorkspaceMembership.user_id,
                                            WorkspaceMembership.role)).all())
    for workspace_id, user_id, role in original - present:
        db_session.add(WorkspaceMembership(workspace_id=workspace_id, user_id=user_id, role=role))
    db_session.commit()

