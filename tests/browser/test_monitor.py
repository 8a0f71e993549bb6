"""The Keystore Monitor in a real Chromium, for the administrator, the integration developer and
the reader of one tenant (issue 15, items 1 to 4): the three tabs with their counts and the links
around them, one action menu per row holding only what the role may do, Activate one click away,
no list wider than a 1366x768 screen, the row's actions on the detail pages (their bar clear of
the title at 1400 and 1920 pixels), and the days left next to every Valid Until."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from tests import pki as pki_factory
from tests.browser.conftest import SAP_ALIAS, expect, login, screenshot
from tests.conftest import import_expired_certificate, make_user

pytestmark = pytest.mark.browser

ENTRIES = "/admin/keystore/keystoreentry/"
NEW_SAP_KEYS = "/admin/renewals/pendingsapkey/"
HISTORY = "/admin/renewals/sapkeybackup/"
LISTS = (ENTRIES, NEW_SAP_KEYS, HISTORY)
DOWNLOADS = ["Download Certificate", "Download Root Certificate", "Download Certificate Chain"]
ROLES = ("Administrator", "IntegrationDeveloper", "ReadOnly")

#: The links around the monitor each role is offered (a page a role cannot use is not offered).
LINKS = {
    "Administrator": ["Where-used (integration flows)", "Connectivity tests", "Audit log", "Mails"],
    "IntegrationDeveloper": ["Where-used (integration flows)", "Connectivity tests", "Audit log"],
    "ReadOnly": ["Where-used (integration flows)", "Audit log"],
}


@pytest.fixture
def monitor_scene(scene):
    """The browser scene after one renewal (the SAP key of 20 days is in SAP Key History, the
    keystore holds its successor, and SAP has provided the next key), plus an integration
    developer, an expired partner certificate and a second tenant whose rows nobody of tenant A
    may count."""
    from keystore import services
    from keystore.models import Tenant
    from renewals.activation import activate_pending_key, provision_sap_key

    scene.developer = make_user("developer", tenant=scene.tenant, role="IntegrationDeveloper")
    scene.expired = import_expired_certificate(scene.tenant, expired_for=timedelta(days=3, hours=1))
    activate_pending_key(scene.tenant, SAP_ALIAS)
    scene.pending = provision_sap_key(
        scene.tenant,
        SAP_ALIAS,
        valid_days=400,
        private_key=pki_factory.make_key(),
        ca=(scene.sap_pki.inter_key, [scene.sap_pki.inter, scene.sap_pki.root]),
    )
    other = Tenant.objects.create(name="Tenant B", slug="tenant-b")
    services.import_certificate(other, "b_root", pki_factory.der(scene.sap_pki.root))
    return scene


def user_of(scene, role: str):
    return {
        "Administrator": scene.admin,
        "IntegrationDeveloper": scene.developer,
        "ReadOnly": scene.reader,
    }[role]


def no_horizontal_overflow(page) -> None:
    """Neither the page nor its list (Django's list container scrolls on its own) is wider
    than the window."""
    widths = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"{page.url} scrolls horizontally: {widths}"
    results = page.locator("#changelist-form .results")
    if results.count():
        inner = results.evaluate("node => [node.scrollWidth, node.clientWidth]")
        assert inner[0] <= inner[1], f"{page.url}: the list scrolls horizontally: {inner}"


def menu_items(page, row) -> list[str]:
    """Open the row's action menu as a person would and read its items in order."""
    row.locator("details.row-menu > summary").click()
    items = row.locator("ul.row-menu-items a")
    expect(items.first).to_be_visible()
    labels = [text.strip() for text in items.all_inner_texts()]
    page.keyboard.press("Escape")
    expect(items.first).to_be_hidden()
    return labels


@pytest.mark.parametrize("role", ROLES)
def test_the_monitor_shows_three_tabs_with_counts_and_the_links_the_role_may_use(
    new_page, monitor_scene, role
):
    page = new_page()
    page.set_viewport_size({"width": 1366, "height": 768})
    login(page, user_of(monitor_scene, role).username)

    # The dashboard leads to the monitor.
    page.locator("#keystore-dashboard").get_by_role("link", name="Keystore Monitor").first.click()
    expect(page).to_have_url(re.compile(r"/admin/keystore/keystoreentry/\?tenant=\d+$"))

    tabs = page.locator(".monitor-tabs a")
    # Tenant B's entry is not counted: these users have no role there.
    expect(tabs).to_have_text(["Keystore (3)", "New SAP Keys (1)", "SAP Key History (1)"])
    expect(page.locator(".monitor-tabs li.current")).to_have_text("Keystore (3)")
    expect(page.locator(".keystore-monitor-frame")).to_contain_text("Tenant A")
    expect(page.locator(".monitor-links a")).to_have_text(LINKS[role])
    no_horizontal_overflow(page)
    screenshot(page, f"monitor-{role}-keystore")

    tabs.filter(has_text="New SAP Keys").click()
    expect(page).to_have_url(re.compile(r"/admin/renewals/pendingsapkey/\?tenant=\d+$"))
    expect(page.locator(".monitor-tabs li.current")).to_have_text("New SAP Keys (1)")
    no_horizontal_overflow(page)
    screenshot(page, f"monitor-{role}-new-sap-keys")

    tabs.filter(has_text="SAP Key History").click()
    expect(page).to_have_url(re.compile(r"/admin/renewals/sapkeybackup/\?tenant=\d+$"))
    expect(page.locator(".monitor-tabs li.current")).to_have_text("SAP Key History (1)")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    no_horizontal_overflow(page)
    screenshot(page, f"monitor-{role}-sap-key-history")

    # Every link leads to a page the role may open.
    for label in LINKS[role]:
        page.locator(".monitor-links").get_by_role("link", name=label, exact=True).click()
        expect(page.locator("#content h1")).to_be_visible()
        assert "403" not in page.title()
        page.go_back()


@pytest.mark.parametrize("role", ROLES)
def test_each_row_has_one_menu_with_only_the_actions_of_the_role(new_page, monitor_scene, role):
    page = new_page()
    page.set_viewport_size({"width": 1366, "height": 768})
    login(page, user_of(monitor_scene, role).username)
    admin = role == "Administrator"

    page.goto(ENTRIES)
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(3)
    for index in range(3):
        expect(rows.nth(index).locator("details.row-menu")).to_have_count(1)
    tenant_row = rows.filter(has_text=monitor_scene.tenant_entry.alias)
    sap_row = rows.filter(has_text=SAP_ALIAS)
    pem = ["PEM chain", "Download Public OpenSSH Key"]  # both rows are key pairs
    assert menu_items(page, tenant_row) == DOWNLOADS + pem + (
        ["Rename", "Delete", "Export PKCS#12"] if admin else []
    )
    # SAP's entry changes only through New SAP Keys: no Rename or Delete, even for an admin.
    assert menu_items(page, sap_row) == DOWNLOADS + pem + (["Export PKCS#12"] if admin else [])
    tenant_row.locator("details.row-menu > summary").click()
    screenshot(page, f"row-menu-{role}-entries")
    page.keyboard.press("Escape")

    page.goto(NEW_SAP_KEYS)
    row = page.locator("#result_list tbody tr", has_text=SAP_ALIAS)
    expected = DOWNLOADS + ["Renewal pack", "Renewal plan"] + (["Activate"] if admin else [])
    assert menu_items(page, row) == expected
    activate = row.locator("a.row-main-action")
    if admin:
        # The main action is a button beside the menu, on screen at 1366x768.
        expect(activate).to_have_text("Activate")
        expect(activate).to_be_in_viewport()
        box = activate.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 1366
    else:
        expect(activate).to_have_count(0)
        expect(page.get_by_role("link", name="Activate", include_hidden=True)).to_have_count(0)
    screenshot(page, f"row-menu-{role}-new-sap-keys")

    page.goto(HISTORY)
    row = page.locator("#result_list tbody tr", has_text=SAP_ALIAS)
    assert menu_items(page, row) == DOWNLOADS + (["Add to New SAP Keys"] if admin else [])
    if admin:
        expect(row.locator("a.row-main-action")).to_have_text("Add to New SAP Keys")
    else:
        expect(row.locator("a.row-main-action")).to_have_count(0)

    # One menu open at a time, and a click elsewhere closes it (the lower row's first: an
    # open menu covers the rows below it).
    page.goto(ENTRIES)
    upper, lower = rows.nth(0).locator("details.row-menu"), rows.nth(1).locator("details.row-menu")
    lower.locator("summary").click()
    upper.locator("summary").click()
    expect(upper).to_have_attribute("open", "")
    expect(lower).not_to_have_attribute("open", "")
    page.locator(".monitor-title").click()
    expect(upper).not_to_have_attribute("open", "")


def test_activate_is_one_click_from_new_sap_keys_and_from_the_keys_page(new_page, monitor_scene):
    page = new_page()
    page.set_viewport_size({"width": 1366, "height": 768})
    login(page, monitor_scene.admin.username)

    page.goto(NEW_SAP_KEYS)
    row = page.locator("#result_list tbody tr", has_text=SAP_ALIAS)
    row.locator("a.row-main-action", has_text="Activate").click()
    expect(page.locator("h1")).to_contain_text(f"Activate the new SAP key {SAP_ALIAS}")

    # The detail page of the new key offers the row's actions: Activate and the downloads.
    page.goto(f"{NEW_SAP_KEYS}{monitor_scene.pending.pk}/change/")
    bar = page.locator("#detail-actions")
    expect(bar.get_by_role("link")).to_have_text(
        DOWNLOADS + ["Renewal pack", "Renewal plan", "Activate"]
    )
    expect(page.locator("#where-used-summary")).to_contain_text("1 component use")
    expect(page.locator("div.field-valid_until_coloured")).to_contain_text(
        re.compile(r"in \d+ days")
    )
    no_horizontal_overflow(page)
    screenshot(page, "detail-new-sap-key-admin")
    with page.expect_download() as info:
        bar.get_by_role("link", name="Download Certificate", exact=True).click()
    assert info.value.suggested_filename == f"{SAP_ALIAS}.cer"
    bar.get_by_role("link", name="Activate", exact=True).click()
    expect(page.get_by_role("button", name="Yes, activate the new key")).to_be_visible()


@pytest.mark.parametrize("role", ("IntegrationDeveloper", "ReadOnly"))
def test_detail_pages_offer_readers_the_downloads_only(new_page, monitor_scene, role):
    from renewals.models import SapKeyBackup

    page = new_page()
    login(page, user_of(monitor_scene, role).username)
    page.goto(f"{NEW_SAP_KEYS}{monitor_scene.pending.pk}/change/")
    expect(page.locator("#detail-actions").get_by_role("link")).to_have_text(
        DOWNLOADS + ["Renewal pack", "Renewal plan"]
    )
    screenshot(page, f"detail-new-sap-key-{role}")
    page.goto(f"{HISTORY}{SapKeyBackup.objects.get().pk}/change/")
    expect(page.locator("#detail-actions").get_by_role("link")).to_have_text(DOWNLOADS)
    page.goto(f"{ENTRIES}{monitor_scene.tenant_entry.pk}/change/")
    links = page.locator("#detail-actions").get_by_role("link")
    expect(links.first).to_have_text("Download Certificate")
    for refused in ("Rename", "Delete", "Export PKCS#12", "Upload signed certificate"):
        expect(links.filter(has_text=refused)).to_have_count(0)


@pytest.mark.parametrize("width", (1400, 1920))
def test_the_entry_pages_actions_do_not_cover_its_title(new_page, monitor_scene, width):
    page = new_page()
    page.set_viewport_size({"width": width, "height": 900})
    login(page, monitor_scene.admin.username)
    for entry in (monitor_scene.tenant_entry, monitor_scene.entry):
        page.goto(f"{ENTRIES}{entry.pk}/change/")
        bar = page.locator("#detail-actions")
        expect(bar.get_by_role("link", name="Rename", exact=True)).to_have_count(
            0 if entry.is_sap_owned else 1
        )
        title = page.locator("#content h2, #content h1")
        bar_box = bar.bounding_box()
        assert bar_box is not None
        for index in range(title.count()):
            box = title.nth(index).bounding_box()
            assert box is not None
            overlaps = not (
                box["y"] + box["height"] <= bar_box["y"]
                or bar_box["y"] + bar_box["height"] <= box["y"]
                or box["x"] + box["width"] <= bar_box["x"]
                or bar_box["x"] + bar_box["width"] <= box["x"]
            )
            assert not overlaps, (width, entry.alias, box, bar_box)
        no_horizontal_overflow(page)
    screenshot(page, f"detail-entry-{width}")


def test_days_left_stand_next_to_valid_until_in_the_expiry_colours(new_page, monitor_scene):
    page = new_page()
    page.set_viewport_size({"width": 1366, "height": 768})
    login(page, monitor_scene.reader.username)

    page.goto(ENTRIES)

    def cell(alias: str):
        return page.locator("#result_list tbody tr", has_text=alias).locator("td.field-valid_until")

    expired = cell("old_partner")
    expect(expired.locator(".days-left")).to_have_text("expired 3 days ago")
    expect(expired.locator(".expiry")).to_have_class(re.compile(r"\bexpiry-expired\b"))
    colour = expired.locator(".days-left").evaluate("node => getComputedStyle(node).color")
    assert colour == "rgb(186, 33, 33)"
    valid = cell(monitor_scene.tenant_entry.alias)
    expect(valid.locator(".days-left")).to_have_text(re.compile(r"^in \d+ days$"))
    expect(valid.locator(".expiry")).to_have_class(re.compile(r"\bexpiry-valid\b"))
    # Valid Until stays on one line.
    for alias in ("old_partner", SAP_ALIAS, monitor_scene.tenant_entry.alias):
        lines = cell(alias).locator(".expiry").evaluate("node => node.getClientRects().length")
        assert lines == 1, alias
    screenshot(page, "days-left-entries")

    page.goto(NEW_SAP_KEYS)
    row = page.locator("#result_list tbody tr", has_text=SAP_ALIAS)
    expect(row.locator("td.field-current_key_valid_until .days-left")).to_have_text(
        re.compile(r"^in \d+ days$")
    )
    expect(row.locator("td.field-new_validity .days-left")).to_have_text(
        re.compile(r"^in \d+ days$")
    )

    page.goto(HISTORY)
    # The replaced SAP test key had 20 days (less a few seconds) left: amber, within the
    # warning days.
    soon = page.locator("#result_list tbody tr", has_text=SAP_ALIAS).locator(
        "td.field-key_valid_until .days-left"
    )
    expect(soon).to_have_text("in 19 days")
    expect(soon).to_have_class(re.compile(r"\bexpiry-soon\b"))
    assert soon.evaluate("node => getComputedStyle(node).color") == "rgb(178, 106, 0)"

    page.goto(f"{ENTRIES}{monitor_scene.expired.pk}/change/")
    expect(page.locator("div.field-valid_until_coloured .days-left")).to_have_text(
        "expired 3 days ago"
    )
    screenshot(page, "days-left-entry-detail")


def test_a_user_of_two_tenants_switches_tenants_and_the_lists_still_fit(new_page, monitor_scene):
    from keystore import roles
    from keystore.models import Tenant

    other = Tenant.objects.get(slug="tenant-b")
    roles.assign_role(monitor_scene.admin, other, "ReadOnly")
    page = new_page()
    page.set_viewport_size({"width": 1366, "height": 768})
    login(page, monitor_scene.admin.username)
    for path in LISTS:
        page.goto(path)
        # All tenants: the tenant column is back, and the list still fits.
        expect(page.locator(".monitor-tenants a.current")).to_have_text("All tenants")
        expect(page.locator("#result_list th.column-tenant")).to_have_count(1)
        no_horizontal_overflow(page)
    screenshot(page, "monitor-two-tenants-all")
    page.goto(ENTRIES)
    expect(page.locator(".monitor-tabs a")).to_have_text(
        ["Keystore (4)", "New SAP Keys (1)", "SAP Key History (1)"]
    )
    page.locator(".monitor-tenants").get_by_role("link", name="tenant-b").click()
    expect(page.locator(".monitor-tabs a")).to_have_text(
        ["Keystore (1)", "New SAP Keys (0)", "SAP Key History (0)"]
    )
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    # Tenant B is read only for this user: its row offers the downloads only.
    row = page.locator("#result_list tbody tr")
    assert menu_items(page, row) == DOWNLOADS + ["PEM chain"]
    expect(page.locator(".monitor-links a")).to_have_text(
        ["Where-used (integration flows)", "Audit log"]
    )
    screenshot(page, "monitor-two-tenants-b")
