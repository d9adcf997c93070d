"""The real app in headless Chromium, as MSP staff use it. Screenshots go to test-artifacts/."""
from __future__ import annotations

import re
import uuid

import pytest

from app.extensions import db
from app.models import Tenant, User, Workspace, WorkspaceMembership
from app.operations_models import Tag, TenantTag
from app.passwords import hash_password
from tests.browser_support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, LiveServer
from tests.conftest import TEST_PASSWORD, make_test_app, migrated_database, populate_tenant_rows

pytestmark = pytest.mark.browser

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect


@pytest.fixture(scope="module")
def live_app(pg_cluster):
    """Two portfolios; Ada is operator in both. Contoso has 30 tenants, Fabrikam 3.

    Built as the owner; served as the web app's role, so row-level security is live.
    """
    app, owner_url, app_url = migrated_database(pg_cluster, "tenantatlas_browser")
    with app.app_context():
        contoso = Workspace(slug="contoso-msp", name="Contoso Managed Services")
        fabrikam = Workspace(slug="fabrikam-it", name="Fabrikam IT Partners")
        ada = User(email="ada@example.test", name="Ada Lovelace", password_hash=hash_password(TEST_PASSWORD))
        db.session.add_all([contoso, fabrikam, ada])
        db.session.flush()
        db.session.add_all([WorkspaceMembership(workspace_id=contoso.id, user_id=ada.id, role="operator"),
                            WorkspaceMembership(workspace_id=fabrikam.id, user_id=ada.id, role="operator")])
        tenants = [Tenant(workspace_id=contoso.id, external_id=uuid.uuid4(), name=f"Contoso Customer {i:02d}",
                          primary_domain=f"contoso{i:02d}.onmicrosoft.com") for i in range(30)]
        tenants.append(Tenant(workspace_id=contoso.id, external_id=uuid.uuid4(), name="Northwind Pharma",
                              primary_domain="northwindpharma.onmicrosoft.com"))
        tenants += [Tenant(workspace_id=fabrikam.id, external_id=uuid.uuid4(), name=f"Fabrikam Client {i}")
                    for i in range(3)]
        db.session.add_all(tenants)
        db.session.commit()
        populate_tenant_rows(db.session, tenants[30], policies=3, marker="Northwind")
        populate_tenant_rows(db.session, tenants[31], marker="Fabrikam")
        # A manager (the Archive column) and two tags on Northwind, as the demo's busiest rows look.
        max_ = User(email="max@example.test", name="Max Manager", password_hash=hash_password(TEST_PASSWORD))
        db.session.add(max_)
        db.session.flush()
        db.session.add(WorkspaceMembership(workspace_id=contoso.id, user_id=max_.id, role="manager"))
        tags = [Tag(workspace_id=contoso.id, name=name, colour=colour)
                for name, colour in (("Healthcare", "#198754"), ("Pilot ring", "#fd7e14"))]
        db.session.add_all(tags)
        db.session.flush()
        db.session.add_all([TenantTag(tenant_id=tenants[30].id, tag_id=tag.id, workspace_id=contoso.id) for tag in tags])
        db.session.commit()
        db.engine.dispose()
    return make_test_app(app_url)


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    except playwright_api.Error:  # headless Chromium now and then answers "Unable to capture screenshot": once more
        page.wait_for_timeout(200)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def sign_in(page, server, email="ada@example.test", password=TEST_PASSWORD):
    page.goto(server.url + "/admin")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def test_wrong_password_then_sign_in_and_out(live_app, browser):
    with LiveServer(live_app) as server:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        sign_in(page, server, password="wrong password here")
        expect(page.locator(".alert-danger")).to_have_text("Invalid email or password.")
        shot(page, "01-sign-in-failed")
        sign_in(page, server)
        page.wait_for_url(re.compile(r".*/admin/workspaces$"))
        expect(page.locator("h1")).to_have_text("Your workspaces")
        expect(page.locator(".workspace-card")).to_have_count(2)
        page.click(".user-menu")
        page.click("text=Sign out")
        page.wait_for_url(re.compile(r".*/login$"))
        page.goto(server.url + "/admin/workspaces")
        assert "/login" in page.url
        page.close()


def test_staff_journey_through_portfolio_switcher_policy_diff_findings_and_workspaces(live_app, browser):
    with LiveServer(live_app) as server:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        sign_in(page, server)
        page.wait_for_url(re.compile(r".*/admin/workspaces$"))

        # Land on the Contoso portfolio.
        page.click(".workspace-card a:has-text('Contoso Managed Services')")
        page.wait_for_url(re.compile(r".*/admin/w/contoso-msp/managed-tenants$"))
        expect(page.locator("tr.tenant-row")).to_have_count(25)  # first page of 31
        expect(page.locator(".list-footer")).to_contain_text("25 shown · 31 active tenants")
        shot(page, "02-portfolio")
        page.click(".list-footer a[rel=next]")
        expect(page.locator("tr.tenant-row")).to_have_count(6)
        expect(page.locator(".list-footer a[rel=prev]")).to_be_visible()
        page.click(".list-footer a[rel=first]")
        expect(page.locator("tr.tenant-row")).to_have_count(25)
        page.wait_for_load_state("load")  # the shortcut is bound once the page's script has run

        # Search in the tenant switcher (keyboard shortcut) and open a tenant.
        page.keyboard.press("Control+k")
        expect(page.locator("#tenant-switcher")).to_be_visible()
        page.fill("#tenant-switcher-search", "northwind")
        expect(page.locator(".switcher-result")).to_have_count(1)
        expect(page.locator(".switcher-result")).to_contain_text("Northwind Pharma")
        shot(page, "03-switcher-search")
        page.click(".switcher-result")
        page.wait_for_url(re.compile(r".*/admin/t/[0-9a-f-]{36}$"))
        expect(page.locator("h1")).to_have_text("Northwind Pharma")
        shot(page, "04-tenant-dashboard")

        # Open a policy and diff its two versions.
        page.click(".sidebar >> text=Policies")
        page.click("a.policy-link >> text=Northwind policy 0")
        expect(page.locator("h1")).to_have_text("Northwind policy 0")
        page.click("text=Compare the two picked versions")
        expect(page.locator("h1")).to_contain_text("v1 → v2")
        expect(page.locator("tr.diff-changed")).to_have_count(2)
        shot(page, "05-policy-diff")

        # Acknowledge a finding with a note.
        page.click('.sidebar >> text="Findings"')  # the tenant's (the workspace's is "All findings")
        row = page.locator("tr.finding-row", has_text="Northwind drift")
        row.locator("button.acknowledge-toggle").click()
        row.locator("textarea[name=note]").fill("Accepted until the Q3 rollout (PSA-4711)")
        shot(page, "06a-finding-acknowledge-note")
        row.locator("button", has_text="Acknowledge finding").click()
        expect(page.locator(".alert-success")).to_contain_text("Northwind drift” acknowledged with your note.")
        # Filters apply as soon as they change: no Apply click (once the page's script is attached).
        page.wait_for_selector("html[data-scripts-ready]", state="attached")
        with page.expect_navigation(url=re.compile(r".*status=acknowledged.*")):
            page.select_option("select[name=status]", "acknowledged")
        acknowledged = page.locator("tr.finding-row", has_text="Northwind drift")
        expect(acknowledged).to_contain_text("acknowledged")
        expect(acknowledged).to_contain_text("“Accepted until the Q3 rollout (PSA-4711)” · acknowledged by Ada Lovelace")
        shot(page, "06-finding-acknowledged")

        # The switcher on a tenant section keeps the section, and lists only Contoso tenants.
        page.keyboard.press("Control+k")
        page.fill("#tenant-switcher-search", "fabrikam")
        expect(page.locator("#tenant-switcher-results")).to_contain_text("No active tenant matches.")
        page.fill("#tenant-switcher-search", "customer 07")
        expect(page.locator(".switcher-result")).to_have_count(1)
        assert page.locator(".switcher-result").get_attribute("href").endswith("/findings")
        page.keyboard.press("Escape")

        # Switch workspace: the switcher now offers Fabrikam's tenants only.
        page.click(".workspace-switcher > button")
        page.click(".workspace-switcher button.dropdown-item:has-text('Fabrikam IT Partners')")
        page.wait_for_url(re.compile(r".*/admin/w/fabrikam-it/managed-tenants$"))
        expect(page.locator("tr.tenant-row")).to_have_count(3)
        page.keyboard.press("Control+k")
        page.fill("#tenant-switcher-search", "client")
        expect(page.locator(".switcher-result")).to_have_count(3)
        page.fill("#tenant-switcher-search", "northwind")
        expect(page.locator("#tenant-switcher-results")).to_contain_text("No active tenant matches.")
        shot(page, "07-switched-workspace")
        page.close()


def test_switcher_enter_opens_the_first_match_of_what_was_typed_and_arrows_move_a_visible_highlight(live_app, browser):
    with LiveServer(live_app) as server:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        sign_in(page, server)
        page.wait_for_url(re.compile(r".*/admin/(workspaces|w/[a-z-]+/managed-tenants)$"))  # the last workspace's
        page.goto(server.url + "/admin/w/contoso-msp/managed-tenants")
        page.click("tr.tenant-row a:has-text('Contoso Customer 03')")  # now a recent tenant, listed first
        expect(page.locator("h1")).to_have_text("Contoso Customer 03")
        page.wait_for_load_state("load")

        # Type and press Enter at once, before the search has answered: the match opens, not the recent tenant.
        page.keyboard.press("Control+k")
        expect(page.locator("#tenant-switcher-search")).to_be_focused()
        page.keyboard.type("northwind ph")
        page.keyboard.press("Enter")
        expect(page.locator("h1")).to_have_text("Northwind Pharma")
        page.wait_for_load_state("load")

        # Arrow keys move a visible highlight over the results; Enter opens the highlighted one.
        page.keyboard.press("Control+k")
        page.fill("#tenant-switcher-search", "customer 1")
        expect(page.locator(".switcher-result")).to_have_count(10)
        expect(page.locator(".switcher-result.active")).to_have_text("Contoso Customer 10contoso10.onmicrosoft.com")
        page.keyboard.press("ArrowDown")
        page.keyboard.press("ArrowDown")
        highlighted = page.locator(".switcher-result.active")
        expect(highlighted).to_have_count(1)
        expect(highlighted).to_contain_text("Contoso Customer 12")
        background = highlighted.evaluate("element => getComputedStyle(element).backgroundColor")
        plain = page.locator(".switcher-result:not(.active)").first.evaluate(
            "element => getComputedStyle(element).backgroundColor")
        assert background != plain  # the highlight is visible, not only a class
        page.keyboard.press("ArrowUp")
        expect(page.locator(".switcher-result.active")).to_contain_text("Contoso Customer 11")
        shot(page, "08-switcher-highlight")
        page.keyboard.press("Enter")
        expect(page.locator("h1")).to_have_text("Contoso Customer 11")
        page.wait_for_load_state("load")

        # With nothing typed, the arrows walk the pinned and recent lists.
        page.keyboard.press("Control+k")
        expect(page.locator("#tenant-switcher-marks .switcher-entry.active")).to_have_count(1)
        page.keyboard.press("ArrowDown")
        expect(page.locator("#tenant-switcher-marks .switcher-entry.active")).to_have_count(1)
        page.close()


@pytest.mark.parametrize("width", [390, 768, 1024, 1400])
def test_the_top_bar_stays_one_line_at_every_width(live_app, browser, width):
    with LiveServer(live_app) as server:
        page = browser.new_page(viewport={"width": width, "height": 900})
        sign_in(page, server)
        page.wait_for_load_state("load")
        page.goto(server.url + "/admin/w/contoso-msp/managed-tenants?q=northwind")
        page.click("tr.tenant-row a.tenant-name")
        expect(page.locator("h1")).to_have_text("Northwind Pharma")
        page.wait_for_load_state("load")
        # Measured in one go in the page: an item hidden between listing and measuring (its
        # script still running) would leave a per-element bounding_box() waiting for ever.
        boxes = page.evaluate("""() => Array.from(document.querySelectorAll('.topbar > *'))
            .map(e => e.getBoundingClientRect())
            .filter(r => r.width > 0 || r.height > 0)
            .map(r => ({x: r.x, y: r.y, width: r.width, height: r.height}))""")
        bar = page.locator(".topbar").bounding_box()
        assert bar["height"] < 64, f"the top bar is {bar['height']}px high at {width}px: it wrapped"
        for box in boxes:  # side by side, none overlapping the next, all inside the bar
            assert box["y"] >= bar["y"] and box["y"] + box["height"] <= bar["y"] + bar["height"] + 1
        for left, right in zip(boxes, boxes[1:]):
            assert left["x"] + left["width"] <= right["x"] + 1, (left, right)
        assert all(box["x"] + box["width"] <= width + 1 for box in boxes)
        shot(page, f"09-top-bar-{width}")
        page.close()


def test_portfolio_shows_a_legend_for_its_severity_badges(live_app, browser):
    """The badges themselves (letter and count) are checked in test_portfolio; here, that the legend reads."""
    with LiveServer(live_app) as server:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        sign_in(page, server)
        page.wait_for_load_state("load")
        page.goto(server.url + "/admin/w/contoso-msp/managed-tenants")
        legend = page.locator(".severity-legend")
        expect(legend).to_be_visible()
        assert legend.inner_text().replace("\u00a0", " ").split() == [
            "Open", "findings:", "C", "Critical", "·", "H", "High", "·", "M", "Medium", "·", "L", "Low"]
        shot(page, "10-portfolio-legend")
        page.close()


@pytest.mark.parametrize("width", [1440, 1920])
def test_at_desktop_widths_every_portfolio_column_fits_without_sideways_scrolling(live_app, browser, width):
    with LiveServer(live_app) as server:
        page = browser.new_page(viewport={"width": width, "height": 900})
        sign_in(page, server, email="max@example.test")
        page.wait_for_load_state("load")
        page.goto(server.url + "/admin/w/contoso-msp/managed-tenants?sort=policies&dir=desc")
        expect(page.locator(".tenant-row").first).to_contain_text("Northwind Pharma")
        card = page.locator(".table-card").first
        overflow = card.evaluate("card => card.scrollWidth - card.clientWidth")
        shot(page, f"10b-portfolio-{width}")
        assert overflow <= 0, f"the table is {overflow} px wider than its card at {width} px"
        page.close()


def test_on_a_phone_the_sidebar_is_a_menu_wide_tables_say_they_scroll_and_no_ctrl_k_hint(live_app, browser):
    with LiveServer(live_app) as server:
        phone = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
        page = phone.new_page()
        sign_in(page, server)
        page.wait_for_load_state("load")
        page.goto(server.url + "/admin/w/contoso-msp/managed-tenants")
        page.wait_for_load_state("load")

        # The sidebar is out of the way until the menu button opens it.
        expect(page.locator("#sidebar")).not_to_be_visible()
        expect(page.locator("h1")).to_be_in_viewport()
        page.click(".sidebar-toggle")
        expect(page.locator("#sidebar")).to_be_visible()
        expect(page.locator("#sidebar")).not_to_have_class(re.compile(r"\bshowing\b"))  # done sliding in
        expect(page.locator("#sidebar a.nav-link", has_text="Workspace audit")).to_be_in_viewport()
        shot(page, "11-phone-menu-open")
        page.click("#sidebar a.nav-link:has-text('Workspace audit')")
        page.wait_for_url(re.compile(r".*/admin/w/contoso-msp/audit$"))
        expect(page.locator("#sidebar")).not_to_be_visible()

        # The portfolio table is wider than the phone: a hint says so, and the side with more columns fades.
        page.goto(server.url + "/admin/w/contoso-msp/managed-tenants")
        expect(page.locator(".table-scroll-hint")).to_be_visible()
        expect(page.locator(".table-scroll-hint")).to_contain_text("swipe the table sideways")
        expect(page.locator(".table-scroll-frame")).to_have_class(re.compile(r"\bis-scrollable\b"))
        page.locator(".table-card").evaluate("card => card.scrollLeft = card.scrollWidth")
        expect(page.locator(".table-scroll-frame")).to_have_class(re.compile(r"\bat-end\b"))

        # No keyboard shortcut hint on a touch screen.
        expect(page.locator(".tenant-switcher-button")).to_be_visible()
        expect(page.locator(".tenant-switcher-button kbd")).not_to_be_visible()
        shot(page, "12-phone-portfolio")
        phone.close()

        # At desktop width: the sidebar is in place, no menu button, no scroll hint, the Ctrl K hint shows.
        desk = browser.new_page(viewport={"width": 1400, "height": 900})
        sign_in(desk, server)
        desk.wait_for_load_state("load")
        desk.goto(server.url + "/admin/w/contoso-msp/managed-tenants")
        expect(desk.locator("#sidebar")).to_be_visible()
        expect(desk.locator(".sidebar-toggle")).not_to_be_visible()
        expect(desk.locator(".table-scroll-hint")).not_to_be_visible()
        expect(desk.locator(".tenant-switcher-button kbd")).to_be_visible()
        desk.close()


def test_copy_link_copies_the_workspace_qualified_permalink_which_opens_the_page_from_another_workspace(
        live_app, browser):
    with LiveServer(live_app) as server:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
        page = context.new_page()
        sign_in(page, server)
        page.wait_for_load_state("load")
        page.goto(server.url + "/admin/w/contoso-msp/managed-tenants?q=northwind")
        page.click("tr.tenant-row a.tenant-name")
        page.click(".sidebar >> text=Policies")
        page.wait_for_load_state("load")
        policies_url = page.url
        page.click(".copy-link")
        expect(page.locator(".copy-link")).to_contain_text("Link copied")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert re.fullmatch(re.escape(server.url) + r"/admin/w/contoso-msp/t/[0-9a-f-]{36}/policies", copied), copied

        # Another workspace is current: the bare URL is a 404, the copied permalink opens the page.
        page.goto(server.url + "/admin/w/fabrikam-it/managed-tenants")
        assert page.goto(policies_url).status == 404
        page.goto(copied)
        assert page.url == policies_url
        expect(page.locator("h1")).to_have_text("Policies")
        context.close()


def test_audit_log_shows_target_names_a_before_after_table_and_times_in_the_chosen_timezone(live_app, browser):
    with LiveServer(live_app) as server:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        sign_in(page, server)
        page.wait_for_load_state("load")
        # The timezone is a setting in the user menu, next to "Change password".
        page.click(".user-menu")
        page.click(".dropdown-menu >> text=Timezone: UTC")
        expect(page.locator("h1")).to_have_text("Your timezone")
        page.select_option("select[name=timezone]", "Europe/Berlin")
        page.click("button:has-text('Save timezone')")
        expect(page.locator(".alert-success")).to_contain_text("Times are now shown in Europe/Berlin.")

        page.goto(server.url + "/admin/w/contoso-msp/managed-tenants?q=northwind")
        page.click("tr.tenant-row a.tenant-name")
        page.click("form[action$='/pin'] button")
        page.goto(server.url + "/admin/w/contoso-msp/audit?q=tenant.pin")
        row = page.locator("tr.audit-row", has_text="tenant.pin").first
        expect(row.locator(".audit-target")).to_have_text(re.compile(r"tenant\s+Northwind Pharma"))
        expect(row.locator("table.audit-change tr.changed")).to_contain_text("pinned")
        expect(row.locator("table.audit-change .before")).to_have_text("no")
        expect(row.locator("table.audit-change .after")).to_contain_text("yes")
        expect(row.locator(".time-zone")).to_have_text(re.compile(r"^CES?T$"))
        shot(page, "13-workspace-audit")
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(server.url + "/admin/w/contoso-msp/audit")
        shot(page, "14-workspace-audit-phone")
        page.set_viewport_size({"width": 1400, "height": 900})
        page.click(".user-menu")
        page.click(".dropdown-menu >> text=Timezone: Europe/Berlin")
        page.select_option("select[name=timezone]", "UTC")
        page.click("button:has-text('Save timezone')")
        shot(page, "15-timezone-setting")
        page.close()


AXE = "/static/vendor/axe-core/axe.min.js"


def axe_violations(page) -> list[dict]:
    """axe-core's serious and critical violations on the page as it is now.

    The app's CSP (script-src 'self') refuses what add_script_tag(path=...) injects (an inline
    script), so axe is loaded by URL from the app's own static files, which the CSP allows: the
    page is audited under its real CSP, no bypass.
    """
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(url=AXE)
    result = page.evaluate("""async () => {
        const result = await axe.run(document, {resultTypes: ['violations']});
        return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                           nodes: v.nodes.map(n => n.target.join(' ') + '  ' + n.failureSummary)}));
    }""")
    return [violation for violation in result if violation["impact"] in ("serious", "critical")]


def assert_accessible(page, name: str, failures: dict) -> None:
    page.wait_for_load_state("load")
    violations = axe_violations(page)
    if violations:
        failures[name] = violations


def test_main_pages_have_no_serious_or_critical_axe_violations(live_app, browser):
    """axe-core (vendored from npm under static/vendor/axe-core) on each main page, desktop and phone widths."""
    failures: dict[str, list] = {}
    with LiveServer(live_app) as server:
        for width, height in ((1400, 900), (390, 844)):
            context = browser.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            page.goto(server.url + "/login")
            assert_accessible(page, f"{width}: sign-in", failures)
            sign_in(page, server)
            page.wait_for_load_state("load")
            page.goto(server.url + "/admin/workspaces")
            assert_accessible(page, f"{width}: workspace list", failures)
            page.goto(server.url + "/admin/w/contoso-msp/managed-tenants")
            assert_accessible(page, f"{width}: portfolio", failures)
            page.goto(server.url + "/admin/w/contoso-msp/audit")
            assert_accessible(page, f"{width}: workspace audit", failures)
            page.goto(server.url + "/admin/workspaces/contoso-msp/members")
            assert_accessible(page, f"{width}: members", failures)
            page.goto(server.url + "/admin/w/contoso-msp/managed-tenants?q=northwind")
            page.click("tr.tenant-row a.tenant-name")
            expect(page.locator("h1")).to_have_text("Northwind Pharma")
            tenant = page.url.rstrip("/")
            assert_accessible(page, f"{width}: tenant dashboard", failures)
            shot(page, f"16-tenant-dashboard-{width}")
            for section in ("policies", "findings", "sync", "permissions", "audit"):
                page.goto(f"{tenant}/{section}")
                assert_accessible(page, f"{width}: {section}", failures)
            page.goto(f"{tenant}/policies")
            page.click("a.policy-link >> text=Northwind policy 0")
            page.click("text=Compare the two picked versions")
            expect(page.locator("h1")).to_contain_text("v1 → v2")
            assert_accessible(page, f"{width}: policy diff", failures)
            context.close()
    assert not failures, "axe-core found serious or critical violations:\n" + "\n".join(
        f"{page_name}: [{v['impact']}] {v['id']}: {v['help']}\n    " + "\n    ".join(v["nodes"][:5])
        for page_name, violations in failures.items() for v in violations)
