"""Every way to sign in, in headless Chromium: password, password + authenticator code, a recovery code,
a passkey (Chrome DevTools Protocol virtual authenticator), Microsoft (the simulator's identity platform),
and an invitation. Screenshots at desktop and phone widths go to test-artifacts/identity-*.png.

The app is served on http://localhost:<port>: WebAuthn needs a domain (not an IP) as its RP id.
"""
from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone

import pyotp
import pytest

from app.extensions import db
from app.models import User, Workspace, WorkspaceMembership
from app.web.account.oidc import OidcSettings
from app.passwords import hash_password
from tests.browser_support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, LiveServer
from tests.conftest import TEST_PASSWORD, make_test_app, migrated_database
from tests.graph_support import graph_simulator, settings_for  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
STAFF_TENANT = str(uuid.uuid4())


@pytest.fixture(scope="module")
def identity_app(pg_cluster, graph_simulator):  # noqa: F811
    """Grace owns Atlas; Ada (linked to the staff tenant's Microsoft account) and Tom are members."""
    graph_simulator.add_tenant(STAFF_TENANT, name="Atlas MSP Staff")
    person = graph_simulator.set_signin_user(STAFF_TENANT, username="ada.lovelace", roles=[], name="Ada Lovelace")
    app, _owner_url, app_url = migrated_database(pg_cluster, "tenantatlas_identity_browser")
    with app.app_context():
        atlas = Workspace(slug="atlas-msp", name="Atlas Managed Services")
        grace = User(email="grace@example.test", name="Grace Hopper", password_hash=hash_password(TEST_PASSWORD))
        tom = User(email="tom@example.test", name="Tom Keller", password_hash=hash_password(TEST_PASSWORD))
        ada = User(email=person["username"].lower(), name="Ada Lovelace", password_hash="!",
                   entra_tenant_id=uuid.UUID(STAFF_TENANT), entra_object_id=uuid.UUID(person["object_id"]))
        db.session.add_all([atlas, grace, tom, ada])
        db.session.flush()
        db.session.add_all([WorkspaceMembership(workspace_id=atlas.id, user_id=grace.id, role="owner"),
                            WorkspaceMembership(workspace_id=atlas.id, user_id=tom.id, role="readonly"),
                            WorkspaceMembership(workspace_id=atlas.id, user_id=ada.id, role="manager")])
        db.session.commit()
        db.engine.dispose()
    return make_test_app(app_url, GRAPH_SETTINGS=settings_for(graph_simulator),
                         OIDC_SETTINGS=OidcSettings(tenant_id=STAFF_TENANT, client_id=graph_simulator.client_id,
                                                    client_secret=graph_simulator.client_secret))


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS + ["--headless"])
        yield browser
        browser.close()


@pytest.fixture
def server(identity_app):
    with LiveServer(identity_app) as live:
        live.url = live.url.replace("127.0.0.1", "localhost")
        yield live


def new_page(browser, viewport=DESKTOP):
    # The simulator's certificate comes from its own CA, which this browser does not know.
    context = browser.new_context(viewport=viewport, ignore_https_errors=True)
    return context.new_page()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        page.screenshot(path=str(ARTIFACTS / f"identity-{name}.png"), full_page=True)
    except playwright_api.Error:  # headless Chromium now and then cannot capture at once
        page.wait_for_timeout(200)
        page.screenshot(path=str(ARTIFACTS / f"identity-{name}.png"), full_page=True)


def both_widths(browser, server, path: str, name: str, ready=None):
    """The same page at desktop and phone width, screenshotted."""
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page = new_page(browser, viewport)
        page.goto(server.url + path)
        if ready:
            ready(page)
        shot(page, f"{name}-{label}")
        page.context.close()


def password_step(page, server, email):
    page.goto(server.url + "/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", TEST_PASSWORD)
    page.click("form button:has-text('Sign in')")


def sign_out(page):
    page.click(".user-menu")
    page.click("text=Sign out")
    page.wait_for_url(re.compile(r".*/login$"))


def test_sign_in_page_offers_every_way_in(browser, server):
    both_widths(browser, server, "/login", "01-sign-in",
                ready=lambda page: expect(page.locator(".microsoft-sign-in")).to_be_visible())
    page = new_page(browser)
    page.goto(server.url + "/login")
    expect(page.locator(".passkey-button")).to_have_text(re.compile("Sign in with a passkey"))
    expect(page.locator(".microsoft-sign-in")).to_have_text(re.compile("Sign in with Microsoft"))
    page.context.close()


def test_password_then_authenticator_code_then_recovery_code(browser, server):
    page = new_page(browser)
    password_step(page, server, "tom@example.test")
    page.wait_for_url(re.compile(r".*/admin/workspaces$"))
    page.goto(server.url + "/admin/account/security")
    page.click("text=Set up an authenticator app")
    expect(page.locator("img.totp-qr")).to_be_visible()
    shot(page, "02-enrol-authenticator-desktop")
    secret = page.locator(".totp-secret").inner_text()
    totp = pyotp.TOTP(secret)
    step = totp.timecode(datetime.now(timezone.utc))
    page.fill("input[name=code]", totp.generate_otp(step))
    page.click("main form button:has-text('Turn on')")
    codes = page.locator(".recovery-codes li").all_inner_texts()
    assert len(codes) == 10
    shot(page, "03-recovery-codes-desktop")
    sign_out(page)

    password_step(page, server, "tom@example.test")
    page.wait_for_url(re.compile(r".*/login/verify$"))
    expect(page.locator("h1")).to_have_text("Confirm it is you")
    page.fill("input[name=code]", totp.generate_otp(step))  # used at enrolment: refused
    page.click("form button:has-text('Verify')")
    expect(page.locator(".alert-danger")).to_contain_text("This code was used already")
    shot(page, "04-code-replayed-desktop")
    page.fill("input[name=code]", totp.generate_otp(step + 1))
    page.click("form button:has-text('Verify')")
    page.wait_for_url(re.compile(r".*/admin/w/atlas-msp/managed-tenants$|.*/admin/workspaces$"))
    sign_out(page)

    password_step(page, server, "tom@example.test")
    page.wait_for_url(re.compile(r".*/login/verify$"))
    page.click("text=Lost your device? Use a recovery code")
    page.fill("input[name=recovery_code]", codes[0])
    page.click("text=Sign in with a recovery code")
    page.wait_for_url(re.compile(r".*/admin/account/security$"))
    expect(page.locator(".alert-warning")).to_contain_text("You signed in with a recovery code; 9 left")
    shot(page, "05-signed-in-with-recovery-code-desktop")
    page.context.close()
    both_widths(browser, server, "/login", "06-sign-in-again")


def test_passkey_registration_and_sign_in_with_a_virtual_authenticator(browser, server):
    page = new_page(browser)
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    authenticator = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True}})["authenticatorId"]
    password_step(page, server, "grace@example.test")
    page.wait_for_url(re.compile(r".*/admin/.*"))
    page.goto(server.url + "/admin/account/security")
    page.wait_for_function("document.documentElement.dataset.passkeysReady === '1'")
    page.fill("#passkey-name", "Grace's laptop")
    page.click("text=Add a passkey")
    expect(page.locator(".alert-success")).to_contain_text("Passkey “Grace's laptop” added")
    expect(page.locator(".passkey-list")).to_contain_text("Grace's laptop")
    shot(page, "07-passkey-added-desktop")
    [stored] = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert stored["isResidentCredential"] and stored["rpId"] == "localhost"  # a discoverable passkey for this site
    sign_out(page)

    # Without a password: the discoverable passkey names its account.
    page.wait_for_function("document.documentElement.dataset.passkeysReady === '1'")
    page.click("text=Sign in with a passkey")
    page.wait_for_url(re.compile(r".*/admin/.*"))
    expect(page.locator(".user-menu")).to_contain_text("Grace Hopper")
    sign_out(page)

    # After a password, the passkey is the second factor.
    password_step(page, server, "grace@example.test")
    page.wait_for_url(re.compile(r".*/login/verify$"))
    page.wait_for_function("document.documentElement.dataset.passkeysReady === '1'")
    shot(page, "08-verify-with-passkey-desktop")
    page.click("text=Use your passkey")
    page.wait_for_url(re.compile(r".*/admin/.*"))
    page.goto(server.url + "/admin/account/sessions")
    expect(page.locator(".user-sessions")).to_contain_text("password+passkey")
    shot(page, "09-sessions-desktop")
    page.context.close()
    both_widths(browser, server, "/login", "10-login-passkey")


def test_sign_in_with_microsoft_through_the_simulator(browser, server, graph_simulator):  # noqa: F811
    graph_simulator.set_consent_mode("prompt")
    try:
        for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            page = new_page(browser, viewport)
            page.goto(server.url + "/login")
            page.click(".microsoft-sign-in")
            page.wait_for_url(re.compile(r"https://127\.0\.0\.1:\d+/.*/oauth2/v2.0/authorize.*"))
            expect(page.locator("body")).to_contain_text("Sign in to Atlas MSP Staff")
            shot(page, f"11-microsoft-prompt-{label}")
            page.click("button:has-text('Continue')")
            page.wait_for_url(re.compile(r"http://localhost:\d+/admin/.*"))
            expect(page.locator(".user-menu")).to_contain_text("Ada Lovelace")
            shot(page, f"12-signed-in-with-microsoft-{label}")
            page.context.close()
        # Someone the console does not know: told to ask for an invitation.
        graph_simulator.set_signin_user(STAFF_TENANT, username="mallory", roles=[], name="Mallory")
        page = new_page(browser)
        page.goto(server.url + "/login")
        page.click(".microsoft-sign-in")
        page.click("button:has-text('Continue')")
        expect(page.locator(".microsoft-refused")).to_contain_text("Ask your administrator for an invitation")
        shot(page, "13-microsoft-unknown-person-desktop")
        page.context.close()
    finally:
        graph_simulator.set_signin_user(STAFF_TENANT, username="ada.lovelace", roles=[], name="Ada Lovelace")
        graph_simulator.set_consent_mode("accept")


def test_an_owner_invites_and_a_new_person_accepts(browser, server, identity_app):
    with identity_app.app_context():
        owner_user = User(email=f"owner-{uuid.uuid4().hex[:6]}@example.test", name="Olivia Owner",
                          password_hash=hash_password(TEST_PASSWORD))
        db.session.add(owner_user)
        db.session.flush()
        from app.access import act_in_workspace

        atlas = db.session.query(Workspace).filter_by(slug="atlas-msp").one()
        act_in_workspace(atlas.id)
        db.session.add(WorkspaceMembership(workspace_id=atlas.id, user_id=owner_user.id, role="owner"))
        db.session.commit()
        email = owner_user.email
    owner = new_page(browser)
    password_step(owner, server, email)
    owner.wait_for_url(re.compile(r".*/admin/.*"))
    owner.goto(server.url + "/admin/workspaces/atlas-msp/members")
    invitee = f"new-{uuid.uuid4().hex[:6]}@example.test"
    owner.fill("input[name=email]", invitee)
    owner.select_option("form[action$='/invitations'] select[name=role]", "operator")
    owner.click("text=Send invitation")
    link = owner.locator("#invitation-link").input_value()
    expect(owner.locator(".pending-invitations")).to_contain_text(invitee)
    shot(owner, "14-invitation-created-desktop")
    owner.context.close()
    path = link.split("localhost", 1)[-1].split(":", 1)[-1]
    path = path[path.index("/"):]
    both_widths(browser, server, path, "15-invitation")
    person = new_page(browser, PHONE)
    person.goto(server.url + path)
    person.fill("input[name=name]", "Nina New")
    person.fill("input[name=password]", "a long enough secret")
    person.fill("input[name=confirm_password]", "a long enough secret")
    person.click("text=Create account and join")
    person.wait_for_url(re.compile(r".*/admin/w/atlas-msp/managed-tenants$"))
    expect(person.locator(".alert-success")).to_contain_text("You joined Atlas Managed Services as operator")
    shot(person, "16-invitation-accepted-phone")
    person.goto(server.url + path)
    expect(person.locator(".invitation-refused")).to_contain_text("used already")
    person.context.close()


def test_identity_pages_have_no_serious_or_critical_axe_violations(browser, server, identity_app):
    """axe-core on the sign-in, security, enrolment, sessions, administration and invitation pages."""
    from tests.test_browser import axe_violations

    with identity_app.app_context():
        admin = User(email=f"axe-{uuid.uuid4().hex[:6]}@example.test", name="Alex Admin", is_admin=True,
                     password_hash=hash_password(TEST_PASSWORD))
        db.session.add(admin)
        db.session.commit()
        email = admin.email
    failures = {}
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page = new_page(browser, viewport)
        page.goto(server.url + "/login")
        failures[f"{label}: sign-in"] = axe_violations(page)
        page.goto(server.url + "/invitations/" + "A" * 43)
        failures[f"{label}: invitation refused"] = axe_violations(page)
        password_step(page, server, email)
        page.wait_for_url(re.compile(r".*/admin/.*"))
        for path in ("/admin/account/security", "/admin/account/security/totp", "/admin/account/sessions",
                     "/admin/users", "/admin/workspaces"):
            page.goto(server.url + path)
            failures[f"{label}: {path}"] = axe_violations(page)
        page.context.close()
    failures = {name: found for name, found in failures.items() if found}
    assert not failures, "axe-core found serious or critical violations:\n" + "\n".join(
        f"{name}: [{v['impact']}] {v['id']}: {v['help']}\n    " + "\n    ".join(v["nodes"][:5])
        for name, found in failures.items() for v in found)
