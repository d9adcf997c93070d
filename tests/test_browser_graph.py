"""The Graph connection in headless Chromium: connect a tenant through the simulator's admin
consent page, sync, change a policy on the simulator, sync again and open the diff."""
from __future__ import annotations

import re
import threading
import uuid

import pytest

from app.extensions import db
from app.jobs import connected_queue, set_worker_app
from app.models import Tenant, User, Workspace, WorkspaceMembership
from app.passwords import hash_password
from tests.browser_support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, LiveServer
from tests.conftest import TEST_PASSWORD, make_test_app, migrated_database
from tests.graph_support import settings_for

pytestmark = pytest.mark.browser
playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect


@pytest.fixture(scope="module")
def simulator(tmp_path_factory):
    from simulator import Simulator

    sim = Simulator.start(tmp_path_factory.mktemp("browser-simulator"), consent_mode="prompt")
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def graph_live_app(pg_cluster, simulator):
    owner, _owner_url, app_url = migrated_database(pg_cluster, "tenantatlas_browser_graph")
    external_id = uuid.uuid4()
    simulator.add_tenant(str(external_id), name="Wingtip Toys", consented=False)
    with owner.app_context():
        workspace = Workspace(slug="wingtip-msp", name="Wingtip MSP")
        user = User(email="grace@example.test", name="Grace Hopper", password_hash=hash_password(TEST_PASSWORD))
        db.session.add_all([workspace, user])
        db.session.flush()
        db.session.add(WorkspaceMembership(workspace_id=workspace.id, user_id=user.id, role="manager"))
        db.session.add(Tenant(workspace_id=workspace.id, external_id=external_id, name="Wingtip Toys",
                              primary_domain="wingtiptoys.onmicrosoft.com"))
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    app = make_test_app(app_url, GRAPH_SETTINGS=settings_for(simulator))
    return app, str(external_id)


def run_jobs(app) -> None:
    """What the worker does between two clicks: carry out every queued sync (in a thread of its
    own: Playwright's sync API keeps an event loop running in this one)."""
    def work():
        with connected_queue(app) as queue:
            queue.run_worker(queues=["sync"], wait=False, concurrency=1, install_signal_handlers=False)

    set_worker_app(app)
    try:
        worker = threading.Thread(target=work)
        worker.start()
        worker.join(timeout=120)
    finally:
        set_worker_app(None)


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_connect_sync_change_and_diff_in_the_browser(graph_live_app, simulator):
    app, external_id = graph_live_app
    with playwright_api.sync_playwright() as playwright, LiveServer(app) as server:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        # The simulator's certificate comes from its own CA, which this throwaway browser does not know.
        context = browser.new_context(viewport={"width": 1400, "height": 900}, ignore_https_errors=True)
        page = context.new_page()
        page.goto(server.url + "/login")
        page.fill("input[name=email]", "grace@example.test")
        page.fill("input[name=password]", TEST_PASSWORD)
        page.click("button[type=submit]")
        page.goto(server.url + "/admin/w/wingtip-msp/managed-tenants")
        row = page.locator("tr.tenant-row", has_text="Wingtip Toys")
        expect(row).to_contain_text("Not connected")
        expect(row).to_contain_text("not checked")
        shot(page, "graph-01-portfolio-not-connected")

        page.goto(f"{server.url}/admin/t/{external_id}/sync")
        expect(page.locator(".connection-badge").first).to_contain_text("Not connected")
        page.click("button:has-text('Connect')")
        page.wait_for_url(re.compile(r".*/v2\.0/adminconsent.*"))
        shot(page, "graph-02-admin-consent")
        page.click("button:has-text('Accept')")
        # The administrator who consented signs in to prove it (the consent answer is not signed).
        page.wait_for_url(re.compile(r".*/oauth2/v2\.0/authorize.*"))
        expect(page.locator("body")).to_contain_text("Global Administrator")
        shot(page, "graph-02b-administrator-sign-in")
        page.click("button:has-text('Continue')")
        page.wait_for_url(re.compile(rf".*/admin/t/{external_id}/sync$"))
        expect(page.locator(".alert-success")).to_contain_text("is connected")
        expect(page.locator(".connection-badge").first).to_contain_text("Connected")
        expect(page.locator(".sync-progress")).to_be_visible()

        run_jobs(app)
        page.reload()
        expect(page.locator("table").last).to_contain_text("succeeded")
        shot(page, "graph-03-first-sync")

        # Change one policy on the simulator, sync now, and see exactly that change.
        raw = simulator.objects(external_id, "deviceConfigurations")[0]
        key = next(k for k, v in sorted(raw.items()) if isinstance(v, bool) and not k.startswith("@"))
        simulator.change_object(external_id, "deviceConfigurations", raw["id"], {key: not raw[key]})
        page.click("button:has-text('Sync now')")
        expect(page.locator(".alert-success")).to_contain_text("Sync queued.")
        run_jobs(app)
        page.reload()
        expect(page.locator("tbody tr").first).to_contain_text("1 changed")

        page.click(".sidebar >> text=Policies")
        page.fill("input[name=q]", raw["displayName"])
        page.press("input[name=q]", "Enter")
        page.click(f"a.policy-link >> text={raw['displayName']}")
        page.click("text=Compare the two picked versions")
        expect(page.locator("h1")).to_contain_text("v1 → v2")
        expect(page.locator("tr.diff-changed")).to_have_count(1)
        expect(page.locator("tr.diff-changed")).to_contain_text(key)
        shot(page, "graph-04-diff")
        page.click("text=Show changes only")
        expect(page.locator("tbody tr")).to_have_count(1)
        page.set_viewport_size({"width": 390, "height": 844})
        shot(page, "graph-05-diff-phone")
        page.goto(f"{server.url}/admin/t/{external_id}/permissions")
        expect(page.locator("body")).to_contain_text("DeviceManagementConfiguration.Read.All")
        shot(page, "graph-06-permissions-phone")
        context.close()
        browser.close()
