"""App-only tokens (msal) against the simulator's identity endpoint, and the pure parts:
error classification, certificate loading, reading roles, the CA bundle."""
from __future__ import annotations

import datetime as dt
import ssl

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from app.graph.credentials import (
    AccessToken,
    TokenProvider,
    ca_bundle_path,
    consent_error_from_result,
    load_certificate_credential,
    read_roles,
    trusted_ca_pem,
)
from app.graph.errors import ConsentError
from app.graph.settings import GraphConfigError, GraphSettings


def _certificate_pem(key=None) -> tuple[str, x509.Certificate]:
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "TenantAtlas test app")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    return key_pem + cert.public_bytes(serialization.Encoding.PEM).decode(), cert


# --- error classification (texts as Entra sends them) ---------------------------------------

@pytest.mark.parametrize(("result", "kind", "code"), [
    ({"error": "invalid_client", "error_description": "AADSTS7000229: The client application 1 is missing service principal in the tenant 2.", "error_codes": [7000229]},
     "app_removed", "AADSTS7000229"),
    ({"error": "invalid_grant", "error_description": "AADSTS65001: The user or administrator has not consented to use the application", "error_codes": [65001]},
     "not_consented", "AADSTS65001"),
    ({"error": "unauthorized_client", "error_description": "AADSTS700016: Application with identifier 'x' was not found in the directory 'y'.", "error_codes": [700016]},
     "app_removed", "AADSTS700016"),
    ({"error": "unauthorized_client", "error_description": "AADSTS7000112: Application 'x' is disabled.", "error_codes": [7000112]},
     "app_removed", "AADSTS7000112"),
    ({"error": "invalid_request", "error_description": "AADSTS90002: Tenant 'x' not found.", "error_codes": [90002]},
     "tenant_not_found", "AADSTS90002"),
    ({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.", "error_codes": [7000215]},
     "invalid_credentials", "AADSTS7000215"),
    ({"error": "invalid_client", "error_description": "AADSTS7000222: The provided client secret keys are expired.", "error_codes": [7000222]},
     "invalid_credentials", "AADSTS7000222"),
    ({"error": "invalid_client", "error_description": "AADSTS700027: Client assertion failed signature validation.", "error_codes": [700027]},
     "invalid_credentials", "AADSTS700027"),
    ({"error": "temporarily_unavailable", "error_description": "AADSTS90033: MsodsServiceUnavailable", "error_codes": [90033]},
     "unavailable", "AADSTS90033"),
    ({"error": "invalid_client", "error_description": "no code here"}, "invalid_credentials", None),
    ({"error": "access_denied", "error_description": "AADSTS53003: Blocked by Conditional Access.", "error_codes": [53003]},
     "rejected", "AADSTS53003"),
    ({"error_description": "AADSTS65001 only in the text"}, "not_consented", "AADSTS65001"),
    ({}, "rejected", None),
    ({"error": ["not", "a", "string"], "error_codes": "nope", "error_description": 5}, "rejected", None),
])
def test_entra_error_answers_become_consent_error_kinds(result, kind, code):
    error = consent_error_from_result(result)
    assert isinstance(error, ConsentError)
    assert (error.kind, error.aadsts_code) == (kind, code)
    assert error.message == ConsentError.MESSAGES[kind]


# --- credentials and tokens ------------------------------------------------------------------

def test_a_certificate_pem_gives_both_thumbprints():
    pem, cert = _certificate_pem()
    credential = load_certificate_credential(pem)
    assert credential.sha1_thumbprint == cert.fingerprint(hashes.SHA1()).hex().upper()
    assert credential.sha256_thumbprint == cert.fingerprint(hashes.SHA256()).hex().upper()
    assert "PRIVATE KEY" in credential.private_key_pem and "PRIVATE KEY" not in repr(credential)


def test_a_certificate_with_someone_elses_key_is_a_config_error():
    pem, _ = _certificate_pem()
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_key_pem = other_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()).decode()
    certificate_only = pem[pem.index("-----BEGIN CERTIFICATE-----"):]
    with pytest.raises(GraphConfigError, match="does not belong"):
        load_certificate_credential(other_key_pem + certificate_only)


def test_a_token_provider_needs_a_client_id_and_a_credential():
    with pytest.raises(GraphConfigError):
        TokenProvider(GraphSettings(client_secret="s"))
    with pytest.raises(GraphConfigError):
        TokenProvider(GraphSettings(client_id="c"))
    provider = TokenProvider(GraphSettings(client_id="c", client_secret="super-secret-value"))
    assert "super-secret-value" not in repr(provider)


def test_roles_are_read_from_the_token_payload():
    token = jwt.encode({"roles": ["Group.Read.All", "DeviceManagementApps.Read.All", 7]}, "k" * 32, algorithm="HS256")
    assert read_roles(token) == (frozenset({"Group.Read.All", "DeviceManagementApps.Read.All"}), True)
    assert read_roles(jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256")) == (frozenset(), True)
    assert read_roles("not-a-jwt") == (frozenset(), False)


def test_an_access_token_keeps_its_value_out_of_repr():
    token = AccessToken(value="eyJsecret.value.here", roles=frozenset({"x"}), expires_at=100.0)
    assert "eyJsecret" not in repr(token)
    assert token.expired(now=50.0) and not token.expired(now=10.0)


def test_the_ca_bundle_is_certifi_plus_graph_ca_bundle(tmp_path):
    import certifi

    assert ca_bundle_path(GraphSettings()) == certifi.where()
    extra_pem, _ = _certificate_pem()
    extra = tmp_path / "extra.pem"
    extra.write_text(extra_pem[extra_pem.index("-----BEGIN CERTIFICATE-----"):])
    settings = GraphSettings(ca_bundle=str(extra))
    combined = trusted_ca_pem(settings)
    assert combined.startswith(open(certifi.where()).read().rstrip("\n")) and combined.endswith(extra.read_text())
    path = ca_bundle_path(settings)
    assert open(path).read() == combined and ca_bundle_path(settings) == path
    ssl.create_default_context(cafile=path)  # a loadable bundle
    with pytest.raises(GraphConfigError):
        trusted_ca_pem(GraphSettings(ca_bundle=str(tmp_path / "missing.pem")))


# --- against the simulator's identity endpoint ----------------------------------------------

import threading  # noqa: E402
from pathlib import Path  # noqa: E402

from tests.graph_support import (  # noqa: E402,F401  (fixtures)
    graph_certificate_settings,
    graph_settings,
    graph_simulator,
    make_tenant_id,
    settings_for,
    token_provider,
)

READ_ROLES = ["DeviceManagementConfiguration.Read.All", "Group.Read.All"]


def _token_posts(simulator, tenant_id):
    return [record for record in simulator.requests
            if record.server == "login" and record.tenant_id == tenant_id and record.path.endswith("/oauth2/v2.0/token")]


def test_a_secret_gets_a_token_carrying_the_granted_roles(graph_simulator, token_provider, make_tenant_id):
    tenant_id = make_tenant_id(roles=READ_ROLES)
    token = token_provider.acquire(tenant_id)
    assert token.roles == frozenset(READ_ROLES) and token.roles_known
    assert 3000 < token.expires_at - __import__("time").time() <= 3600
    assert token_provider.credential_type == "secret"


def test_a_certificate_gets_a_token_with_a_ps256_assertion_carrying_x5t_s256(
        graph_simulator, graph_certificate_settings, make_tenant_id):
    tenant_id = make_tenant_id(roles=READ_ROLES)
    provider = TokenProvider(graph_certificate_settings)
    try:
        assert provider.acquire(tenant_id).roles == frozenset(READ_ROLES)
        # What msal signed (its assertion factory, msal internals): PS256 with the SHA-256 thumbprint.
        assertion = provider.client(tenant_id).client.client_assertion()
        header = jwt.get_unverified_header(assertion)
        assert header["alg"] == "PS256" and "x5t#S256" in header and "x5t" not in header
        cert = x509.load_pem_x509_certificate(Path(graph_simulator.client_certificate_path).read_bytes())
        assert provider.certificate.sha1_thumbprint == cert.fingerprint(hashes.SHA1()).hex().upper()
    finally:
        provider.forget_all()


def test_tokens_come_from_msals_cache_until_forget(graph_simulator, token_provider, make_tenant_id):
    tenant_id = make_tenant_id(roles=READ_ROLES)
    first = token_provider.acquire(tenant_id)
    graph_simulator.set_roles(tenant_id, ["Group.Read.All"])
    assert token_provider.acquire(tenant_id) is first  # cached: the same token, the old roles
    assert len(_token_posts(graph_simulator, tenant_id)) == 1
    token_provider.forget(tenant_id)
    assert token_provider.acquire(tenant_id).roles == frozenset({"Group.Read.All"})
    assert token_provider.clients_built == 2


def test_msal_replays_a_refusal_on_the_same_client_so_a_fresh_one_is_built(
        graph_simulator, token_provider, make_tenant_id):
    """The notes' "cached failures": msal answers a repeated token request that failed with
    400 from its own cache, without asking again, for the same client object."""
    tenant_id = make_tenant_id(consented=False)
    app = token_provider.client(tenant_id)
    scopes = [token_provider.settings.scope]
    assert "AADSTS700016" in app.acquire_token_for_client(scopes=scopes)["error_description"]
    graph_simulator.grant_consent(tenant_id)
    replayed = app.acquire_token_for_client(scopes=scopes)
    assert "AADSTS700016" in replayed["error_description"]
    assert len(_token_posts(graph_simulator, tenant_id)) == 1  # the replay never left
    token_provider.forget(tenant_id)
    assert token_provider.acquire(tenant_id).value
    assert len(_token_posts(graph_simulator, tenant_id)) == 2


def test_revoked_consent_raises_app_removed_and_consent_again_works_at_once(
        graph_simulator, token_provider, make_tenant_id):
    tenant_id = make_tenant_id()
    token_provider.acquire(tenant_id)
    graph_simulator.revoke_consent(tenant_id)
    token_provider.forget(tenant_id)  # what the app does when it learns consent changed
    with pytest.raises(ConsentError) as raised:
        token_provider.acquire(tenant_id)
    assert (raised.value.kind, raised.value.aadsts_code) == ("app_removed", "AADSTS700016")
    assert "AADSTS700016" in raised.value.description
    graph_simulator.grant_consent(tenant_id)
    # acquire() dropped the failed client itself, so no replayed refusal here.
    assert token_provider.acquire(tenant_id).value


def test_consent_required_raises_not_consented(graph_simulator, token_provider, make_tenant_id):
    tenant_id = make_tenant_id()
    graph_simulator.inject("consent-required", tenant_id=tenant_id)
    with pytest.raises(ConsentError) as raised:
        token_provider.acquire(tenant_id)
    assert (raised.value.kind, raised.value.aadsts_code) == ("not_consented", "AADSTS65001")


def test_consent_revoked_fault_raises_app_removed(graph_simulator, token_provider, make_tenant_id):
    tenant_id = make_tenant_id()
    graph_simulator.inject("consent-revoked", tenant_id=tenant_id)
    with pytest.raises(ConsentError) as raised:
        token_provider.acquire(tenant_id)
    assert raised.value.kind == "app_removed"


def test_an_unknown_tenant_raises_tenant_not_found(token_provider):
    with pytest.raises(ConsentError) as raised:
        token_provider.acquire("0badc0de-0000-4000-8000-000000000000")
    assert (raised.value.kind, raised.value.aadsts_code) == ("tenant_not_found", "AADSTS90002")
    with pytest.raises(ConsentError) as raised:
        token_provider.acquire("../../common")
    assert raised.value.kind == "tenant_not_found"


def test_a_wrong_secret_raises_invalid_credentials(graph_simulator, make_tenant_id):
    tenant_id = make_tenant_id()
    settings = settings_for(graph_simulator)
    provider = TokenProvider(GraphSettings(**{**settings.__dict__, "client_secret": "wrong-secret-value"}))
    with pytest.raises(ConsentError) as raised:
        provider.acquire(tenant_id)
    assert (raised.value.kind, raised.value.aadsts_code) == ("invalid_credentials", "AADSTS7000215")
    assert "wrong-secret-value" not in repr(raised.value) + str(raised.value) + (raised.value.description or "")


def test_a_certificate_the_app_does_not_know_raises_invalid_credentials(graph_simulator, make_tenant_id):
    tenant_id = make_tenant_id()
    pem, _ = _certificate_pem()
    settings = settings_for(graph_simulator)
    provider = TokenProvider(GraphSettings(**{**settings.__dict__, "client_secret": None, "client_certificate_pem": pem}))
    with pytest.raises(ConsentError) as raised:
        provider.acquire(tenant_id)
    assert (raised.value.kind, raised.value.aadsts_code) == ("invalid_credentials", "AADSTS700027")


def test_an_unreachable_login_server_raises_unavailable(graph_simulator, make_tenant_id):
    from simulator.core import free_port

    settings = settings_for(graph_simulator)
    closed = GraphSettings(**{**settings.__dict__, "login_url": f"https://127.0.0.1:{free_port()}"})
    with pytest.raises(ConsentError) as raised:
        TokenProvider(closed).acquire(make_tenant_id())
    assert raised.value.kind == "unavailable"


def test_tls_to_login_needs_the_graph_ca_bundle(graph_simulator, make_tenant_id):
    tenant_id = make_tenant_id()
    with pytest.raises(ConsentError) as raised:
        TokenProvider(settings_for(graph_simulator, ca_bundle=False)).acquire(tenant_id)
    assert raised.value.kind == "unavailable" and "SSLError" in (raised.value.description or "")


def test_the_environment_neither_replaces_the_ca_bundle_nor_adds_a_proxy(
        graph_simulator, graph_settings, make_tenant_id, monkeypatch):
    import certifi

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())  # would drop the simulator's CA
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # would send everything nowhere
    provider = TokenProvider(graph_settings)
    try:
        assert provider.acquire(make_tenant_id()).value
    finally:
        provider.forget_all()


def test_no_instance_discovery_for_a_login_host_other_than_microsofts(graph_simulator, token_provider, make_tenant_id):
    tenant_id = make_tenant_id()
    token_provider.acquire(tenant_id)
    assert token_provider._instance_discovery is False
    paths = [record.path for record in graph_simulator.requests if record.server == "login" and record.tenant_id == tenant_id]
    assert paths == [f"/{tenant_id}/v2.0/.well-known/openid-configuration", f"/{tenant_id}/oauth2/v2.0/token"]
    public = TokenProvider(GraphSettings(client_id="c", client_secret="s"))
    assert public._instance_discovery is True


def test_concurrent_first_acquires_build_one_client(graph_simulator, token_provider, make_tenant_id):
    tenant_id = make_tenant_id()
    tokens = []
    threads = [threading.Thread(target=lambda: tokens.append(token_provider.acquire(tenant_id))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(tokens) == 6 and token_provider.clients_built == 1
    assert len({token.value for token in tokens}) == 1


def test_no_token_or_secret_in_reprs_or_error_texts(graph_simulator, graph_settings, token_provider, make_tenant_id):
    tenant_id = make_tenant_id()
    token = token_provider.acquire(tenant_id)
    for text in (repr(token), repr(token_provider), repr(graph_settings)):
        assert token.value not in text and graph_settings.client_secret not in text
