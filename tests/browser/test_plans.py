"""The renewal plan in a real Chromium (issue 17): the administrator opens the plan from the new
SAP key, rebuilds it after the flow import, saves the backend's contact and informs it; the
backend's administrator opens the mailed link in a browser that never logged in, downloads the
pack and confirms; the plan shows the confirmation."""

from __future__ import annotations

import re

from django.core import mail

from tests.browser.conftest import SAP_ALIAS, expect, login, screenshot


def test_plan_page_and_the_backend_administrators_page_without_login(
    new_page, scene, settings, live_server
):
    settings.RENEWALS_SITE_URL = live_server.url
    page = new_page()
    login(page, scene.admin.username)
    page.goto(f"/admin/renewals/pendingsapkey/{scene.pending.pk}/change/")
    page.locator("#detail-actions").get_by_role("link", name="Renewal plan").click()
    expect(page.locator("h1")).to_have_text(f"Renewal plan of {SAP_ALIAS}")
    # The flow was imported after the key arrived: the plan knows no backend until rebuilt.
    expect(page.locator("#plan-nothing")).to_contain_text("no backend needs the new certificate")
    page.get_by_role("button", name="Rebuild from where-used").click()
    row = page.locator("tr.plan-backend", has_text="ERP_PROD")
    expect(row.locator(".plan-status")).to_contain_text("to inform")
    row.locator("input[name=name]").fill("Eva Berg")
    row.locator("input[name=email]").fill("eva@erp.example")
    row.get_by_role("button", name="Save contact").click()
    expect(page.locator("tr.plan-backend .plan-contact")).to_contain_text("Eva Berg")
    page.get_by_role("button", name="Inform backends").click()
    expect(page.locator(".messagelist")).to_contain_text("informed ERP_PROD (eva@erp.example)")
    screenshot(page, "renewal-plan-informed")

    [sent] = [message for message in mail.outbox if message.to == ["eva@erp.example"]]
    link = re.search(r"https?://\S+/renewal/backend/\S+/", sent.body).group(0)
    stranger = new_page()  # a context of its own: no session, no login
    stranger.goto(link)
    expect(stranger.locator("#backend-page")).to_contain_text("Your system ERP_PROD")
    with stranger.expect_download() as download:
        stranger.locator("#backend-pack").click()
    assert download.value.suggested_filename.endswith("_renewal_pack.zip")
    stranger.fill("#confirm-name", "Eva Berg")
    stranger.fill("#confirm-comment", "imported into STRUST")
    stranger.get_by_role("button", name="Confirm imported").click()
    expect(stranger.locator("#backend-confirmed")).to_contain_text("Eva Berg")
    screenshot(stranger, "renewal-plan-backend-page")
    stranger.goto(link.replace("/backend/", "/backend/x"))
    expect(stranger.locator("#link-refused-reason")).to_contain_text("changed or cut short")

    page.reload()
    expect(page.locator("tr.plan-backend .plan-status")).to_contain_text("confirmed")
    expect(page.locator("#plan-backends h2")).to_contain_text("1 of 1 settled")

    # The agreed window, planned on the page (UTC), then an activation: the checklist follows.
    from renewals.plans.models import RenewalPlan

    plan_id = RenewalPlan.objects.get(occasion=scene.pending.material_id).pk
    page.fill("#window-at", "2099-01-01T22:00")
    page.get_by_role("button", name="Plan activation").click()
    expect(page.locator(".messagelist")).to_contain_text("before that")
    page.fill("#window-at", tomorrow_at_22())
    page.get_by_role("button", name="Plan activation").click()
    expect(page.locator("#plan-window")).to_contain_text("planned by admin_a")
    page.goto(f"/admin/renewals/pendingsapkey/{scene.pending.pk}/activate/")
    page.get_by_role("button", name="Yes, activate the new key").click()
    page.goto(f"/admin/plans/renewalplan/{plan_id}/change/")
    expect(page.locator("#plan-checklist h2")).to_contain_text("After activation")
    expect(page.locator("#plan-revert")).to_be_visible()
    page.locator("#plan-evidence").click()
    expect(page.locator("#evidence-events")).to_contain_text("confirmed imported by Eva Berg")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    screenshot(page, "renewal-plan-evidence")
    reader = new_page()
    login(reader, scene.reader.username)
    reader.goto(f"/admin/plans/renewalplan/{plan_id}/change/")
    expect(reader.locator("#window-form")).to_have_count(0)
    expect(reader.locator("#plan-evidence")).to_be_visible()


def tomorrow_at_22() -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT22:00")
