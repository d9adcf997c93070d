"""Fixtures for Microsoft sign-in tests: the app's OIDC pointed at the Graph simulator's
identity platform, the MSP's own staff tenant there, and a browser-like walk through it."""
from __future__ import annotations

import ssl
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from app.web.account.oidc import OidcSettings, _OAuth
from tests.graph_support import graph_settings, graph_simulator  # noqa: F401  (fixtures)


def use_oidc(app, graph_settings, oidc_settings):  # noqa: F811
    """Point `app` at the simulator for Microsoft sign-in; returns an undo function."""
    before = {key: app.extensions.get(key) for key in ("graph_settings", "oidc_settings", "oidc_oauth")}
    app.extensions["graph_settings"] = graph_settings
    app.extensions["oidc_settings"] = oidc_settings
    app.extensions["oidc_oauth"] = _OAuth(app)  # a fresh client: discovery of this simulator

    def undo():
        app.extensions.update(before)

    return undo


@pytest.fixture
def staff_tenant(graph_simulator):  # noqa: F811
    """The MSP's own Entra tenant in the simulator, where staff sign in (its sign-in user: ada.lovelace)."""
    tenant_id = str(uuid.uuid4())
    graph_simulator.add_tenant(tenant_id, name="Atlas MSP Staff")
    graph_simulator.set_signin_user(tenant_id, username="ada.lovelace", roles=[], name="Ada Lovelace")
    return tenant_id


@pytest.fixture
def oidc_app(app, graph_settings, graph_simulator, staff_tenant):  # noqa: F811
    undo = use_oidc(app, graph_settings, OidcSettings(tenant_id=staff_tenant, client_id=graph_simulator.client_id,
                                                      client_secret=graph_simulator.client_secret))
    yield app
    undo()


def certificate_settings(graph_simulator, tenant_id) -> OidcSettings:  # noqa: F811
    return OidcSettings(tenant_id=tenant_id, client_id=graph_simulator.client_id,
                        client_certificate_pem=Path(graph_simulator.client_certificate_path).read_text())


def provider_answer(graph_simulator, authorize_url: str) -> str:  # noqa: F811
    """What the identity platform does with a browser at `authorize_url`: where it sends it back (path?query)."""
    graph_simulator.set_consent_mode("accept")
    answer = httpx.get(authorize_url, verify=ssl.create_default_context(cafile=str(graph_simulator.ca_bundle)),
                       follow_redirects=False)
    assert answer.status_code in (302, 303), answer.text[:300]
    parts = urlsplit(answer.headers["Location"])
    return f"{parts.path}?{parts.query}"


def microsoft_sign_in(client, graph_simulator, start: str = "/login/microsoft"):  # noqa: F811
    """Start at `start`, sign in at the simulator, come back: the callback's response."""
    response = client.get(start)
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    location = response.headers["Location"]
    if location.startswith("/login/microsoft"):
        location = client.get(location).headers["Location"]
    return client.get(provider_answer(graph_simulator, location))
