"""A read-only user in the browser: sees the keystore, New SAP Keys and SAP Key History with their
downloads, but no control that changes anything; hand-made POSTs to those controls are refused
and change nothing. The administrator's view of the same pages is the control that the
locators find the buttons when they are there."""

from __future__ import annotations

import pytest

from tests import pki as pki_factory
from tests.browser.conftest import SAP_ALIAS, csrf_post, expect, login, screenshot

pytestmark = pytest.mark.browser


def with_history(scene) -> None:
    """Activate the waiting key (the old one goes to SAP Key History), then let SAP provide
    another one: every renewal page has a row."""
    from renewals.activation import activate_pending_key, provision_sap_key

    activate_pending_key(scene.tenant, SAP_ALIAS)
    provision_sap_key(
        scene.tenant,
        SAP_ALIAS,
        valid_days=400,
        private_key=pki_factory.make_key(),
        ca=(scene.sap_pki.inter_key, [scene.sap_pki.inter, scene.sap_pki.root]),
    )


def changing_controls(page, scene, *, shoot: str = "") -> dict[str, int]:
    """How many of each changing control the logged-in user sees on the main pages; each page
    must show its rows (and their downloads), so an empty page cannot pass as "no controls"."""

    # Links in a closed row menu are hidden, but they are offered: count them too.
    def link(name: str) -> int:
        return page.get_by_role("link", name=name, exact=True, include_hidden=True).count()

    def rows_shown(alias: str) -> None:
        row = page.locator("#result_list tbody tr", has_text=alias)
        expect(row).to_have_count(1)
        download = row.get_by_role(
            "link", name="Download Certificate", exact=True, include_hidden=True
        )
        expect(download).to_have_count(1)

    counts: dict[str, int] = {}
    page.goto("/admin/renewals/pendingsapkey/")
    rows_shown(SAP_ALIAS)
    counts["Activate"] = link("Activate")
    if shoot:
        screenshot(page, f"{shoot}-new-sap-keys")

    page.goto("/admin/renewals/sapkeybackup/")
    rows_shown(SAP_ALIAS)
    counts["Add to New SAP Keys"] = link("Add to New SAP Keys")

    page.goto("/admin/keystore/keystoreentry/")
    rows_shown(SAP_ALIAS)
    rows_shown(scene.tenant_entry.alias)
    for name in ("Add certificate", "Add key pair", "Add keystore", "Rename", "Delete"):
        counts[f"entries: {name}"] = link(name)
    counts["entries: Export PKCS#12"] = link("Export PKCS#12")
    counts["entries: Delete selected entries"] = page.locator(
        "select[name=action] option", has_text="Delete selected entries"
    ).count()
    if shoot:
        screenshot(page, f"{shoot}-entries")

    page.goto(f"/admin/keystore/keystoreentry/{scene.tenant_entry.pk}/change/")
    expect(page.locator("div.field-fingerprint_sha256")).to_contain_text(
        scene.tenant_entry.fingerprint_sha256
    )
    for name in ("Rename", "Delete", "Export PKCS#12"):
        counts[f"entry detail: {name}"] = link(name)

    page.goto("/admin/whereused/integrationflow/")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    counts["Import integration flows"] = link("Import integration flows")
    return counts


def test_read_only_user_sees_no_changing_control_and_cannot_post(new_page, scene):
    from keystore.models import KeystoreEntry
    from renewals.models import PendingSapKey, SapKeyBackup

    with_history(scene)
    pending = PendingSapKey.objects.get()
    backup = SapKeyBackup.objects.get()
    scene.entry.refresh_from_db()
    before = (
        scene.entry.fingerprint_sha256,
        pending.fingerprint_sha256,
        list(SapKeyBackup.objects.values_list("pk", "fingerprint_sha256")),
        KeystoreEntry.objects.count(),
    )

    reader = new_page()
    login(reader, scene.reader.username)
    expect(reader.locator("#new-sap-keys-banner")).to_have_text(
        "1 new SAP key is waiting for activation"
    )
    seen = changing_controls(reader, scene, shoot="reader")
    assert seen == dict.fromkeys(seen, 0)

    # The confirmation pages by URL, and hand-made POSTs with the reader's session and a valid
    # CSRF token.
    for url, form in (
        (f"/admin/renewals/pendingsapkey/{pending.pk}/activate/", {"fingerprint": before[1]}),
        (f"/admin/renewals/sapkeybackup/{backup.pk}/revert/", {"replace": "on"}),
        (f"/admin/keystore/keystoreentry/{scene.tenant_entry.pk}/delete-entry/", {}),
    ):
        assert reader.request.get(url, max_redirects=0).status == 403, url
        response = csrf_post(reader, url, form)
        assert response.status == 403, url
        assert "CSRF" not in response.text(), url

    scene.entry.refresh_from_db()
    after = (
        scene.entry.fingerprint_sha256,
        PendingSapKey.objects.get().fingerprint_sha256,
        list(SapKeyBackup.objects.values_list("pk", "fingerprint_sha256")),
        KeystoreEntry.objects.count(),
    )
    assert after == before

    # The same kind of POST is accepted where the reader may act: the 403s above were the
    # permission checks, not a broken token.
    assert csrf_post(reader, "/admin/logout/", {}).status == 200
    reader.goto("/admin/")
    expect(reader.locator("#id_username")).to_be_visible()

    # The administrator of the tenant sees every one of these controls on the same pages.
    admin = new_page()
    login(admin, scene.admin.username)
    shown = changing_controls(admin, scene)
    assert all(shown.values()), shown
