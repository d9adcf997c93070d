"""Every route answers with the security headers, whatever the answer is."""
from __future__ import annotations

import pytest

from app.web.security import CONTENT_SECURITY_POLICY
from tests.conftest import make_test_app
from tests.test_access_matrix import actor_client, build_url

REQUIRED = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def all_urls(app, world):
    samples = {"filename": "css/app.css", "rest": f"{world.tenant_a.id}/policies"}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        method = "GET" if "GET" in rule.methods else "POST"
        if rule.arguments & samples.keys():
            url = rule.rule
            for name, value in samples.items():
                url = url.replace(f"<path:{name}>", value)
            yield method, url
        else:
            yield method, build_url(rule, world, membership_id=1)


def assert_secure(response, url):
    for header, value in REQUIRED.items():
        assert response.headers.get(header) == value, f"{header} on {url} ({response.status_code})"
    assert "unsafe-inline" not in response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize("actor", ["anonymous", "outsider", "rightful_member"])
def test_every_route_sends_the_security_headers(app, world, actor):
    client = actor_client(app, world, actor)
    seen = 0
    for method, url in all_urls(app, world):
        response = client.open(url, method=method)
        assert_secure(response, url)
        if actor == "rightful_member" and method == "GET" and not url.startswith("/static"):
            assert response.headers.get("Cache-Control") == "no-store", url
        seen += 1
    for url in ("/no/such/page", "/admin/t/not-a-guid", "/static/nope.css"):
        assert_secure(client.get(url), url)
    assert seen > 40


def test_hsts_only_outside_development(app, world):
    assert "Strict-Transport-Security" not in app.test_client().get("/login").headers or \
        app.config["TENANTATLAS_ENV"] != "development"
    production = make_test_app(app.config["SQLALCHEMY_DATABASE_URI"], TENANTATLAS_ENV="production")
    assert production.test_client().get("/login").headers["Strict-Transport-Security"].startswith("max-age=")
    development = make_test_app(app.config["SQLALCHEMY_DATABASE_URI"], TENANTATLAS_ENV="development")
    assert "Strict-Transport-Security" not in development.test_client().get("/login").headers


def test_pages_have_no_inline_script_or_style(app, world):
    client = actor_client(app, world, "rightful_member")
    for url in ("/login", f"/admin/w/{world.a.slug}/managed-tenants", f"/admin/t/{world.tenant_a.external_id}",
                f"/admin/t/{world.tenant_a.external_id}/policies/{world.ids_a['policy_id']}"):
        body = client.get(url).get_data(as_text=True)
        assert "<script>" not in body and "<script >" not in body, url
        assert ' style="' not in body and " onclick=" not in body, url


def test_a_static_file_never_sends_the_session_cookie_back(signed_in_client):
    """Else a stylesheet answered after a page that switched workspace would switch it back."""
    page = signed_in_client.get("/admin/workspaces")
    assert "tenantatlas_session=" in page.headers.get("Set-Cookie", "")  # the session is kept alive by pages
    asset = signed_in_client.get("/static/css/app.css")
    assert asset.status_code == 200
    assert "Set-Cookie" not in asset.headers
