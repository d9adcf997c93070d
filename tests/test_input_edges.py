"""Ids typed into URLs with something trailing (a pasted newline, a space, a tab): never a 500.

The routes come from app.url_map, so a route added later is tried too.
"""
from __future__ import annotations

import logging
import re
from urllib.parse import quote

import pytest

from tests.conftest import csrf_token, enter, sign_in
from tests.test_access_matrix import sample_arguments

TRAILING = ["\n", "\r\n", " ", "\t", "\x0b", "\x0c", "\r", "\u00a0", "\u2028", "\u0085"]


def routes_with_arguments(app):
    return sorted((rule for rule in app.url_map.iter_rules() if rule.arguments and rule.endpoint != "static"),
                  key=lambda rule: rule.rule)


def url_with_suffix(rule, samples: dict, name: str, suffix: str) -> str:
    path = rule.rule
    for argument in rule.arguments:
        value = str(samples[argument]) + (suffix if argument == name else "")
        path = re.sub(r"<(?:[^<>]*:)?%s>" % argument, quote(value, safe=""), path)
    return path


@pytest.fixture
def member(client, world):
    sign_in(client, world.ada.email)
    enter(client, world.a)
    client.token = csrf_token(client)
    return client


@pytest.mark.parametrize("suffix", TRAILING, ids=repr)
def test_an_id_with_trailing_whitespace_is_refused_never_a_500(app, world, member, suffix):
    samples = {**sample_arguments(world), "membership_id": 1, "rest": str(world.tenant_a.external_id)}
    for rule in routes_with_arguments(app):
        for name in rule.arguments:
            url = url_with_suffix(rule, samples, name, suffix)
            responses = []
            if "GET" in rule.methods:
                responses.append(member.get(url))
            if "POST" in rule.methods:
                responses.append(member.post(url, data={"csrf_token": member.token}))
            for response in responses:
                assert response.status_code < 500, f"{response.status_code} on {url!r}"


def test_tenant_url_with_an_encoded_newline_is_the_plain_404(member, world):
    for rest in ("", "/policies", "/pin"):
        url = f"/admin/t/{world.tenant_a.external_id}%0A{rest}"
        response = member.post(url, data={"csrf_token": member.token}) if rest == "/pin" else member.get(url)
        assert response.status_code == 404, url


def test_log_lines_never_carry_a_raw_newline_from_a_url(app, member, world, caplog):
    caplog.set_level(logging.INFO)
    member.get(f"/admin/t/{world.tenant_a.external_id}%0Aforged%20entry")
    app.logger.warning("Refused write on %s %s: %s", "GET", "/admin/x\nINFO forged line", "reason\r\nmore")
    messages = [record.getMessage() for record in caplog.records]
    assert any("forged line" in message for message in messages)
    assert not any(re.search(r"[\r\n\x0b\x0c\x85\u2028\u2029]", message) for message in messages), messages
