"""Issue 15 in the browser, points 6 to 8: each role meets lists titled by their screen with
counts in words and one date format; the administrator's activation page for an older key says
what will happen; the demo, seeded as a new user starts it, shows its flows in where-used."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import SAP_ALIAS, expect, login, screenshot

pytestmark = pytest.mark.browser

ISO_MINUTE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}")


@pytest.mark.parametrize("role", ["admin_a", "reader"])
def test_lists_and_pages_speak_the_domain(new_page, scene, role):
    page = new_page()
    page.set_viewport_size({"width": 1366, "height": 768})
    login(page, role)
    for url, title in (
        ("/admin/keystore/keystoreentry/", "Keystore"),
        ("/admin/renewals/pendingsapkey/", "New SAP Keys"),
        ("/admin/renewals/sapkeybackup/", "SAP Key History"),
    ):
        page.goto(url)
        expect(page).to_have_title(re.compile(rf"^{title} \|"))
        assert "to view" not in page.content()
    expect(page.locator(".paginator")).to_contain_text("0 SAP key backups")
    page.goto(f"/admin/keystore/keystoreentry/{scene.entry.pk}/change/")
    text = page.locator("#content").inner_text()
    assert ISO_MINUTE.search(text) and not re.search(r"\b[ap]\.m\.", text)
    screenshot(page, f"words-{role}-entry")


def test_activating_an_older_key_again_says_so(new_page, scene):
    from renewals.activation import activate_pending_key, add_back_to_pending

    activate_pending_key(scene.tenant, SAP_ALIAS)
    older = add_back_to_pending(scene.entry.backups.get())
    page = new_page()
    login(page, "admin_a")
    page.goto(f"/admin/renewals/pendingsapkey/{older.pk}/activate/")
    expect(page.locator("h1")).to_contain_text(f"Activate the older key {SAP_ALIAS} again")
    expect(page.locator("#revert-explained")).to_contain_text("brings the older key back")
    expect(page.locator("#automatic-activation")).to_contain_text(
        "The scheduler will not activate this key"
    )
    expect(page.get_by_role("button", name="Yes, activate the older key again")).to_be_visible()
    screenshot(page, "activate-older-key")


def test_the_demo_shows_where_the_sap_key_is_used(new_page, transactional_db, monkeypatch):
    from keystore import demo

    monkeypatch.delenv("DEMO_PASSWORD", raising=False)
    result = demo.seed()
    admin = next(login for login in result.logins if login.username == "admin")
    page = new_page()
    page.goto("/admin/")
    page.fill("#id_username", admin.username)
    page.fill("#id_password", admin.password)
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text("admin", ignore_case=True)
    tenant = next(tenant for tenant in result.tenants if tenant.slug == "demo")
    page.goto(f"/admin/whereused/integrationflow/where-used/{tenant.pk}/{SAP_ALIAS}/")
    content = page.locator("#content")
    expect(content).to_contain_text("Orders to ERP")
    expect(content).to_contain_text("Payment advice")
    expect(content).to_contain_text("Partner catalog")  # may use: a channel with no alias
    screenshot(page, "demo-where-used")
