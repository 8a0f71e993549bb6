"""Backing up a whole tenant keystore into one PKCS#12 file, and restoring it with the keystore
upload: read back by our reader, by cryptography, openssl and keytool; the role matrix."""

from __future__ import annotations

import io
import subprocess

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12
from django.core.management import call_command
from django.core.management.base import CommandError

from keystore import crypto, services
from keystore.models import AuditAction, AuditEvent, KeystoreEntry
from tests import pki as pki_factory
from tests.conftest import client_for
from tests.keystore.test_admin import form_errors, state, url

PASSWORD = "backup-pw-1"
BACKUP = url("keystoreentry_backup")


@pytest.fixture
def keystore(tenant, key_pair_entry, cert_entry, sap_entry):
    """A tenant key pair (3-level chain), a trusted root and an SAP-owned key pair."""
    services.create_key_pair(tenant, "ec_signer", "CN=signer.example.com", key_type="ec-256")
    return tenant


def test_backup_holds_every_entry_with_its_key_and_chain(keystore, users):
    admin = users["Administrator"]
    download = services.backup_keystore(keystore, PASSWORD, actor=admin)
    assert download.filename.startswith(f"{keystore.slug}-keystore-")
    assert download.filename.endswith(".p12")
    items = {item.alias: item for item in crypto.load_pkcs12(download.content, PASSWORD)}
    entries = {entry.alias: entry for entry in KeystoreEntry.objects.filter(tenant=keystore)}
    assert (
        set(items)
        == set(entries)
        == {
            "client_key",
            "ec_signer",
            "partner_root",
            "sap_cloudintegrationcertificate",
        }
    )
    for alias, entry in entries.items():
        item = items[alias]
        assert item.chain == entry.certificate_chain(), alias
        if entry.has_private_key:
            assert crypto.private_key_to_der(item.private_key) == crypto.private_key_to_der(
                entry.open_private_key()
            ), alias
        else:
            assert item.private_key is None, alias
    # cryptography checks the MAC (a wrong password is refused) and reads the first key.
    assert pkcs12.load_pkcs12(download.content, PASSWORD.encode()).key is not None
    with pytest.raises(crypto.CryptoError, match="Wrong password"):
        crypto.load_pkcs12(download.content, "another-pw")
    audit = AuditEvent.objects.get(action=AuditAction.EXPORT)
    assert audit.actor == admin
    assert audit.detail == "keystore backup: 3 key pairs, 1 certificates"


@pytest.mark.skipif(pki_factory.OPENSSL is None, reason="openssl is not installed")
def test_openssl_and_keytool_read_the_backup(keystore, tmp_path):
    path = tmp_path / "backup.p12"
    path.write_bytes(services.backup_keystore(keystore, PASSWORD).content)
    info = subprocess.run(
        [pki_factory.OPENSSL, "pkcs12", "-in", str(path), "-passin", f"pass:{PASSWORD}"]
        + ["-info", "-noout"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert info.returncode == 0, info.stderr  # the MAC verifies
    assert "AES-256-CBC" in info.stderr
    keytool = subprocess.run(
        ["keytool", "-list", "-keystore", str(path), "-storetype", "PKCS12"]
        + ["-storepass", PASSWORD],
        capture_output=True,
        text=True,
        check=False,
    )
    if keytool.returncode == 127:
        pytest.skip("keytool is not installed")
    assert keytool.returncode == 0, keytool.stdout + keytool.stderr
    listing = keytool.stdout
    assert "Your keystore contains 4 entries" in listing
    assert "client_key," in listing and "partner_root, " in listing
    assert listing.count("PrivateKeyEntry") == 3 and listing.count("trustedCertEntry") == 1


def test_restore_brings_the_tenant_entries_back(keystore, other_tenant):
    before = {
        entry.alias: entry.fingerprint_sha256
        for entry in KeystoreEntry.objects.filter(tenant=keystore)
    }
    backup = services.backup_keystore(keystore, PASSWORD).content
    # A lost tenant key pair and a changed certificate: the upload with overwrite restores both.
    KeystoreEntry.objects.get(tenant=keystore, alias="ec_signer").delete()
    services.delete_entry(KeystoreEntry.objects.get(tenant=keystore, alias="partner_root"))
    summary = services.import_keystore(keystore, backup, PASSWORD, overwrite=True)
    results = {outcome.alias: outcome.result for outcome in summary.outcomes}
    assert results["ec_signer"] == "added" and results["partner_root"] == "added"
    assert results["client_key"] == "overwritten"
    # SAP-owned keys come back only from SAP.
    assert results["sap_cloudintegrationcertificate"] == "rejected"
    after = {
        entry.alias: entry.fingerprint_sha256
        for entry in KeystoreEntry.objects.filter(tenant=keystore)
    }
    assert after == before


def test_backup_refusals_change_nothing(keystore, other_tenant, users):
    events = AuditEvent.objects.count()
    for role in ("none", "ReadOnly", "IntegrationDeveloper", "other_admin"):
        with pytest.raises(services.KeystoreError, match="not allowed"):
            services.backup_keystore(keystore, PASSWORD, actor=users[role])
    with pytest.raises(services.KeystoreError, match="at least 8 characters"):
        services.backup_keystore(keystore, "short")
    with pytest.raises(services.KeystoreError, match="empty: nothing to back up"):
        services.backup_keystore(other_tenant, PASSWORD)
    assert AuditEvent.objects.count() == events


def test_backup_page_role_matrix_and_form(keystore, users):
    client = client_for(users["Administrator"])
    assert BACKUP.encode() in client.get(url("keystoreentry_changelist")).content
    assert client.get(BACKUP).status_code == 200
    before = state()
    mismatch = client.post(
        BACKUP, {"tenant": keystore.pk, "password1": PASSWORD, "password2": "other-pw-2"}
    )
    assert "The two passwords differ." in form_errors(mismatch)
    assert state() == before
    response = client.post(
        BACKUP, {"tenant": keystore.pk, "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-pkcs12"
    content = b"".join(response.streaming_content) if response.streaming else response.content
    assert len(crypto.load_pkcs12(content, PASSWORD)) == 4
    for role in ("none", "ReadOnly", "IntegrationDeveloper", "other_admin"):
        other = client_for(users[role])
        posted = other.post(
            BACKUP, {"tenant": keystore.pk, "password1": PASSWORD, "password2": PASSWORD}
        )
        assert posted.status_code == 403, role
        assert posted.get("Content-Type") != "application/x-pkcs12"
        if role in ("ReadOnly", "IntegrationDeveloper"):
            listing = other.get(url("keystoreentry_changelist")).content
            assert BACKUP.encode() not in listing
    assert AuditEvent.objects.filter(action=AuditAction.EXPORT).count() == 1


def test_backup_command(keystore, tmp_path, monkeypatch):
    monkeypatch.setenv("BACKUP_PW", PASSWORD)
    target = tmp_path / "tenant.p12"
    out = io.StringIO()
    call_command(
        "backup_keystore", "--tenant", keystore.slug, "--password-env", "BACKUP_PW",
        "-o", str(target), stdout=out,
    )  # fmt: skip
    assert out.getvalue().startswith(f"Wrote {target}")
    assert len(crypto.load_pkcs12(target.read_bytes(), PASSWORD)) == 4
    with pytest.raises(CommandError, match="NO_SUCH_PW is not set or empty"):
        call_command(
            "backup_keystore", "--tenant", keystore.slug, "--password-env", "NO_SUCH_PW",
            "-o", str(tmp_path / "x.p12"),
        )  # fmt: skip
    assert not (tmp_path / "x.p12").exists()
