"""The real app in headless Chromium: sign in, see the shell, sign out."""
from __future__ import annotations

import uuid

import pytest
from flask_migrate import upgrade

from app.extensions import db
from app.models import Tenant, User, Workspace, WorkspaceMembership
from app.passwords import hash_password
from tests.browser_support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, LiveServer
from tests.conftest import TEST_PASSWORD, make_test_app

pytestmark = pytest.mark.browser

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def live_app(pg_cluster):
    app = make_test_app(pg_cluster.create_database("tenantatlas_browser"))
    with app.app_context():
        upgrade()
        workspace = Workspace(slug="contoso-msp", name="Contoso Managed Services")
        user = User(email="ada@example.test", name="Ada Lovelace", password_hash=hash_password(TEST_PASSWORD))
        db.session.add_all([workspace, user])
        db.session.flush()
        db.session.add(WorkspaceMembership(workspace_id=workspace.id, user_id=user.id, role="owner"))
        db.session.add_all(
            Tenant(workspace_id=workspace.id, external_id=uuid.uuid4(), name=f"Customer {i}") for i in range(3)
        )
        db.session.commit()
    return app


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_sign_in_shows_the_shell_and_sign_out_returns_to_sign_in(live_app, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    with LiveServer(live_app) as server:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(server.url + "/admin")
        assert "/login" in page.url
        page.screenshot(path=str(ARTIFACTS / "01-sign-in.png"))

        page.fill("input[name=email]", "ada@example.test")
        page.fill("input[name=password]", "wrong password here")
        page.click("button[type=submit]")
        assert page.locator(".alert-danger").inner_text().strip() == "Invalid email or password."

        page.fill("input[name=email]", "ada@example.test")
        page.fill("input[name=password]", TEST_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(server.url + "/admin/workspaces")
        assert page.locator("h1").inner_text() == "Your workspaces"
        assert page.locator(".workspace-card").count() == 1
        assert "Contoso Managed Services" in page.locator(".workspace-card").inner_text()
        assert page.locator(".workspace-card .stat").first.inner_text() == "3"
        page.screenshot(path=str(ARTIFACTS / "02-shell.png"))

        page.click(".user-menu")
        page.click("text=Sign out")
        page.wait_for_url(server.url + "/login")
        assert "You have been signed out." in page.content()
        page.goto(server.url + "/admin")
        assert "/login" in page.url
        page.close()
