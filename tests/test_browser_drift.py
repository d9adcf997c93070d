"""Baselines and drift in headless Chromium: build a baseline from a golden tenant, tag a
customer and assign the baseline by tag, change a setting on the Graph simulator, sync, and
see the drift matrix and the finding; then back up the golden tenant and build a second
baseline from that backup; screenshots at desktop and phone widths."""
from __future__ import annotations

import threading
import uuid

import pytest

from app.extensions import db
from app.jobs import connected_queue, set_worker_app
from app.models import Tenant, User, Workspace, WorkspaceMembership
from app.passwords import hash_password
from app.row_security import working_in_workspace
from tests.browser_support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, LiveServer
from tests.conftest import TEST_PASSWORD, make_test_app, migrated_database
from tests.graph_support import settings_for

pytestmark = pytest.mark.browser
playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect


@pytest.fixture(scope="module")
def simulator(tmp_path_factory):
    from simulator import Simulator

    sim = Simulator.start(tmp_path_factory.mktemp("drift-simulator"), demo_tenants=False)
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def drift_app(pg_cluster, simulator):
    owner, _owner_url, app_url = migrated_database(pg_cluster, "tenantatlas_browser_drift")
    golden, customer = uuid.uuid4(), uuid.uuid4()
    simulator.add_tenant(str(golden), name="Golden Labs")
    simulator.add_tenant(str(customer), name="Northwind Traders")
    with owner.app_context():
        workspace = Workspace(slug="northwind-msp", name="Northwind MSP")
        user = User(email="ada@example.test", name="Ada Lovelace", password_hash=hash_password(TEST_PASSWORD))
        db.session.add_all([workspace, user])
        db.session.flush()
        db.session.add(WorkspaceMembership(workspace_id=workspace.id, user_id=user.id, role="manager"))
        db.session.add_all([Tenant(workspace_id=workspace.id, external_id=external_id, name=name,
                                   connection_status="connected")
                            for external_id, name in ((golden, "Golden Labs"), (customer, "Northwind Traders"))])
        db.session.commit()
        workspace_id = workspace.id
        db.session.remove()
        db.engine.dispose()
    app = make_test_app(app_url, GRAPH_SETTINGS=settings_for(simulator))
    return app, workspace_id, str(golden), str(customer)


def run_jobs(app, *queues: str) -> None:
    """What the worker does between two clicks (in a thread: Playwright's sync API holds this one's loop)."""
    def work():
        with connected_queue(app) as queue:
            queue.run_worker(queues=list(queues), wait=False, concurrency=1, install_signal_handlers=False)

    set_worker_app(app)
    try:
        worker = threading.Thread(target=work)
        worker.start()
        worker.join(timeout=180)
    finally:
        set_worker_app(None)


def queue_first_syncs(app, workspace_id: int) -> None:
    from sqlalchemy import select

    from app.sync.runner import request_sync

    with app.app_context(), working_in_workspace(workspace_id):
        for tenant in db.session.scalars(select(Tenant)).all():
            request_sync(tenant, "command")
        db.session.commit()


def shot(page, name: str, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


def test_baseline_from_a_golden_tenant_assigned_by_tag_shows_drift_in_the_matrix_and_findings(drift_app, simulator):
    app, workspace_id, golden, customer = drift_app
    queue_first_syncs(app, workspace_id)
    run_jobs(app, "sync")
    base = "/admin/w/northwind-msp"
    with playwright_api.sync_playwright() as playwright, LiveServer(app) as server:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.goto(server.url + "/login")
        page.fill("input[name=email]", "ada@example.test")
        page.fill("input[name=password]", TEST_PASSWORD)
        page.click("button[type=submit]")

        # A baseline from the golden tenant's current policies.
        page.goto(server.url + base + "/baselines")
        page.fill("input[name=name]", "MSP Standard")
        page.select_option("select[name=tenant]", golden)
        page.click("button:has-text('Build baseline')")
        expect(page.locator(".alert-success")).to_contain_text("Baseline MSP Standard built from Golden Labs")
        expect(page.locator(".baseline-policy").first).to_be_visible()
        shot(page, "drift-01-baseline", full_page=False)

        # A tag, put on the customer with a bulk action from the portfolio.
        page.goto(server.url + base + "/tags")
        page.fill("input[name=name]", "Managed")
        page.click("button:has-text('Create tag')")
        expect(page.locator(".tags-table")).to_contain_text("Managed")
        page.goto(server.url + base + "/managed-tenants")
        page.check(f"input.tenant-select[value='{customer}']")
        page.select_option("select[name=action]", "add_tag")
        page.click(".bulk-bar button:has-text('Run')")
        expect(page.locator(".alert-success")).to_contain_text("Add tag Managed: queued for 1 tenant(s)")
        run_jobs(app, "bulk")
        page.reload()
        expect(page.locator(".bulk-item")).to_contain_text("Tagged.")

        # The baseline assigned through the tag.
        page.goto(server.url + base + "/baselines")
        page.click("a:has-text('MSP Standard')")
        page.select_option("select[name=target]", label="Tag: Managed")
        page.click(".assign-baseline-form button:has-text('Assign')")
        expect(page.locator(".alert-success")).to_contain_text("assigned to tag Managed")
        run_jobs(app, "findings")

        # Drift: a setting changed on the customer's tenant, then a sync.
        raw = simulator.objects(customer, "deviceConfigurations")[0]
        key = next(k for k, v in sorted(raw.items()) if isinstance(v, bool) and not k.startswith("@"))
        simulator.change_object(customer, "deviceConfigurations", raw["id"], {key: not raw[key]})
        page.goto(f"{server.url}/admin/t/{customer}/sync")
        page.click("button:has-text('Sync now')")
        expect(page.locator(".alert-success")).to_contain_text("Sync queued.")
        run_jobs(app, "sync")

        page.goto(server.url + base + "/baselines")
        page.click("a:has-text('Drift matrix')")
        deviating = page.locator("td.cell-deviating")
        expect(deviating).to_have_count(1)
        expect(deviating).to_contain_text(str(not raw[key]).lower())
        expect(page.locator("tr.matrix-row", has=deviating)).to_contain_text(key)
        expect(page.locator("tr.matrix-row")).to_have_count(1)  # only the setting that differs
        shot(page, "drift-02-matrix")
        page.set_viewport_size({"width": 390, "height": 844})
        shot(page, "drift-03-matrix-phone")
        page.set_viewport_size({"width": 1400, "height": 900})
        page.click("a:has-text('Show every setting')")
        expect(page.locator("td.cell-compliant").first).to_be_visible()
        shot(page, "drift-02b-matrix-every-setting", full_page=False)
        # Scrolled down and sideways inside its card, the matrix keeps its header row and setting column in place.
        for width, height in ((1440, 900), (390, 844)):
            page.set_viewport_size({"width": width, "height": height})
            card = page.locator(".table-card.matrix-scroll")
            # One tenant fits the screen: the card is narrowed (to the setting column and half a
            # tenant column) so that it scrolls sideways at all.
            card.evaluate("card => { card.style.width = (card.querySelector('thead th').offsetWidth + 50) + 'px'; }")
            card.evaluate("card => { card.scrollTop = 400; card.scrollLeft = 300; }")
            assert card.evaluate("card => card.scrollTop") > 0  # every setting: taller than the card
            assert card.evaluate("card => card.scrollLeft") > 0
            before = card.bounding_box()  # after the scroll hint has appeared above the card
            header = page.locator(".drift-matrix thead th").first.bounding_box()
            setting = page.locator(".drift-matrix tbody th[scope=row]").nth(8).bounding_box()
            assert abs(header["y"] - before["y"]) <= 2 and abs(header["x"] - before["x"]) <= 2
            assert abs(setting["x"] - before["x"]) <= 2
            widths = {round(box["width"]) for box in (page.locator(".drift-matrix th.tenant-col").nth(i).bounding_box()
                                                       for i in range(page.locator(".drift-matrix th.tenant-col").count()))}
            assert len(widths) == 1, widths  # equal tenant columns
            shot(page, f"drift-02c-matrix-scrolled-{width}", full_page=False)
            card.evaluate("card => { card.scrollTop = 0; card.scrollLeft = 0; card.style.width = ''; }")
        page.set_viewport_size({"width": 1400, "height": 900})

        page.goto(f"{server.url}/admin/t/{customer}/findings?kind=drift")
        row = page.locator("tr.finding-row", has_text=key)
        expect(row).to_contain_text("differs from baseline MSP Standard")
        expect(row.locator(".drift-values")).to_contain_text(f"expected {str(raw[key]).lower()}")
        shot(page, "drift-04-finding")
        page.set_viewport_size({"width": 390, "height": 844})
        shot(page, "drift-05-finding-phone")
        page.set_viewport_size({"width": 1400, "height": 900})

        # A second baseline from a backup of the golden tenant: tenant, backup, every policy.
        page.goto(f"{server.url}/admin/t/{golden}/backups")
        page.click("button:has-text('Back up now')")
        expect(page.locator(".alert-success")).to_contain_text("Backup started")
        run_jobs(app, "backup")
        page.goto(server.url + base + "/baselines")
        page.click("a.from-backup-link")
        page.select_option("select[name=tenant]", golden)
        page.click("button:has-text('Show its backups')")
        page.set_viewport_size({"width": 390, "height": 844})
        shot(page, "drift-05b-backup-choices-phone", full_page=False)
        page.set_viewport_size({"width": 1400, "height": 900})
        page.click(".backup-set-choices a")
        expect(page.locator("table.backup-policy-items input[name=item]").first).to_be_visible()
        shot(page, "drift-06-baseline-from-backup-form", full_page=False)
        # Ticking a policy chooses "only the ticked ones"; unticking every box chooses every policy again.
        first_box = page.locator("table.backup-policy-items input[name=item]").first
        first_box.check()
        expect(page.locator("input[data-scope-option='chosen']")).to_be_checked()
        first_box.uncheck()
        expect(page.locator("input[data-scope-option='all']")).to_be_checked()
        page.fill("input[name=name]", "Golden from backup")
        page.click("button:has-text('Build baseline')")
        expect(page.locator(".alert-success")).to_contain_text("Baseline Golden from backup built from backup")
        expect(page.locator(".baseline-policy").first).to_be_visible()
        shot(page, "drift-07-baseline-from-backup", full_page=False)

        # Deleting a baseline (and its drift findings) asks first: dismissed, nothing is deleted.
        detail_url = page.url
        page.once("dialog", lambda dialog: dialog.dismiss())
        page.click("button:has-text('Delete baseline')")
        page.wait_for_timeout(300)
        assert page.url == detail_url
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("button:has-text('Delete baseline')")
        expect(page.locator(".alert-success")).to_contain_text("Baseline Golden from backup deleted")
        browser.close()
