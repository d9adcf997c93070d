"""The Graph simulator over real HTTPS sockets: identity platform, Graph subset, faults, CLI.

One simulator serves the module (page size 5, so a few objects already page); the tests
that need other start options (throttling, latency, the seed's demo tenants) start their
own on the same state directory.
"""
from __future__ import annotations

import email.utils
import hashlib
import html
import json
import re
import ssl
import time
import uuid
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import msal
import pytest

from simulator.identity import MEMBER_USER_ROLE
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.demo import demo_tenant_name, load_fixture
from app.graph.families import FAMILIES, family
from app.demo.seed import POLICY_TEMPLATES, tenant_external_id
from simulator import FAULTS, Simulator, ThrottleLimits
from simulator.__main__ import main as cli_main
from simulator.control import _is_loopback
from simulator.shapes import stable_guid

TENANT = "0f3c2a55-1d6e-4b7a-9c21-6e5d4c3b2a10"
PAGE_SIZE = 5


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("simulator")


@pytest.fixture(scope="module")
def sim(state_dir):
    simulator = Simulator.start(state_dir, page_size=PAGE_SIZE)
    simulator.add_tenant(TENANT, name="Contoso Pharma")
    yield simulator
    simulator.stop()


@pytest.fixture()
def fresh(sim):
    """A clean slate for one test: no pending faults, an empty log, consent as in prompt mode."""
    sim.clear_faults()
    sim.reset_log()
    sim.set_consent_mode("prompt")
    yield sim
    sim.clear_faults()


@pytest.fixture(scope="module")
def client(sim):
    with httpx.Client(verify=ssl.create_default_context(cafile=sim.ca_bundle), trust_env=False, timeout=10) as http:
        yield http


def get_token(sim, client, tenant=TENANT, **overrides):
    form = {"grant_type": "client_credentials", "client_id": sim.client_id, "client_secret": sim.client_secret,
            "scope": f"{sim.api_url}/.default", **overrides}
    return client.post(f"{sim.login_url}/{tenant}/oauth2/v2.0/token", data=form)


@pytest.fixture(scope="module")
def token(sim, client):
    response = get_token(sim, client)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def graph(sim, client, token, path, **kwargs):
    url = path if path.startswith("https://") else f"{sim.api_url}{path}"
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    return client.get(url, headers=headers, **kwargs)


def batch(sim, client, token, requests_, version="beta"):
    return client.post(f"{sim.api_url}/{version}/$batch", json={"requests": requests_},
                       headers={"Authorization": f"Bearer {token}"})


def assert_aad_error(response, status, code, error):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert body["error_description"].startswith(f"AADSTS{code}:")
    assert body["error_codes"] == [code]
    for key in ("timestamp", "trace_id", "correlation_id"):
        assert body[key]
    return body


def assert_graph_error(response, status, code=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
    if code:
        assert error["code"] == code
    return error


# --- identity platform -------------------------------------------------------------------------


def test_discovery_keys_and_a_secret_token(sim, client):
    discovery = client.get(f"{sim.login_url}/{TENANT}/v2.0/.well-known/openid-configuration").json()
    assert discovery["token_endpoint"] == f"{sim.login_url}/{TENANT}/oauth2/v2.0/token"
    assert discovery["issuer"] == f"{sim.login_url}/{TENANT}/v2.0"
    keys = client.get(discovery["jwks_uri"]).json()["keys"]

    response = get_token(sim, client)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3599
    header = jwt.get_unverified_header(body["access_token"])
    key = next(item for item in keys if item["kid"] == header["kid"])
    claims = jwt.decode(body["access_token"], jwt.PyJWK(key).key, algorithms=["RS256"], audience=sim.api_url)
    assert claims["iss"] == f"https://sts.windows.net/{TENANT}/"
    assert claims["tid"] == TENANT and claims["appid"] == sim.client_id
    assert claims["exp"] - claims["iat"] == 3600
    permissions = {name for item in FAMILIES for name in (item.read_permission, item.write_permission)}
    assert set(claims["roles"]) == permissions


class RecordingSession(requests.Session):
    def __init__(self, ca_bundle):
        super().__init__()
        self.verify = ca_bundle
        self.trust_env = False
        self.forms = []

    def post(self, url, data=None, **kwargs):
        self.forms.append(data)
        return super().post(url, data=data, **kwargs)


@pytest.mark.parametrize("variant", ["thumbprint (RS256, x5t)", "public certificate (PS256, x5t#S256)"])
def test_msal_certificate_credentials(sim, client, variant):
    pem = open(sim.client_certificate_path).read()
    cert = x509.load_pem_x509_certificate(pem.encode())
    credential = {"private_key": pem}
    if variant.startswith("thumbprint"):
        credential["thumbprint"] = cert.fingerprint(hashes.SHA1()).hex()  # noqa: S303
    else:
        credential["public_certificate"] = pem
    session = RecordingSession(sim.ca_bundle)
    app = msal.ConfidentialClientApplication(
        sim.client_id, authority=f"{sim.login_url}/{TENANT}", client_credential=credential,
        instance_discovery=False, http_client=session,
    )
    result = app.acquire_token_for_client(scopes=[f"{sim.api_url}/.default"])
    assert "access_token" in result, result
    assertion_header = jwt.get_unverified_header(session.forms[-1]["client_assertion"])
    if variant.startswith("thumbprint"):
        assert assertion_header["alg"] == "RS256" and "x5t" in assertion_header
    else:
        assert assertion_header["alg"] == "PS256" and "x5t#S256" in assertion_header
    assert graph(sim, client, result["access_token"], "/beta/deviceManagement/roleScopeTags").status_code == 200


def test_token_errors_are_aadsts_bodies(sim, client):
    assert_aad_error(get_token(sim, client, client_secret="not-the-secret"), 401, 7000215, "invalid_client")
    assert_aad_error(get_token(sim, client, tenant=str(uuid.uuid4())), 400, 90002, "invalid_request")
    unknown = client.get(f"{sim.login_url}/{uuid.uuid4()}/v2.0/.well-known/openid-configuration")
    assert_aad_error(unknown, 400, 90002, "invalid_tenant")
    assert_aad_error(get_token(sim, client, client_id=str(uuid.uuid4())), 400, 700016, "unauthorized_client")
    assert_aad_error(get_token(sim, client, scope="https://graph.microsoft.com/.default"), 400, 500011, "invalid_resource")
    assert_aad_error(get_token(sim, client, scope=f"{sim.api_url}/Group.Read.All"), 400, 1002012, "invalid_scope")
    assert_aad_error(get_token(sim, client, grant_type="password"), 400, 70003, "unsupported_grant_type")
    assert_aad_error(get_token(sim, client, client_secret=""), 401, 7000218, "invalid_client")


def _assertion(sim, key, cert, **claims):
    now = int(time.time())
    x5t = jwt.utils.base64url_encode(cert.fingerprint(hashes.SHA1())).decode()  # noqa: S303
    payload = {"aud": f"{sim.login_url}/{TENANT}/oauth2/v2.0/token", "iss": sim.client_id, "sub": sim.client_id,
               "jti": str(uuid.uuid4()), "nbf": now, "exp": now + 600, **claims}
    return jwt.encode(payload, key, algorithm="RS256", headers={"x5t": x5t})


def test_client_assertions_are_verified(sim, client):
    pem = open(sim.client_certificate_path, "rb").read()
    key = serialization.load_pem_private_key(pem, password=None)
    cert = x509.load_pem_x509_certificate(pem)

    def post(assertion):
        form = {"grant_type": "client_credentials", "client_id": sim.client_id, "scope": f"{sim.api_url}/.default",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion}
        return client.post(f"{sim.login_url}/{TENANT}/oauth2/v2.0/token", data=form)

    assert post(_assertion(sim, key, cert)).status_code == 200
    old = int(time.time()) - 7200
    assert_aad_error(post(_assertion(sim, key, cert, nbf=old, exp=old + 600)), 401, 700024, "invalid_client")
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert_aad_error(post(_assertion(sim, stranger, cert)), 401, 700027, "invalid_client")  # right x5t, wrong key
    assert_aad_error(post(_assertion(sim, key, cert, iss="someone-else")), 401, 700021, "invalid_client")


def test_consent_revoked_and_roles_claim(fresh, client):
    sim = fresh
    other = sim.add_tenant(str(uuid.uuid4()), name="Fabrikam Legal")
    assert get_token(sim, client, tenant=other).status_code == 200
    sim.revoke_consent(other)
    body = assert_aad_error(get_token(sim, client, tenant=other), 400, 700016, "unauthorized_client")
    assert other in body["error_description"]
    sim.grant_consent(other)

    sim.set_roles(other, ["Group.Read.All"])
    limited = get_token(sim, client, tenant=other).json()["access_token"]
    assert jwt.decode(limited, options={"verify_signature": False})["roles"] == ["Group.Read.All"]
    error = assert_graph_error(graph(sim, client, limited, "/beta/deviceManagement/configurationPolicies"), 403,
                               "Authorization_RequestDenied")
    assert "DeviceManagementConfiguration.Read.All" in error["message"]
    assert graph(sim, client, limited, "/v1.0/groups/delta").status_code == 200


def _consent_url(sim, tenant, state="st-1"):
    return (f"{sim.login_url}/{tenant}/v2.0/adminconsent?client_id={sim.client_id}"
            f"&scope={sim.api_url}/.default&redirect_uri=https://atlas.example/consent/callback&state={state}")


def test_admin_consent_accept_deny_and_prompt(fresh, client):
    sim = fresh
    tenant = sim.add_tenant(str(uuid.uuid4()), name="Northwind Retail", consented=False)
    assert_aad_error(get_token(sim, client, tenant=tenant), 400, 700016, "unauthorized_client")

    sim.set_consent_mode("deny")
    denied = client.get(_consent_url(sim, tenant))
    assert denied.status_code == 302
    query = parse_qs(urlsplit(denied.headers["Location"]).query)
    assert query["error"] == ["access_denied"] and query["state"] == ["st-1"]
    assert query["error_description"][0].startswith("AADSTS65004:")
    assert not sim.is_consented(tenant)

    sim.set_consent_mode("accept")
    accepted = client.get(_consent_url(sim, tenant, state="st-2"))
    location = urlsplit(accepted.headers["Location"])
    assert accepted.status_code == 302 and location.netloc == "atlas.example"
    assert parse_qs(location.query) == {"admin_consent": ["True"], "tenant": [tenant],
                                        "scope": [f"{sim.api_url}/.default"], "state": ["st-2"]}
    assert get_token(sim, client, tenant=tenant).status_code == 200

    sim.revoke_consent(tenant)
    sim.set_consent_mode("prompt")
    page = client.get(_consent_url(sim, tenant, state="st-3"))
    assert page.status_code == 200 and "Accept" in page.text and "Cancel" in page.text
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
    fields = {key: html.unescape(value) for key, value in fields.items()}
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
    decided = client.post(f"{sim.login_url}{action}", data={**fields, "decision": "accept"})
    assert decided.status_code == 302
    assert parse_qs(urlsplit(decided.headers["Location"]).query)["admin_consent"] == ["True"]
    assert sim.is_consented(tenant)
    replayed = client.post(f"{sim.login_url}{action}", data={**fields, "decision": "accept"})
    assert replayed.status_code == 400  # a consent page is answered once

    wrong_app = client.get(_consent_url(sim, tenant).replace(sim.client_id, str(uuid.uuid4())))
    assert wrong_app.status_code == 400 and "AADSTS700016" in wrong_app.text


GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
CALLBACK = "https://atlas.example/auth/callback"


def _signin_app(sim, tenant=TENANT):
    return msal.ConfidentialClientApplication(
        sim.client_id, authority=f"{sim.login_url}/{tenant}", client_credential=sim.client_secret,
        instance_discovery=False, http_client=RecordingSession(sim.ca_bundle),
    )


def _sign_in(sim, client, tenant=TENANT, state="s-1"):
    """msal's auth code flow up to the redirect back: (app, flow, the redirect's query as a dict)."""
    app = _signin_app(sim, tenant)
    flow = app.initiate_auth_code_flow(scopes=[], redirect_uri=CALLBACK, state=state)
    answer = client.get(flow["auth_uri"])
    if answer.status_code == 200:  # prompt mode: the sign-in page
        action = re.search(r'<form method="post" action="([^"]+)"', answer.text).group(1)
        ticket = re.search(r'<input type="hidden" name="ticket" value="([^"]*)">', answer.text).group(1)
        answer = client.post(f"{sim.login_url}{action}", data={"ticket": html.unescape(ticket), "decision": "continue"})
    assert answer.status_code == 302, answer.text
    location = urlsplit(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == CALLBACK
    return app, flow, {key: values[0] for key, values in parse_qs(location.query).items()}


def test_oidc_sign_in_with_msal(fresh, client):
    sim = fresh
    discovery = client.get(f"{sim.login_url}/{TENANT}/v2.0/.well-known/openid-configuration").json()
    assert discovery["authorization_endpoint"] == f"{sim.login_url}/{TENANT}/oauth2/v2.0/authorize"
    page = client.get(_sign_in_url(sim))
    assert page.status_code == 200
    assert f"Sign in to <strong>Contoso Pharma</strong> as <strong>admin@" in page.text
    assert "Global Administrator" in page.text and "Continue" in page.text and "Cancel" in page.text

    app, flow, query = _sign_in(sim, client)
    assert query["state"] == "s-1" and query["code"]
    result = app.acquire_token_by_auth_code_flow(flow, query)
    assert "id_token" in result, result
    claims = result["id_token_claims"]
    user = sim.signin_user(TENANT)
    assert claims["tid"] == TENANT and claims["aud"] == sim.client_id and claims["ver"] == "2.0"
    assert claims["iss"] == f"{sim.login_url}/{TENANT}/v2.0" == discovery["issuer"]
    assert claims["wids"] == [GLOBAL_ADMINISTRATOR, MEMBER_USER_ROLE] and claims["oid"] == user["object_id"]
    assert claims["preferred_username"] == user["username"] and user["username"].startswith("admin@")
    assert claims["nonce"] == hashlib.sha256(flow["nonce"].encode()).hexdigest()  # msal sends the nonce's hash
    keys = client.get(discovery["jwks_uri"]).json()["keys"]
    header = jwt.get_unverified_header(result["id_token"])
    key = next(item for item in keys if item["kid"] == header["kid"])
    verified = jwt.decode(result["id_token"], jwt.PyJWK(key).key, algorithms=["RS256"], audience=sim.client_id,
                          issuer=discovery["issuer"])
    assert verified["exp"] > time.time() and verified["sub"] != verified["oid"]
    assert result["token_type"] == "Bearer" and result["access_token"]

    replayed = client.post(f"{sim.login_url}/{TENANT}/oauth2/v2.0/token", data={
        "grant_type": "authorization_code", "client_id": sim.client_id, "client_secret": sim.client_secret,
        "code": query["code"], "redirect_uri": CALLBACK, "code_verifier": flow["code_verifier"]})
    assert_aad_error(replayed, 400, 54005, "invalid_grant")
    again = app.acquire_token_by_auth_code_flow(flow, query)
    assert again.get("error") == "invalid_grant" and again["error_codes"] == [54005]


def _sign_in_url(sim, tenant=TENANT, **overrides):
    params = {"client_id": sim.client_id, "response_type": "code", "redirect_uri": CALLBACK,
              "scope": "openid profile", "state": "st", "nonce": "n-1",
              "code_challenge": jwt.utils.base64url_encode(hashlib.sha256(b"v" * 50).digest()).decode(),
              "code_challenge_method": "S256", **overrides}
    return f"{sim.login_url}/{tenant}/oauth2/v2.0/authorize?" + urlencode({k: v for k, v in params.items() if v is not None})


def _redeem(sim, client, code, verifier="v" * 50, redirect_uri=CALLBACK, **extra):
    return client.post(f"{sim.login_url}/{TENANT}/oauth2/v2.0/token", data={
        "grant_type": "authorization_code", "client_id": sim.client_id, "client_secret": sim.client_secret,
        "code": code, "redirect_uri": redirect_uri, "code_verifier": verifier, "scope": "openid profile", **extra})


def test_oidc_code_is_bound_and_checked(fresh, client):
    sim = fresh
    sim.set_consent_mode("accept")

    def code(**overrides):
        answer = client.get(_sign_in_url(sim, **overrides))
        assert answer.status_code == 302, answer.text
        return parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]

    issued = code()
    assert_aad_error(_redeem(sim, client, issued, verifier="w" * 50), 400, 501481, "invalid_grant")
    assert_aad_error(_redeem(sim, client, issued, redirect_uri="https://atlas.example/other"), 400, 50011, "invalid_grant")
    assert_aad_error(_redeem(sim, client, issued, client_secret="wrong"), 401, 7000215, "invalid_client")
    good = _redeem(sim, client, issued)  # failed attempts do not use the code up (as in Entra)
    assert good.status_code == 200, good.text
    body = good.json()
    assert set(body) >= {"token_type", "scope", "expires_in", "id_token", "access_token"} and body["expires_in"] == 3599
    assert jwt.decode(body["id_token"], options={"verify_signature": False})["nonce"] == "n-1"
    assert_aad_error(_redeem(sim, client, issued), 400, 54005, "invalid_grant")
    assert_aad_error(_redeem(sim, client, "1.forged"), 400, 70000, "invalid_grant")

    sim.auth_code_lifetime, lifetime = 0, sim.auth_code_lifetime
    try:
        assert_aad_error(_redeem(sim, client, code()), 400, 70008, "invalid_grant")
    finally:
        sim.auth_code_lifetime = lifetime

    def error_of(**overrides):
        answer = client.get(_sign_in_url(sim, **overrides))
        assert answer.status_code == 302, answer.text
        query = parse_qs(urlsplit(answer.headers["Location"]).query)
        assert query["state"] == ["st"]
        return query["error"][0], query["error_description"][0].split(":")[0]

    posted = client.get(_sign_in_url(sim, response_mode="form_post"))
    assert posted.status_code == 200 and f'action="{CALLBACK}"' in posted.text and 'name="code"' in posted.text
    assert error_of(scope="profile") == ("invalid_scope", "AADSTS70011")
    assert error_of(code_challenge=None) == ("invalid_request", "AADSTS50147")
    assert error_of(code_challenge_method="plain") == ("invalid_request", "AADSTS501491")
    assert error_of(response_type="token") == ("unsupported_response_type", "AADSTS70005")
    assert client.get(_sign_in_url(sim, redirect_uri="ftp://x")).status_code == 400
    assert "AADSTS700016" in client.get(_sign_in_url(sim, client_id=str(uuid.uuid4()))).text
    assert "AADSTS90002" in client.get(_sign_in_url(sim, tenant=str(uuid.uuid4()))).text


def test_oidc_deny_and_an_ordinary_user(fresh, client, capsys):
    sim = fresh
    sim.set_consent_mode("deny")
    app = _signin_app(sim)
    flow = app.initiate_auth_code_flow(scopes=[], redirect_uri=CALLBACK, state="s-2")
    denied = client.get(flow["auth_uri"])
    query = parse_qs(urlsplit(denied.headers["Location"]).query)
    assert denied.status_code == 302 and query["error"] == ["access_denied"] and query["state"] == ["s-2"]
    assert query["error_description"][0].startswith("AADSTS65004:")

    sim.set_consent_mode("prompt")
    page = client.get(flow["auth_uri"])
    ticket = re.search(r'name="ticket" value="([^"]*)"', page.text).group(1)
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
    cancelled = client.post(f"{sim.login_url}{action}", data={"ticket": html.unescape(ticket), "decision": "cancel"})
    assert parse_qs(urlsplit(cancelled.headers["Location"]).query)["error"] == ["access_denied"]
    assert client.post(f"{sim.login_url}{action}", data={"ticket": ticket, "decision": "continue"}).status_code == 400

    other = sim.add_tenant(str(uuid.uuid4()), name="Tailspin Toys")
    user = sim.set_signin_user(other, username="megan", roles=())
    assert user["username"].startswith("megan@") and user["roles"] == []
    sim.set_consent_mode("accept")
    app, flow, query = _sign_in(sim, client, tenant=other)
    claims = app.acquire_token_by_auth_code_flow(flow, query)["id_token_claims"]
    assert claims["tid"] == other and claims["wids"] == [MEMBER_USER_ROLE]  # a member, no directory role
    assert claims["preferred_username"] == user["username"]

    reader = "f2ef992c-3afb-46b9-b7cf-a126ee74c451"
    assert cli_main(["set-signin-user", "--api-url", sim.api_url, "--ca", sim.ca_bundle, "--tenant", other,
                     "--role", reader]) == 0
    assert json.loads(capsys.readouterr().out)["roles"] == [reader]
    app, flow, query = _sign_in(sim, client, tenant=other)
    assert app.acquire_token_by_auth_code_flow(flow, query)["id_token_claims"]["wids"] == [reader, MEMBER_USER_ROLE]
    with pytest.raises(ValueError):
        sim.set_signin_user(other, roles=("Global Administrator",))


# --- Graph -------------------------------------------------------------------------------------


def test_every_family_is_served_from_the_table(sim, client, token):
    for item in FAMILIES:
        response = graph(sim, client, token, item.list_url_path)
        assert response.status_code == 200, (item.key, response.text)
        body = response.json()
        assert body["@odata.context"].startswith(f"{sim.api_url}/{item.api_version}/$metadata#")
        objects = sim.objects(TENANT, item.key)
        assert objects, item.key
        first = objects[0]
        assert item.name_key in first
        for relation in item.per_object:
            related = graph(sim, client, token, f"{item.list_url_path}/{first['id']}/{relation}")
            assert related.status_code == 200 and related.json()["value"] == first[relation][:PAGE_SIZE]
    other_version = "v1.0" if family("settingsCatalog").api_version == "beta" else "beta"
    assert_graph_error(graph(sim, client, token, f"/{other_version}{family('settingsCatalog').list_path}"), 400)


def test_paging_follows_next_links(sim, client, token):
    path = family("deviceConfigurations").list_url_path
    expected = [item["id"] for item in sim.objects(TENANT, "deviceConfigurations")]
    assert len(expected) > 2 * 2
    seen, url, pages = [], f"{path}?$top=2", 0
    while url:
        body = graph(sim, client, token, url).json()
        assert len(body["value"]) <= 2
        seen += [item["id"] for item in body["value"]]
        url = body.get("@odata.nextLink")
        if url:
            assert url.startswith(f"{sim.api_url}/beta/deviceManagement/deviceConfigurations?") and "$top=2" in url
        pages += 1
    assert seen == expected and pages == -(-len(expected) // 2)
    capped = graph(sim, client, token, f"{path}?$top=500").json()
    assert len(capped["value"]) == PAGE_SIZE  # $top is honoured up to the page size
    assert_graph_error(graph(sim, client, token, f"{path}?$top=zero"), 400, "BadRequest")
    assert_graph_error(graph(sim, client, token, f"{path}?$skiptoken=forged"), 400, "BadRequest")


def test_shapes_by_id_and_relations(sim, client, token):
    policy = sim.objects(TENANT, "settingsCatalog")[0]
    by_id = graph(sim, client, token, f"/beta/deviceManagement/configurationPolicies/{policy['id']}").json()
    assert by_id["name"] == policy["name"] and "displayName" not in by_id
    for key in ("platforms", "technologies", "templateReference", "roleScopeTagIds", "settingCount"):
        assert key in by_id
    settings = policy["settings"]
    assert settings[0]["settingInstance"]["@odata.type"].startswith("#microsoft.graph.deviceManagementConfiguration")
    protection = sim.objects(TENANT, "iosAppProtection")[0]
    assert protection["id"].startswith("T_") and re.fullmatch(r'"[^"]+"', protection["version"])
    targets = {entry["target"]["@odata.type"] for item in sim.objects(TENANT, "deviceConfigurations")
               for entry in item["assignments"]}
    assert "#microsoft.graph.groupAssignmentTarget" in targets and "#microsoft.graph.allDevicesAssignmentTarget" in targets
    assert_graph_error(graph(sim, client, token, "/beta/deviceManagement/configurationPolicies/nope"), 404)


def test_change_object_is_visible_in_the_next_read(sim, client, token):
    policy = sim.objects(TENANT, "settingsCatalog")[0]
    instance = policy["settings"][0]["settingInstance"]
    definition = instance["settingDefinitionId"]
    changed = sim.change_object(TENANT, "settingsCatalog", policy["id"], {definition: "disabled"})
    assert changed["lastModifiedDateTime"] > policy["lastModifiedDateTime"]
    settings = graph(sim, client, token, f"/beta/deviceManagement/configurationPolicies/{policy['id']}/settings").json()
    assert settings["value"][0]["settingInstance"]["choiceSettingValue"]["value"] == f"{definition}_disabled"

    device = sim.objects(TENANT, "deviceConfigurations")[0]
    nested = next(key for key, value in device.items() if isinstance(value, dict) and key != "assignments")
    inner_key = next(iter(device[nested]))
    sim.change_object(TENANT, "deviceConfigurations", device["id"], {f"{nested}.{inner_key}": "changed", "description": "x"})
    read = graph(sim, client, token, f"/beta/deviceManagement/deviceConfigurations/{device['id']}").json()
    assert read[nested][inner_key] == "changed" and read["description"] == "x"
    assert read["version"] == device["version"] + 1


def test_batch_answers_match_by_id_in_any_order(fresh, client, token):
    sim = fresh
    ids = [item["id"] for item in sim.objects(TENANT, "deviceConfigurations")]
    inner = [{"id": str(number), "method": "GET", "url": f"/deviceManagement/deviceConfigurations/{ids[number % len(ids)]}/assignments"}
             for number in range(20)]
    response = batch(sim, client, token, inner)
    assert response.status_code == 200
    answers = response.json()["responses"]
    assert sorted(answer["id"] for answer in answers) == sorted(item["id"] for item in inner)
    assert [answer["id"] for answer in answers] != [item["id"] for item in inner]
    assert all(answer["status"] == 200 for answer in answers)
    assert sum(record.in_batch for record in sim.requests) == 20

    versioned = batch(sim, client, token, [{"id": "1", "method": "GET", "url": "/beta/deviceManagement/roleScopeTags"}])
    assert versioned.json()["responses"][0]["status"] == 400  # urls are relative to the version root
    assert_graph_error(batch(sim, client, token, inner + [{"id": "20", "method": "GET", "url": "/groups/delta"}]), 400)
    assert_graph_error(batch(sim, client, token, inner[:2] + [dict(inner[0])]), 400)
    garbage = client.post(f"{sim.api_url}/beta/$batch", content=b"{not json", headers={"Authorization": f"Bearer {token}"})
    assert_graph_error(garbage, 400, "BadRequest")


def test_a_throttled_request_inside_a_batch(fresh, client, token):
    sim = fresh
    ids = [item["id"] for item in sim.objects(TENANT, "settingsCatalog")][:3]
    sim.inject("batch-inner-429", path_contains=f"{ids[1]}/settings", retry_after=7)
    sim.inject("batch-inner-500", path_contains=f"{ids[2]}/settings")
    response = batch(sim, client, token, [
        {"id": f"s{number}", "method": "GET", "url": f"/deviceManagement/configurationPolicies/{policy_id}/settings"}
        for number, policy_id in enumerate(ids)
    ])
    assert response.status_code == 200
    by_id = {answer["id"]: answer for answer in response.json()["responses"]}
    assert by_id["s0"]["status"] == 200
    assert by_id["s1"]["status"] == 429 and by_id["s1"]["headers"]["Retry-After"] == "7"
    assert by_id["s1"]["body"]["error"]["code"] == "TooManyRequests"
    assert by_id["s2"]["status"] == 500


def test_groups_delta_rounds_and_expiry(fresh, client, token):
    sim = fresh
    path = family("groups").list_url_path
    names, url = [], path
    while True:
        body = graph(sim, client, token, url).json()
        names += [item["displayName"] for item in body["value"]]
        if "@odata.deltaLink" in body:
            delta_link = body["@odata.deltaLink"]
            break
        url = body["@odata.nextLink"]
    assert sorted(names) == sorted(item["displayName"] for item in sim.objects(TENANT, "groups"))

    groups = sim.objects(TENANT, "groups")
    sim.change_object(TENANT, "groups", groups[0]["id"], {"displayName": "All Staff (renamed)"})
    sim.delete_object(TENANT, "groups", groups[1]["id"])
    added = sim.add_object(TENANT, "groups", {"displayName": "SG-New", "groupTypes": [], "securityEnabled": True})
    second = graph(sim, client, token, delta_link).json()
    changes = {item["id"]: item for item in second["value"]}
    assert set(changes) == {groups[0]["id"], groups[1]["id"], added}
    assert changes[groups[0]["id"]]["displayName"] == "All Staff (renamed)"
    assert changes[groups[1]["id"]]["@removed"] == {"reason": "changed"}
    third = graph(sim, client, token, second["@odata.deltaLink"]).json()
    assert third["value"] == []

    sim.inject("delta-expired")
    gone = graph(sim, client, token, third["@odata.deltaLink"])
    assert_graph_error(gone, 410, "syncStateNotFound")
    restart = gone.headers["Location"]
    assert restart == f"{sim.api_url}{path}"
    assert graph(sim, client, token, restart).status_code == 200
    sim.delta_token_lifetime, lifetime = 0, sim.delta_token_lifetime
    try:
        time.sleep(0.01)
        assert graph(sim, client, token, third["@odata.deltaLink"]).status_code == 410
    finally:
        sim.delta_token_lifetime = lifetime


def test_faults(fresh, client, token):
    sim = fresh
    path = "/beta/deviceManagement/assignmentFilters"
    assert set(FAULTS) >= {"429", "429-http-date", "429-no-retry-after", "503", "504", "batch-inner-429",
                           "batch-inner-500", "malformed-page", "foreign-next-link", "delta-expired", "consent-revoked"}
    sim.inject("429", retry_after=3)
    throttled = graph(sim, client, token, path)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "3"
    sim.inject("429-http-date")
    dated = graph(sim, client, token, path)
    assert dated.status_code == 429 and email.utils.parsedate_to_datetime(dated.headers["Retry-After"])
    sim.inject("429-no-retry-after")
    bare = graph(sim, client, token, path)
    assert bare.status_code == 429 and "Retry-After" not in bare.headers
    for status in ("503", "504"):
        sim.inject(status, tenant_id=TENANT, path_contains="assignmentFilters")
        assert graph(sim, client, token, path).status_code == int(status)
    sim.inject("malformed-page")
    broken = graph(sim, client, token, path)
    assert broken.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken.text)
    sim.inject("foreign-next-link")
    foreign = graph(sim, client, token, path).json()["@odata.nextLink"]
    assert urlsplit(foreign).netloc != urlsplit(sim.api_url).netloc
    sim.inject("consent-revoked", tenant_id=TENANT)
    assert_aad_error(get_token(sim, client), 400, 700016, "unauthorized_client")
    assert get_token(sim, client).status_code == 200
    assert graph(sim, client, token, path).status_code == 200  # all used up
    sim.inject("429", path_contains="nothing-matches")
    assert graph(sim, client, token, path).status_code == 200


def test_request_log_and_headers(fresh, client, token):
    sim = fresh
    response = graph(sim, client, token, "/beta/deviceManagement/roleScopeTags",
                     headers={"client-request-id": "my-request-1", "x-ms-throttle-priority": "low"})
    assert response.headers["client-request-id"] == "my-request-1" and response.headers["request-id"]
    record = sim.requests[-1]
    assert (record.method, record.path, record.tenant_id, record.status) == ("GET", "/beta/deviceManagement/roleScopeTags", TENANT, 200)
    assert record.client_request_id == "my-request-1" and record.throttle_priority == "low" and not record.in_batch
    assert record["path"] == record.path
    sim.reset_log()
    assert sim.requests == []


def test_malformed_requests_get_graph_errors(sim, client, token):
    path = "/beta/deviceManagement/roleScopeTags"
    assert_graph_error(graph(sim, client, "not.a.token", path), 401, "InvalidAuthenticationToken")
    assert_graph_error(client.get(f"{sim.api_url}{path}"), 401, "InvalidAuthenticationToken")
    assert_graph_error(graph(sim, client, token, f"{path}?$bogus=1"), 400, "BadRequest")
    assert_graph_error(graph(sim, client, token, f"{path}?$filter=startswith(displayName,'x')"), 501, "NotImplemented")
    assert_graph_error(graph(sim, client, token, "/v2.0/groups"), 400)
    deleted = client.delete(f"{sim.api_url}{path}/0", headers={"Authorization": f"Bearer {token}"})
    assert_graph_error(deleted, 405)
    assert_graph_error(graph(sim, client, token, "/v1.0/groups/delta?$deltatoken=%%%"), 400)


def test_throttling_latency_and_demo_tenants(state_dir, client):
    limits = ThrottleLimits(requests=4, window_seconds=2.0)
    with Simulator.start(state_dir, throttle=limits, latency_ms=40, demo_tenants=True) as other:
        assert len(other.tenant_ids()) == 60
        tenant = str(tenant_external_id(1))
        started = time.monotonic()
        token = get_token(other, client, tenant=tenant).json()["access_token"]
        assert time.monotonic() - started >= 0.04
        ids = [item["id"] for item in other.objects(tenant, "settingsCatalog")]
        answers = batch(other, client, token, [
            {"id": str(number), "method": "GET", "url": f"/deviceManagement/configurationPolicies/{ids[number]}"}
            for number in range(3)
        ]).json()["responses"]
        assert all(answer["status"] == 200 for answer in answers)  # three of the four
        assert graph(other, client, token, "/v1.0/groups/delta").status_code == 200
        throttled = graph(other, client, token, "/v1.0/groups/delta")
        assert_graph_error(throttled, 429, "TooManyRequests")
        wait = int(throttled.headers["Retry-After"])
        assert 1 <= wait <= 2  # whole seconds until the oldest request leaves the 2-second window
        time.sleep(wait)
        assert graph(other, client, token, "/v1.0/groups/delta").status_code == 200

        # The seed's own plan: ids, names, and granted permissions of demo tenant 1.
        assert other.tenants()[0]["name"] == demo_tenant_name(1)
        expected_ids = {stable_guid(1, "policy", number) for number in range(1, 24 + 7 % 25 + 1)}
        assert set(ids) <= expected_ids
        groups = {item["id"] for item in other.objects(tenant, "groups")}
        assert groups == {stable_guid(1, "group", number) for number in range(1, 10 + 1 % 5 + 1)}


def test_control_api_and_cli(sim, client, capsys):
    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and not _is_loopback("192.0.2.7")
    tenants = client.get(f"{sim.api_url}/_simulator/tenants").json()["value"]
    assert TENANT in [tenant["tenant_id"] for tenant in tenants]
    filter_id = sim.objects(TENANT, "assignmentFilters")[0]["id"]
    code = cli_main(["change-object", "--api-url", sim.api_url, "--ca", sim.ca_bundle, "--tenant", TENANT,
                     "--family", "assignmentFilters", "--id", filter_id, "--set", "rule=(device.model -eq \"X\")",
                     "--set", "description=from the CLI"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["description"] == "from the CLI"
    assert sim.objects(TENANT, "assignmentFilters")[0]["rule"] == '(device.model -eq "X")'
    missing = client.patch(f"{sim.api_url}/_simulator/tenants/{TENANT}/objects/nope/1", json={"a": 1})
    assert missing.status_code == 404


def test_demo_fixtures_are_the_seed_catalogs():
    assert load_fixture("policy_templates") is load_fixture("policy_templates")  # parsed once
    assert POLICY_TEMPLATES == tuple(load_fixture("policy_templates"))
    assert demo_tenant_name(1) == "Contoso Pharma" and demo_tenant_name(401).endswith("Nordics")
