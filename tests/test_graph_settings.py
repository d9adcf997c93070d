"""GRAPH_* settings from the environment: defaults, national clouds, files, bad values."""
from __future__ import annotations

import pytest

from app.config import ConfigError
from app.graph.settings import DEFAULT_API_URL, DEFAULT_LOGIN_URL, GraphConfigError, GraphSettings


def test_defaults_are_microsofts_public_cloud_and_not_configured():
    settings = GraphSettings.from_environ({})
    assert (settings.api_url, settings.login_url) == (DEFAULT_API_URL, DEFAULT_LOGIN_URL)
    assert not settings.configured and settings.scope == "https://graph.microsoft.com/.default"
    assert settings.authority("t") == "https://login.microsoftonline.com/t"


def test_a_national_cloud_gets_its_own_scope_and_authority():
    settings = GraphSettings.from_environ({"GRAPH_API_URL": "https://graph.microsoft.us/",
                                           "GRAPH_LOGIN_URL": "https://login.microsoftonline.us",
                                           "GRAPH_CLIENT_ID": "app", "GRAPH_CLIENT_SECRET": "s3cret"})
    assert settings.scope == "https://graph.microsoft.us/.default" and settings.configured
    assert "s3cret" not in repr(settings)


def test_secrets_can_come_from_files(tmp_path):
    (tmp_path / "id").write_text("app-id\n")
    (tmp_path / "secret").write_text("from-a-file\n")
    settings = GraphSettings.from_environ({"GRAPH_CLIENT_ID_FILE": str(tmp_path / "id"),
                                           "GRAPH_CLIENT_SECRET_FILE": str(tmp_path / "secret")})
    assert (settings.client_id, settings.client_secret) == ("app-id", "from-a-file")


def test_a_certificate_pem_with_its_key_is_read(tmp_path, graph_simulator_pem):
    settings = GraphSettings.from_environ({"GRAPH_CLIENT_ID": "app", "GRAPH_CLIENT_CERTIFICATE": graph_simulator_pem})
    assert settings.configured and "PRIVATE KEY" in settings.client_certificate_pem
    assert "PRIVATE KEY" not in repr(settings)


@pytest.fixture
def graph_simulator_pem(tmp_path):
    from simulator.pki import Pki

    return str(Pki.load_or_create(tmp_path / "pki").app_pem_path)


@pytest.mark.parametrize("environ, message", [
    ({"GRAPH_API_URL": "http://graph.example"}, "GRAPH_API_URL must be an https:// URL"),
    ({"GRAPH_LOGIN_URL": "https://login.example/?x=1"}, "GRAPH_LOGIN_URL must be an https:// URL"),
    ({"GRAPH_API_URL": "graph.microsoft.com"}, "GRAPH_API_URL must be an https:// URL"),
    ({"GRAPH_CLIENT_SECRET": "a", "GRAPH_CLIENT_SECRET_FILE": "/x"}, "not both"),
    ({"GRAPH_CLIENT_SECRET_FILE": "/nonexistent/secret"}, "cannot be read"),
    ({"GRAPH_CLIENT_CERTIFICATE": "/nonexistent/app.pem"}, "cannot be read"),
    ({"GRAPH_CA_BUNDLE": "/nonexistent/ca.pem"}, "GRAPH_CA_BUNDLE is not a file"),
])
def test_bad_settings_are_one_clear_message(environ, message):
    with pytest.raises(GraphConfigError, match=message.replace("?", r"\?")) as raised:
        GraphSettings.from_environ(environ)
    assert isinstance(raised.value, ConfigError)


def test_a_pem_without_its_private_key_is_refused(tmp_path):
    path = tmp_path / "cert-only.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    with pytest.raises(GraphConfigError, match="certificate and its private key"):
        GraphSettings.from_environ({"GRAPH_CLIENT_CERTIFICATE": str(path)})
