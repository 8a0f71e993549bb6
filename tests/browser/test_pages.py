"""Every main page in a real Chromium under the site's Content-Security-Policy, as an
administrator at 1366x768: each loads, shows its content, and raises no CSP violation (the
`new_page` fixture fails the test on any). The dashboard's chart is drawn; the lockout page
and a refused page are in the site's frame."""

from __future__ import annotations

import pytest

from tests.browser.conftest import SAP_ALIAS, expect, login, password_of, screenshot

pytestmark = pytest.mark.browser


def test_every_main_page_works_under_the_content_security_policy(new_page, scene):
    page = new_page()
    page.set_viewport_size({"width": 1366, "height": 768})
    login(page, scene.admin.username)
    expect(page.locator("#keystore-dashboard svg")).to_be_visible()
    screenshot(page, "csp-dashboard")
    entry = scene.entry.pk
    pages = {
        "/admin/keystore/keystoreentry/": SAP_ALIAS,
        f"/admin/keystore/keystoreentry/{entry}/change/": "this entry",
        "/admin/renewals/pendingsapkey/": SAP_ALIAS,
        f"/admin/renewals/pendingsapkey/{scene.pending.pk}/activate/": "Yes, activate",
        "/admin/renewals/sapkeybackup/": "SAP Key History",
        f"/admin/whereused/integrationflow/where-used/{scene.tenant.pk}/{SAP_ALIAS}/": "ERP_PROD",
        "/admin/whereused/integrationflow/import/": "Import",
        "/admin/connectivity/connectivitytestrun/run/": "Host",
        "/admin/keystore/auditevent/": SAP_ALIAS,
    }
    for path, text in pages.items():
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        expect(page.locator("#content")).to_contain_text(text)
        # The site's own stylesheet is applied (a blocked stylesheet would leave it unstyled).
        expect(page.locator("#header")).to_be_visible()
    screenshot(page, "csp-audit")


def test_the_lockout_page_is_in_the_sites_frame(new_page, scene, settings):
    settings.AXES_FAILURE_LIMIT = 2
    page = new_page()
    page.set_viewport_size({"width": 1366, "height": 768})
    for _ in range(2):
        page.goto("/admin/login/")
        page.fill("#id_username", scene.reader.username)
        page.fill("#id_password", "wrong password")
        page.click("input[type=submit]")
    page.goto("/admin/login/")
    page.fill("#id_username", scene.reader.username)
    page.fill("#id_password", password_of(scene.reader.username))
    page.click("input[type=submit]")
    expect(page.locator("#login-locked")).to_contain_text("Too many failed logins")
    expect(page.locator("#site-name")).to_contain_text("Keystore Monitor")
    screenshot(page, "lockout")
