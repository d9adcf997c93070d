"""Back up now, change a policy on the simulator, and restore the old version, in headless Chromium.

A manager backs up a connected, synced tenant (the backup set page follows the job by
refreshing itself), a policy drifts on the simulator, a sync sees it, and the backup set's
restore wizard (its item picker filtered by family and name, "Select all shown") plans the
restore of exactly that policy: one update showing the drifted setting. Executed, the item is
updated and verified, and the simulator holds the old content again with nothing else
written. Screenshots of every step at desktop and phone widths go to test-artifacts/.
"""
from __future__ import annotations

import re
import threading
import uuid

import pytest
from sqlalchemy import select

from app.extensions import db
from app.jobs import connected_queue, set_worker_app
from app.models import SyncRun, Tenant, User, Workspace, WorkspaceMembership
from app.passwords import hash_password
from app.row_security import working_in_workspace
from tests.browser_support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, LiveServer
from tests.conftest import TEST_PASSWORD, make_test_app, migrated_database
from tests.graph_support import settings_for
from tests.test_browser import axe_violations

pytestmark = pytest.mark.browser
playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
FAMILY = "deviceConfigurations"


@pytest.fixture(scope="module")
def simulator(tmp_path_factory):
    from simulator import Simulator

    sim = Simulator.start(tmp_path_factory.mktemp("browser-backup-simulator"))
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def backup_live_app(pg_cluster, simulator):
    """The app over a database of its own: a manager, and a tenant connected to the simulator and synced once."""
    owner, _owner_url, app_url = migrated_database(pg_cluster, "tenantatlas_browser_backup")
    external_id = uuid.uuid4()
    simulator.add_tenant(str(external_id), name="Northwind Traders")
    with owner.app_context():
        workspace = Workspace(slug="northwind-msp", name="Northwind MSP")
        user = User(email="margaret@example.test", name="Margaret Hamilton",
                    password_hash=hash_password(TEST_PASSWORD))
        db.session.add_all([workspace, user])
        db.session.flush()
        db.session.add(WorkspaceMembership(workspace_id=workspace.id, user_id=user.id, role="manager"))
        tenant = Tenant(workspace_id=workspace.id, external_id=external_id, name="Northwind Traders",
                        primary_domain="northwindtraders.onmicrosoft.com", connection_status="connected")
        db.session.add(tenant)
        db.session.commit()
        tenant_id, workspace_id = tenant.id, workspace.id
        db.session.remove()
        db.engine.dispose()
    app = make_test_app(app_url, GRAPH_SETTINGS=settings_for(simulator))

    from app.sync.runner import request_sync

    with app.app_context(), working_in_workspace(workspace_id):
        request_sync(db.session.get(Tenant, tenant_id), "user")
        db.session.commit()
    run_jobs(app, "sync")
    with app.app_context(), working_in_workspace(workspace_id):
        [sync] = db.session.scalars(select(SyncRun).where(SyncRun.tenant_id == tenant_id)).all()
        assert sync.status == "succeeded", sync.error
        assert db.session.get(Tenant, tenant_id).granted_permissions, "the sync records what the tenant granted"
        db.session.remove()
    return app, str(external_id)


def run_jobs(app, queue: str) -> None:
    """What the worker does between two clicks: carry out every queued job of `queue` (in a thread
    of its own: Playwright's sync API keeps an event loop running in this one)."""
    def work():
        with connected_queue(app) as tasks:
            tasks.run_worker(queues=[queue], wait=False, concurrency=1, install_signal_handlers=False)

    set_worker_app(app)
    try:
        worker = threading.Thread(target=work)
        worker.start()
        worker.join(timeout=120)
        assert not worker.is_alive(), f"the {queue} jobs did not finish"
    finally:
        set_worker_app(None)


def shot(page, name: str, inaccessible: dict) -> None:
    """`name`-1366.png and `name`-390.png: the whole page at desktop and at phone width; axe-core's
    serious and critical violations at each width go to `inaccessible`."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.mouse.move(0, 0)  # no button caught in its hover colour
    for size in (DESKTOP, PHONE):
        page.set_viewport_size(size)
        page.screenshot(path=str(ARTIFACTS / f"{name}-{size['width']}.png"), full_page=True, animations="disabled")
        violations = axe_violations(page)
        if violations:
            inaccessible[f"{name}-{size['width']}"] = violations
    page.set_viewport_size(DESKTOP)


def no_sideways_scroll(page) -> None:
    """At phone width the page itself never scrolls sideways (wide tables scroll inside their card)."""
    page.set_viewport_size(PHONE)
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    culprits = page.evaluate(WIDER_THAN_THE_SCREEN) if overflow > 1 else []
    page.set_viewport_size(DESKTOP)
    assert overflow <= 1, f"the page is {overflow}px wider than a phone: {culprits}"


# The elements that reach past the right edge without a scrolling box around them.
WIDER_THAN_THE_SCREEN = """() => {
  const width = document.documentElement.clientWidth, found = [];
  for (const element of document.querySelectorAll("body *")) {
    const box = element.getBoundingClientRect();
    if (box.width === 0 || box.right <= width + 1) { continue; }
    let parent = element.parentElement, clipped = false;
    for (; parent && parent !== document.body; parent = parent.parentElement) {
      if (getComputedStyle(parent).overflowX !== "visible") { clipped = true; break; }
    }
    if (!clipped) { found.push(`${element.tagName.toLowerCase()}.${element.className} (${Math.round(box.right)}px)`); }
  }
  return found.slice(0, 12);
}"""


def drifted_policy(simulator, external_id: str) -> tuple[dict, str]:
    """A device configuration whose name no other one contains (so that filtering by it shows one
    row), with a boolean setting to flip."""
    objects = simulator.objects(external_id, FAMILY)
    names = [obj["displayName"].lower() for obj in objects]
    for obj in objects:
        unique = sum(obj["displayName"].lower() in name for name in names) == 1
        flags = [key for key, value in sorted(obj.items()) if isinstance(value, bool) and not key.startswith("@")]
        if unique and flags:
            return obj, flags[0]
    raise AssertionError("no device configuration with a unique name and a boolean setting")


def policy_name(simulator, external_id: str) -> str:
    return drifted_policy(simulator, external_id)[0]["displayName"]


def wait_for_scripts(page) -> None:
    page.wait_for_selector("html[data-scripts-ready]", state="attached")


def test_back_up_change_and_restore_the_old_version_in_the_browser(backup_live_app, simulator):
    app, external_id = backup_live_app
    tenant_url = f"/admin/t/{external_id}"
    simulator.reset_write_log(external_id)
    inaccessible: dict[str, list] = {}
    with playwright_api.sync_playwright() as playwright, LiveServer(app) as server:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=DESKTOP)
        page = context.new_page()
        page.goto(server.url + "/login")
        page.fill("input[name=email]", "margaret@example.test")
        page.fill("input[name=password]", TEST_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r".*/admin/.*"))

        # The tenant, from the workspace's portfolio: connected and synced.
        page.goto(server.url + "/admin/w/northwind-msp/managed-tenants")
        row = page.locator("tr.tenant-row", has_text="Northwind Traders")
        expect(row).to_contain_text("Connected")
        row.locator("a.tenant-name").click()
        page.wait_for_url(re.compile(rf".*{tenant_url}.*"))

        # Back up now: the backup set's page says it is under way, and refreshes itself until it is done.
        page.click(".sidebar >> text=Backups")
        expect(page.locator("tbody")).to_contain_text("No backup sets yet.")
        page.click("button:has-text('Back up now')")
        page.wait_for_url(re.compile(r".*/backups/\d+$"))
        expect(page.locator(".alert-success")).to_contain_text("Backup started")
        expect(page.locator("[data-refresh-seconds]")).to_contain_text("refreshes by itself")
        run_jobs(app, "backup")
        expect(page.locator("h1 .status-badge")).to_have_text("completed", timeout=20_000)  # no reload by the test
        expect(page.locator("[data-refresh-seconds]")).to_have_count(0)
        expect(page.locator(".backup-error")).to_have_count(0)
        backup_url = page.url
        expect(page.locator(".table-card tbody tr", has_text=policy_name(simulator, external_id))).to_have_count(1)
        shot(page, "backup-01-backup-set", inaccessible)
        no_sideways_scroll(page)

        # The policy drifts on the simulator; a sync sees it.
        policy, key = drifted_policy(simulator, external_id)
        simulator.change_object(external_id, FAMILY, policy["id"], {key: not policy[key]})
        page.goto(server.url + tenant_url + "/sync")
        page.click("button:has-text('Sync now')")
        expect(page.locator(".alert-success")).to_contain_text("Sync queued.")
        run_jobs(app, "sync")
        page.reload()
        expect(page.locator("tbody tr").first).to_contain_text("1 changed")

        # Restore items… from the backup set: the picker filters, "Select all shown" takes only the rows shown.
        page.goto(backup_url)
        page.click("a:has-text('Restore items…')")
        expect(page.locator("h1")).to_contain_text("Restore from")
        wait_for_scripts(page)
        rows = page.locator("#restore-wizard tr[data-family]")
        total = rows.count()
        count = page.locator("[data-picker-count]")
        expect(count).to_have_text(f"0 of {total} selected")
        page.select_option("[data-picker-family]", FAMILY)
        shown = len(simulator.objects(external_id, FAMILY))
        assert 1 < shown < total
        expect(page.locator("#restore-wizard tr[data-family]:visible")).to_have_count(shown)
        page.click("button:has-text('Select all shown')")
        expect(count).to_have_text(f"{shown} of {total} selected · {shown} shown")
        checked_families = page.eval_on_selector_all(
            "#restore-wizard tr[data-family]:has(input:checked)", "rows => rows.map(row => row.dataset.family)")
        assert checked_families == [FAMILY] * shown
        page.click("button:has-text('Clear')")
        expect(count).to_have_text(f"0 of {total} selected · {shown} shown")
        page.fill("[data-picker-search]", policy["displayName"].upper()[:-1])  # any case, part of the name
        page.press("[data-picker-search]", "Enter")  # filters; does not submit the wizard
        expect(page.locator("#restore-wizard tr[data-family]:visible")).to_have_count(1)
        page.fill("[data-picker-search]", "no such policy anywhere")
        expect(page.locator("[data-picker-empty]")).to_be_visible()
        page.fill("[data-picker-search]", policy["displayName"])
        expect(page.locator("[data-picker-empty]")).to_be_hidden()
        visible = page.locator("#restore-wizard tr[data-family]:visible")
        expect(visible).to_have_count(1)
        expect(visible).to_contain_text(policy["displayName"])
        page.click("button:has-text('Select all shown')")
        expect(count).to_have_text(f"1 of {total} selected · 1 shown")
        assert re.search(r"/restore$", page.url)
        shot(page, "backup-02-restore-wizard", inaccessible)
        no_sideways_scroll(page)
        expect(page.locator("select[name=assignment_mode]")).to_have_value("keep")
        page.click("button:has-text('Plan the restore')")

        # The plan: that one item, an update, showing the drifted setting. Nothing written yet.
        page.wait_for_url(re.compile(r".*/restore-runs/\d+$"))
        expect(page.locator(".alert-success")).to_contain_text("nothing is written until you execute")
        run_jobs(app, "restore")
        expect(page.locator("h1 .status-badge")).to_have_text("planned", timeout=20_000)
        items = page.locator("table.restore-items > tbody > tr")
        expect(items).to_have_count(1)
        expect(items).to_contain_text(policy["displayName"])
        expect(items.locator(".status-badge").first).to_have_text("update")
        items.locator("summary").click()
        drift = items.locator("details tbody tr", has_text=key)
        expect(drift).to_have_count(1)
        expect(drift).to_contain_text(str(not policy[key]).lower())
        expect(drift).to_contain_text(str(policy[key]).lower())
        assert simulator.write_log(external_id) == [], "backing up, syncing and planning write nothing"
        shot(page, "backup-03-restore-plan", inaccessible)
        no_sideways_scroll(page)

        # Execute: the page follows the run to its end; the item is updated and verified.
        # The button asks first, with what it writes and where (the archive button's data-confirm).
        questions: list[str] = []
        page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
        page.click("button:has-text('Execute the restore')")
        expect(page.locator(".alert-success")).to_contain_text("Restore started")
        assert questions and questions[0].startswith("Write 1 update to "), questions
        run_jobs(app, "restore")
        expect(page.locator("h1 .status-badge")).to_have_text("succeeded", timeout=20_000)
        expect(page.locator("[data-refresh-seconds]")).to_have_count(0)
        result = page.locator("table.restore-items > tbody > tr")
        expect(result).to_have_count(1)
        expect(result.locator("td").nth(3)).to_contain_text("updated")
        expect(result.locator("td").nth(3)).to_contain_text("verified")
        expect(page.locator(".restore-summary")).to_contain_text("1 verified")
        shot(page, "backup-04-restore-result", inaccessible)
        no_sideways_scroll(page)
        context.close()
        browser.close()

    assert not inaccessible, "axe-core found serious or critical violations:\n" + "\n".join(
        f"{page_name}: [{v['impact']}] {v['id']}: {v['help']}\n    " + "\n    ".join(v["nodes"][:5])
        for page_name, violations in inaccessible.items() for v in violations)
    # On the simulator: the policy holds its backed-up setting again, and that one write is all there was.
    assert simulator.get_object(external_id, FAMILY, policy["id"])[key] == policy[key]
    assert [(w.family, w.object_id, w.operation) for w in simulator.write_log(external_id)] == [
        (FAMILY, policy["id"], "update")]
