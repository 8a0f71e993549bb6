"""The server-side backup keystore (`backup_admin_system`) and `importOption=replace`, through
plain HTTP as a Cloud Integration script sends them: back up with POST /KeystoreResources
{"Name": "backup_admin_system"}, restore with PUT /KeystoreResources('system')
?retrieveBackup=backup_admin_system (overwrite or replace), and an import that replaces the
tenant-owned entries. Each test checks the rows afterwards: restored keys open and match the
originals, SAP-owned entries are never touched, and every refusal leaves everything as it was."""

from __future__ import annotations

import base64
import json
import os
from datetime import timedelta

import pytest
from cryptography import x509
from django.core.management import call_command

from keystore import crypto, merging, sealing, services
from keystore.models import AuditAction, AuditEvent, KeystoreBackup, KeystoreBackupEntry
from keystore_site.api.odata import hexalias
from tests import pki as pki_factory
from tests.conftest import import_expired_certificate
from tests.keystore_site.api.test_writing import (
    API,
    SAP_ALIAS,
    assert_odata_error,
    entry_of,
    self_signed,
    snapshot,
    statuses,
    username,
)

BACKUP_BODY = json.dumps({"Name": "backup_admin_system"})
RESTORE = f"{API}/KeystoreResources('system')?retrieveBackup=backup_admin_system"


def back_up(caller, query: str = ""):
    return caller.send("POST", f"{API}/KeystoreResources{query}", BACKUP_BODY)


def restore(caller, query: str = "", body: bytes | str = b'{"Resource": null}'):
    return caller.send("PUT", RESTORE + query, body)


def replace_import(caller, jks: bytes, password: str = "store-pw", query: str = ""):
    body = {"Name": "system", "Resource": base64.b64encode(jks).decode(), "Password": password}
    path = f"{API}/KeystoreResources?importOption=replace{query}"
    return caller.send("POST", path, json.dumps(body))


def backup_state(tenant) -> list[tuple]:
    """The tenant's server-side backup: when it was made and what it holds."""
    return [
        *KeystoreBackup.objects.filter(tenant=tenant).values_list("pk", "made_at"),
        *KeystoreBackupEntry.objects.filter(tenant=tenant)
        .order_by("alias")
        .values_list("alias", "fingerprint_sha256", "kek_id"),
    ]


def key_der(entry) -> bytes:
    return crypto.private_key_to_der(entry.open_private_key())


@pytest.fixture
def admin(api_caller):
    return api_caller("Administrator")


@pytest.fixture
def keystore(tenant, key_pair_entry, cert_entry, sap_entry):
    """A tenant key pair `client_key` (chain leaf, intermediate, root), a trusted certificate
    `partner_root` and the SAP-owned `sap_cloudintegrationcertificate`."""
    return tenant


# -- back up ---------------------------------------------------------------------------------


def test_backup_copies_the_tenant_entries_sealed_for_the_backup(keystore, admin, pki):
    response = back_up(admin)
    assert statuses(response) == {"client_key": "new", "partner_root": "new"}
    [backup] = KeystoreBackup.objects.filter(tenant=keystore)
    assert backup.made_by_label == username(admin)
    rows = {row.alias: row for row in KeystoreBackupEntry.objects.filter(backup=backup)}
    # SAP-owned keys are SAP's to restore: never in the backup.
    assert set(rows) == {"client_key", "partner_root"}
    entry = entry_of(keystore, "client_key")
    # Sealed for its own row: not the entry's ciphertext copied, yet the same key inside.
    assert bytes(rows["client_key"].sealed_private_key) != bytes(entry.sealed_private_key)
    assert key_der(rows["client_key"]) == crypto.private_key_to_der(pki.leaf_key)
    assert rows["client_key"].certificate_chain() == pki.chain
    assert rows["partner_root"].sealed_private_key is None

    # The backup keystore reads like the others.
    listed = admin.get(f"{API}/KeystoreEntries?keystoreName=backup_admin_system").json()
    assert sorted(row["Alias"] for row in listed["d"]["results"]) == ["client_key", "partner_root"]
    keystore_entity = admin.get(f"{API}/Keystores('backup_admin_system')").json()["d"]
    assert keystore_entity["Size"] == 2
    assert keystore_entity["LastModifiedBy"] == username(admin)
    hexed = hexalias("client_key")
    der = admin.get(
        f"{API}/KeystoreEntries('{hexed}')/Certificate/$value?keystoreName=backup_admin_system"
    ).content
    assert x509.load_der_x509_certificate(der) == pki.leaf
    [event] = AuditEvent.objects.filter(tenant=keystore, action=AuditAction.BACKUP)
    assert event.actor_label == username(admin)
    assert "1 key pairs, 1 certificates" in event.detail


def test_the_next_backup_replaces_the_previous_one(keystore, other_tenant, admin, api_caller):
    services.import_certificate(other_tenant, "theirs", pki_factory.der(self_signed("Theirs")))
    theirs = api_caller("Administrator", of_tenant=other_tenant)
    assert back_up(theirs, "?returnKeystoreEntries=false").status_code == 204
    their_backup = backup_state(other_tenant)

    back_up(admin)
    first = KeystoreBackup.objects.get(tenant=keystore)
    services.delete_entry(entry_of(keystore, "partner_root"))
    services.import_certificate(keystore, "later", pki_factory.der(self_signed("Later")))
    second = statuses(back_up(admin))
    assert second == {"client_key": "unchanged", "later": "new", "partner_root": "removed"}
    assert not KeystoreBackup.objects.filter(pk=first.pk).exists()
    assert set(
        KeystoreBackupEntry.objects.filter(tenant=keystore).values_list("alias", flat=True)
    ) == {"client_key", "later"}
    assert backup_state(other_tenant) == their_backup


def test_an_empty_keystore_is_not_backed_up_and_the_old_backup_stays(
    tenant, sap_entry, cert_entry, admin
):
    back_up(admin)
    kept = backup_state(tenant)
    services.delete_entry(cert_entry)
    value = assert_odata_error(back_up(admin), 400, "Bad Request")
    assert "nothing to back up" in value
    assert backup_state(tenant) == kept


# -- restore ---------------------------------------------------------------------------------


def test_restore_overwrite_brings_back_what_changed_and_keeps_what_is_new(
    keystore, admin, pki, sap_pki
):
    expired = import_expired_certificate(keystore, expired_for=timedelta(days=3))
    sap_before = entry_of(keystore, SAP_ALIAS)
    back_up(admin)
    # After the backup: a key pair lost, a certificate replaced, one added, one expired lost.
    services.delete_entry(entry_of(keystore, "client_key"))
    services.delete_entry(expired)
    services.import_certificate(
        keystore, "partner_root", pki_factory.der(self_signed("Impostor")), overwrite=True
    )
    services.import_certificate(keystore, "made_later", pki_factory.der(self_signed("Later")))

    response = restore(admin)

    assert statuses(response) == {
        "client_key": "new",
        "old_partner": "new",
        "partner_root": "changed",
        "made_later": "unchanged",
        SAP_ALIAS: "unchanged",
    }
    restored = entry_of(keystore, "client_key")
    assert key_der(restored) == crypto.private_key_to_der(pki.leaf_key)
    assert restored.certificate_chain() == pki.chain
    # The bytes an API client downloads parse back to the original certificates.
    hexed = hexalias("client_key")
    der = admin.get(f"{API}/KeystoreEntries('{hexed}')/Certificate/$value").content
    assert x509.load_der_x509_certificate(der) == pki.leaf
    assert entry_of(keystore, "partner_root").certificate() == pki.root
    # An entry that expired since it was backed up comes back as it was.
    assert entry_of(keystore, "old_partner").fingerprint_sha256 == expired.fingerprint_sha256
    assert entry_of(keystore, "made_later") is not None
    sap_after = entry_of(keystore, SAP_ALIAS)
    assert (sap_after.fingerprint_sha256, sap_after.version) == (
        sap_before.fingerprint_sha256,
        sap_before.version,
    )
    assert crypto.private_key_matches(sap_after.open_private_key(), sap_pki.leaf)
    [event] = AuditEvent.objects.filter(tenant=keystore, action=AuditAction.RESTORE)
    assert event.actor_label == username(admin) and "(overwrite)" in event.detail
    added = AuditEvent.objects.filter(tenant=keystore, action=AuditAction.ADD, alias="client_key")
    assert added.latest("at").actor_label == username(admin)


def test_restore_replace_removes_the_entries_made_since_and_never_sap_ones(keystore, admin, pki):
    sap_before = entry_of(keystore, SAP_ALIAS).fingerprint_sha256
    back_up(admin)
    services.import_certificate(keystore, "made_later", pki_factory.der(self_signed("Later")))

    response = restore(admin, "&importOption=replace")

    assert statuses(response) == {
        "client_key": "unchanged",
        "partner_root": "unchanged",
        "made_later": "removed",
        SAP_ALIAS: "unchanged",
    }
    assert entry_of(keystore, "made_later") is None
    assert entry_of(keystore, SAP_ALIAS).fingerprint_sha256 == sap_before
    assert key_der(entry_of(keystore, "client_key")) == crypto.private_key_to_der(pki.leaf_key)
    [removal] = AuditEvent.objects.filter(action=AuditAction.DELETE, alias="made_later")
    assert removal.actor_label == username(admin)
    # Restored again: the same backup, nothing removed, the answer without content.
    assert restore(admin, "&importOption=replace&returnKeystoreEntries=false").status_code == 204
    assert entry_of(keystore, "client_key") is not None


def test_restore_without_a_backup_is_404_and_changes_nothing(keystore, admin):
    before = snapshot(keystore)
    for query in ("", "&importOption=replace"):
        value = assert_odata_error(restore(admin, query), 404, "Not Found")
        assert "no server-side backup" in value
    assert snapshot(keystore) == before
    assert not AuditEvent.objects.filter(actor_label=username(admin)).exists()


def test_a_tampered_backup_restores_nothing(keystore, admin):
    back_up(admin)
    services.import_certificate(keystore, "made_later", pki_factory.der(self_signed("Later")))
    services.delete_entry(entry_of(keystore, "partner_root"))
    row = KeystoreBackupEntry.objects.get(tenant=keystore, alias="client_key")
    sealed = bytearray(row.sealed_private_key)
    sealed[-1] ^= 1
    KeystoreBackupEntry.objects.filter(pk=row.pk).update(sealed_private_key=bytes(sealed))
    before = snapshot(keystore)
    events = AuditEvent.objects.count()

    value = assert_odata_error(restore(admin, "&importOption=replace"), 400, "Bad Request")

    assert "does not open" in value
    # Neither the certificate that would have come back nor the removal of "made_later".
    assert snapshot(keystore) == before
    assert AuditEvent.objects.count() == events


def test_rotate_kek_reseals_the_backup(keystore, admin, settings, pki):
    back_up(admin)
    old = list(settings.KEYSTORE_KEK)
    new = base64.urlsafe_b64encode(os.urandom(32)).decode()
    settings.KEYSTORE_KEK = [new, *old]
    call_command("rotate_kek")
    new_id = sealing.current_kek_id()
    assert set(
        KeystoreBackupEntry.objects.filter(sealed_private_key__isnull=False).values_list(
            "kek_id", flat=True
        )
    ) == {new_id}

    settings.KEYSTORE_KEK = [new]  # the old KEK is gone; the backup still opens
    services.delete_entry(entry_of(keystore, "client_key"))
    assert statuses(restore(admin))["client_key"] == "new"
    assert key_der(entry_of(keystore, "client_key")) == crypto.private_key_to_der(pki.leaf_key)


# -- importOption=replace --------------------------------------------------------------------


def test_import_replace_deletes_the_tenant_entries_the_file_does_not_hold(keystore, admin, pki):
    sap_before = entry_of(keystore, SAP_ALIAS).fingerprint_sha256
    renewed = pki_factory.make_pki(prefix="Renewed")
    newcomer = self_signed("Newcomer")
    jks = pki_factory.make_jks(
        [("client_key", renewed.leaf_key, renewed.chain), ("newcomer", None, [newcomer])],
        "store-pw",
    )

    response = replace_import(admin, jks)

    assert statuses(response) == {
        "client_key": "changed",
        "newcomer": "new",
        "partner_root": "removed",
        SAP_ALIAS: "unchanged",
    }
    assert entry_of(keystore, "partner_root") is None
    assert entry_of(keystore, "newcomer").certificate() == newcomer
    replaced = entry_of(keystore, "client_key")
    assert key_der(replaced) == crypto.private_key_to_der(renewed.leaf_key)
    assert entry_of(keystore, SAP_ALIAS).fingerprint_sha256 == sap_before
    [removal] = AuditEvent.objects.filter(action=AuditAction.DELETE, alias="partner_root")
    assert removal.actor_label == username(admin)


def test_import_replace_reports_a_refused_entry_once(keystore, admin):
    jks = pki_factory.make_jks(
        [
            ("partner_root", None, [self_signed("Renewed root")]),
            ("sap_x", None, [self_signed("X")]),
        ],
        "store-pw",
    )
    rows = replace_import(admin, jks).json()["d"]["results"]
    assert len({row["Hexalias"] for row in rows}) == len(rows)
    found = {row["Alias"]: row["Status"] for row in rows}
    assert found["client_key"] == "removed"
    assert found["sap_x"].startswith("notImported: The alias is not allowed.")
    assert found[SAP_ALIAS] == "unchanged"


@pytest.mark.parametrize(
    "what",
    ["wrong password", "not a keystore", "rejected entry without listing", "error midway"],
)
def test_a_failed_replace_changes_nothing(keystore, admin, monkeypatch, what):
    jks = pki_factory.make_jks([("newcomer", None, [self_signed("Newcomer")])], "store-pw")
    before = snapshot(keystore)
    events = AuditEvent.objects.count()
    if what == "wrong password":
        response = replace_import(admin, jks, password="wrong-pw")
        assert_odata_error(response, 400, "Bad Request")
    elif what == "not a keystore":
        response = replace_import(admin, b"PK\x03\x04 not a keystore at all")
        assert response.status_code in (400, 415)
    elif what == "rejected entry without listing":
        refused = pki_factory.make_jks(
            [("newcomer", None, [self_signed("Newcomer")]), ("sap_x", None, [self_signed("X")])],
            "store-pw",
        )
        response = replace_import(admin, refused, query="&returnKeystoreEntries=false")
        assert "sap_x" in assert_odata_error(response, 400, "Bad Request")
    else:
        # A failure after the removals (here: writing the new rows) rolls the removals back.
        def fail(entries):
            raise services.KeystoreError("The database refused the new rows.")

        monkeypatch.setattr(merging, "_insert_entries", fail)
        assert_odata_error(replace_import(admin, jks), 400, "Bad Request")
    assert snapshot(keystore) == before
    assert AuditEvent.objects.count() == events


# -- who may, and what is refused ------------------------------------------------------------


@pytest.mark.parametrize("role", ["ReadOnly", "IntegrationDeveloper"])
def test_readers_and_developers_may_neither_back_up_nor_restore(keystore, admin, api_caller, role):
    back_up(admin)
    services.import_certificate(keystore, "made_later", pki_factory.der(self_signed("Later")))
    caller = api_caller(role)
    before, backup_before = snapshot(keystore), backup_state(keystore)
    jks = pki_factory.make_jks([("newcomer", None, [self_signed("Newcomer")])], "store-pw")
    for response in (
        back_up(caller),
        restore(caller),
        restore(caller, "&importOption=replace"),
        replace_import(caller, jks),
    ):
        assert_odata_error(response, 403, "Forbidden")
    # Reading the backup is a reader's right, as for every keystore.
    listed = caller.get(f"{API}/KeystoreEntries?keystoreName=backup_admin_system")
    assert listed.status_code == 200 and len(listed.json()["d"]["results"]) == 2
    assert snapshot(keystore) == before and backup_state(keystore) == backup_before
    assert not AuditEvent.objects.filter(actor_label=username(caller)).exists()


def test_an_administrator_of_another_tenant_reaches_only_their_own(
    keystore, other_tenant, admin, api_caller
):
    back_up(admin)
    services.delete_entry(entry_of(keystore, "partner_root"))
    stranger = api_caller("Administrator", of_tenant=other_tenant)
    before, backup_before = snapshot(keystore), backup_state(keystore)
    assert_odata_error(back_up(stranger), 400, "Bad Request")  # their keystore is empty
    assert_odata_error(restore(stranger), 404, "Not Found")  # and they have no backup
    listed = stranger.get(f"{API}/KeystoreEntries?keystoreName=backup_admin_system")
    assert listed.json()["d"]["results"] == []
    assert snapshot(keystore) == before and backup_state(keystore) == backup_before
    assert not KeystoreBackup.objects.filter(tenant=other_tenant).exists()


def test_bad_backup_and_restore_requests_change_nothing(keystore, admin):
    back_up(admin)
    services.import_certificate(keystore, "made_later", pki_factory.der(self_signed("Later")))
    before, backup_before = snapshot(keystore), backup_state(keystore)
    resource = json.dumps({"Name": "backup_admin_system", "Resource": "AAAA", "Password": "pw"})
    put_backup = (
        f"{API}/KeystoreResources('backup_admin_system')?retrieveBackup=backup_admin_system"
    )
    for response, words in (
        (back_up(admin, "?importOption=overwrite"), "takes none"),
        (admin.send("POST", f"{API}/KeystoreResources", resource), "takes no Resource"),
        (admin.send("POST", f"{API}/KeystoreResources", b'{"Name": "backup"}'), "'backup'"),
        (admin.send("PUT", RESTORE.replace("=backup_admin_system", "=system"), b"{}"), "takes"),
        (restore(admin, "&importOption=merge"), "overwrite or replace"),
        (restore(admin, "&deleteEntries=true"), "not both"),
        (restore(admin, body=b'{"Resource": "AAAA"}'), '{"Resource": null}'),
        (restore(admin, body=b"{not json"), "not JSON"),
        (restore(admin, body=b""), "empty"),
        (admin.send("PUT", put_backup, b"{}"), "'backup_admin_system' is invalid"),
    ):
        assert words in assert_odata_error(response, 400, "Bad Request")
    # Without the CSRF token a write is refused before anything else.
    response = admin.send("PUT", RESTORE, b"{}", csrf=False)
    assert response.status_code == 403 and response["X-CSRF-Token"] == "Required"
    assert snapshot(keystore) == before and backup_state(keystore) == backup_before
