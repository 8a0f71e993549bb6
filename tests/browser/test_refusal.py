"""A reader who opens a page of the administrators meets the refusal page in the site's frame:
it names the permission, the roles that hold it, the tenant and the reader's own role, and it
leads back. Checked at the narrowest width the operators use."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.browser.conftest import expect, login, screenshot

pytestmark = pytest.mark.browser


def test_the_reader_is_told_what_is_needed_and_finds_the_way_back(new_page, scene):
    from keystore import roles
    from keystore.models import Tenant
    from tests.conftest import make_user

    # Administrator elsewhere, reader in tenant A: passes the "any tenant" check, refused here.
    other = Tenant.objects.create(name="Tenant B", slug="tenant-b")
    user = make_user("mixed", tenant=other, role="Administrator")
    roles.assign_role(user, scene.tenant, "ReadOnly")
    page = new_page()
    page.set_viewport_size({"width": 1366, "height": 768})
    login(page, "mixed")
    changelist = reverse("admin:keystore_keystoreentry_changelist")
    page.goto(changelist)
    # As from a link on the list (a bookmark or a colleague's link would send no referer).
    response = page.goto(
        reverse("admin:keystore_keystoreentry_rename", args=[scene.entry.pk]),
        referer=page.url,
    )

    assert response is not None and response.status == 403
    expect(page.locator("#header")).to_contain_text("Keystore Monitor")
    facts = page.locator(".refusal-facts")
    expect(facts).to_contain_text("NodeManager.deploysecuritycontent")
    expect(facts).to_contain_text("AuthGroup.Administrator")
    expect(facts).to_contain_text("Tenant A (tenant-a)")
    expect(facts).to_contain_text("AuthGroup.ReadOnly")
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    screenshot(page, "refusal-reader")
    page.get_by_role("link", name="Back", exact=True).click()
    expect(page).to_have_url(f"{page.url.split('/admin/')[0]}{changelist}")
