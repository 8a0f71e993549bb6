"""An administrator renews an SAP key in the browser: banner, the three public files, where-used,
activation with its confirmation page, SAP Key History, and the revert back to New SAP Keys."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import pkcs7

from tests.browser.conftest import FLOW_NAME, SAP_ALIAS, expect, login, screenshot

pytestmark = pytest.mark.browser


def fingerprint(cert: x509.Certificate) -> str:
    """In the keystore's spelling: upper-case hex pairs joined by colons."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def download(page, row, label: str) -> tuple[str, bytes]:
    """Download through the row's action menu, opened as a person would."""
    row.locator("details.row-menu > summary").click()
    with page.expect_download() as info:
        row.locator("ul.row-menu-items").get_by_role("link", name=label, exact=True).click()
    done = info.value
    return done.suggested_filename, Path(done.path()).read_bytes()


def test_administrator_activates_and_reverts_a_new_sap_key(new_page, scene):
    from renewals.models import PendingSapKey, SapKeyBackup

    old_fingerprint = scene.entry.fingerprint_sha256
    new_fingerprint = scene.pending.fingerprint_sha256
    page = new_page()

    login(page, scene.admin.username)
    banner = page.locator("#new-sap-keys-banner")
    expect(banner).to_have_text("1 new SAP key is waiting for activation")
    screenshot(page, "01-index")

    # New SAP Keys: the files for the backend administrators.
    banner.get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"/admin/renewals/pendingsapkey/$"))
    row = page.locator("#result_list tbody tr", has_text=SAP_ALIAS)
    expect(row).to_have_count(1)
    screenshot(page, "02-new-sap-keys")

    name, data = download(page, row, "Download Certificate")
    assert name == f"{SAP_ALIAS}.cer"
    leaf = x509.load_der_x509_certificate(data)
    assert fingerprint(leaf) == new_fingerprint

    name, data = download(page, row, "Download Root Certificate")
    assert name == f"{SAP_ALIAS}_rootCA.cer"
    root = x509.load_der_x509_certificate(data)
    assert root.subject == root.issuer == scene.sap_pki.root.subject
    assert fingerprint(root) == fingerprint(scene.sap_pki.root)

    name, data = download(page, row, "Download Certificate Chain")
    assert name == f"{SAP_ALIAS}.p7b"
    chain = pkcs7.load_der_pkcs7_certificates(data)
    assert {fingerprint(cert) for cert in chain} == {
        new_fingerprint,
        fingerprint(scene.sap_pki.inter),
        fingerprint(scene.sap_pki.root),
    }

    # Where-used of the new key: the imported flow's SOAP channel and its backend.
    expect(row.locator("a.where-used-counts")).to_have_text("1 use, 0 may use")
    row.locator("a.where-used-counts").click()
    expect(page.locator("#where-used-counts")).to_contain_text("1 component use this alias")
    expect(page.locator("#content")).to_contain_text(FLOW_NAME)
    expect(page.locator("#content")).to_contain_text("ERP_PROD")
    screenshot(page, "03-where-used")
    page.go_back()

    # Activate: the confirmation page compares the keys; nothing happens before "Yes".
    row.get_by_role("link", name="Activate", exact=True).click()
    expect(page.locator("h1")).to_contain_text(f"Activate the new SAP key {SAP_ALIAS}")
    expect(page.locator("#key-comparison")).to_contain_text(old_fingerprint)
    expect(page.locator("#key-comparison")).to_contain_text(new_fingerprint)
    screenshot(page, "04-activate-confirmation")
    assert SapKeyBackup.objects.count() == 0
    page.get_by_role("button", name="Yes, activate the new key").click()

    # SAP Key History: the replaced key with its Active Until, and no more banner.
    expect(page).to_have_url(re.compile(r"/admin/renewals/sapkeybackup/$"))
    expect(page.locator(".messagelist .success")).to_contain_text(
        f"The new SAP key {SAP_ALIAS} in tenant-a is active"
    )
    expect(page.locator("#new-sap-keys-banner")).to_have_count(0)
    backup = SapKeyBackup.objects.get()
    history_row = page.locator("#result_list tbody tr", has_text=SAP_ALIAS)
    expect(history_row).to_have_count(1)
    active_until = backup.active_until.strftime("%Y-%m-%d %H:%M:%S")
    expect(history_row.locator("td.field-active_until_utc")).to_have_text(active_until)
    screenshot(page, "05-sap-key-history")

    # The keystore shows the new key: changelist and detail page.
    page.goto("/admin/keystore/keystoreentry/")
    entry_row = page.locator("#result_list tbody tr", has_text=SAP_ALIAS)
    expect(entry_row).to_have_count(1)
    screenshot(page, "06-entries")
    entry_row.get_by_role("link", name=re.compile(SAP_ALIAS)).first.click()
    expect(page.locator("div.field-fingerprint_sha256")).to_contain_text(new_fingerprint)
    screenshot(page, "07-entry-detail")

    # Revert: "Add to New SAP Keys" on the backup, confirmed.
    page.goto("/admin/renewals/sapkeybackup/")
    history_row.get_by_role("link", name="Add to New SAP Keys", exact=True).click()
    expect(page.locator("#revert-warning")).to_be_visible()
    screenshot(page, "08-revert-confirmation")
    page.get_by_role("button", name="Yes, add to New SAP Keys").click()

    expect(page).to_have_url(re.compile(r"/admin/renewals/pendingsapkey/$"))
    expect(page.locator(".messagelist .success")).to_contain_text(f"The backup of {SAP_ALIAS}")
    expect(page.locator("#new-sap-keys-banner")).to_have_text(
        "1 new SAP key is waiting for activation"
    )
    expect(page.locator("#result_list tbody tr", has_text=SAP_ALIAS)).to_have_count(1)

    scene.entry.refresh_from_db()
    assert scene.entry.fingerprint_sha256 == new_fingerprint
    assert list(SapKeyBackup.objects.values_list("fingerprint_sha256", flat=True)) == [
        old_fingerprint
    ]
    waiting = PendingSapKey.objects.get()
    assert waiting.entry_id == scene.entry.pk
    assert waiting.fingerprint_sha256 == old_fingerprint
