"""The server-side backup on the Keystore page: the line that says whether a backup exists (when,
by whom), and the Back up and Restore buttons, which only the tenant's administrators get and
which go through keystore.merging's make_server_backup and restore_server_backup (as the API
does). Back up is a POST; Restore goes through a confirmation page that shows what will change;
a double click acts once; every refusal leaves the keystore, the backup and the audit log as
they were."""

from __future__ import annotations

import re

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from keystore import crypto, merging, services
from keystore.models import AuditAction, AuditEvent, KeystoreBackup, KeystoreBackupEntry
from tests import pki as pki_factory
from tests.conftest import client_for
from tests.keystore.test_admin import state

SAP_ALIAS = "sap_cloudintegrationcertificate"


def url(name: str, *args) -> str:
    return reverse(f"admin:keystore_keystoreentry_{name}", args=args)


def keystore_page(client, tenant) -> str:
    response = client.get(url("changelist") + f"?tenant={tenant.pk}")
    assert response.status_code == 200
    return response.content.decode()


def backup_line(page: str) -> str:
    found = re.search(r'<div class="server-backup" id="server-backup">(.*?)</div>', page, re.S)
    assert found, "the Keystore page has no server-side backup line"
    return " ".join(found.group(1).split())


def posted_state(page: str) -> str:
    return re.search(r'name="state" value="([0-9a-f]+)"', page).group(1)


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def everything() -> tuple:
    """The keystore rows, the audit log's size and the backups: a refusal changes none."""
    backups = list(KeystoreBackup.objects.values_list("tenant_id", "made_at"))
    rows = list(KeystoreBackupEntry.objects.values_list("alias", "fingerprint_sha256"))
    return state(), backups, rows


def entry_of(tenant, alias: str):
    return tenant.entries.with_alias(alias).first()


@pytest.fixture
def keystore(tenant, key_pair_entry, cert_entry, sap_entry):
    return tenant


@pytest.fixture
def admin_client(users):
    return client_for(users["Administrator"])


def test_the_page_says_there_is_no_backup_and_offers_back_up_to_administrators(keystore, users):
    line = backup_line(keystore_page(client_for(users["Administrator"]), keystore))
    assert "none yet" in line
    assert 'value="Back up"' in line and "Restore" not in line
    for role in ("ReadOnly", "IntegrationDeveloper"):
        line = backup_line(keystore_page(client_for(users[role]), keystore))
        assert "none yet" in line
        assert "<form" not in line and "Restore" not in line


def test_back_up_then_the_page_says_when_and_by_whom(keystore, admin_client, users, pki):
    page = keystore_page(admin_client, keystore)
    response = admin_client.post(url("server_backup", keystore.pk), {"state": posted_state(page)})
    assert response.status_code == 302 and response["Location"].endswith(f"?tenant={keystore.pk}")
    assert "Backed up 2 tenant-owned entries of tenant-a" in messages_of(response)[0]
    backup = KeystoreBackup.objects.get(tenant=keystore)
    assert backup.made_by_label == users["Administrator"].username
    row = KeystoreBackupEntry.objects.get(backup=backup, alias="client_key")
    assert crypto.private_key_to_der(row.open_private_key()) == crypto.private_key_to_der(
        pki.leaf_key
    )

    line = backup_line(keystore_page(admin_client, keystore))
    assert f"made {backup.made_at:%Y-%m-%d %H:%M} UTC by admin_a, 2 entries" in line
    assert "Restore" in line
    reader_line = backup_line(keystore_page(client_for(users["ReadOnly"]), keystore))
    assert "by admin_a, 2 entries" in reader_line and "Restore" not in reader_line


def test_a_double_click_on_back_up_backs_up_once(keystore, admin_client):
    posted = {"state": posted_state(keystore_page(admin_client, keystore))}
    admin_client.post(url("server_backup", keystore.pk), posted)
    first = KeystoreBackup.objects.get(tenant=keystore)
    again = admin_client.post(url("server_backup", keystore.pk), posted)
    assert "changed since this page was shown" in messages_of(again)[-1]
    assert KeystoreBackup.objects.get(tenant=keystore).pk == first.pk
    assert AuditEvent.objects.filter(action=AuditAction.BACKUP).count() == 1


def test_restore_confirms_what_changes_then_replaces(keystore, admin_client, pki, users):
    merging.make_server_backup(keystore, actor=users["Administrator"])
    services.delete_entry(entry_of(keystore, "client_key"))
    services.import_certificate(keystore, "made_later", pki_factory.der(pki.inter))
    sap_before = entry_of(keystore, SAP_ALIAS).fingerprint_sha256
    before = everything()

    confirmation = admin_client.get(url("server_restore", keystore.pk))
    assert confirmation.status_code == 200
    page = confirmation.content.decode()
    preview = confirmation.context["preview"]
    assert (preview.added, preview.changed, preview.unchanged, preview.not_in_backup) == (
        ["client_key"],
        [],
        ["partner_root"],
        ["made_later"],
    )
    assert "these entries are deleted: made_later." in " ".join(page.split())
    assert everything() == before  # showing the page changes nothing

    posted = {"mode": "replace", "state": posted_state(page)}
    response = admin_client.post(url("server_restore", keystore.pk), posted)
    assert response["Location"] == url("import_summary")
    assert "1 added, 1 overwritten, 1 removed, 0 rejected" in messages_of(response)[0]
    summary = admin_client.get(response["Location"])
    assert summary.context["title"] == "Keystore restore summary"
    assert [row["alias"] for row in summary.context["removed"]] == ["made_later"]
    assert entry_of(keystore, "made_later") is None
    restored = entry_of(keystore, "client_key")
    assert crypto.private_key_to_der(restored.open_private_key()) == crypto.private_key_to_der(
        pki.leaf_key
    )
    assert restored.certificate_chain() == pki.chain
    assert entry_of(keystore, SAP_ALIAS).fingerprint_sha256 == sap_before

    # The second click of a double click restores nothing more.
    after = everything()
    again = admin_client.post(url("server_restore", keystore.pk), posted)
    assert "changed since this page was shown" in messages_of(again)[-1]
    assert everything() == after
    assert AuditEvent.objects.filter(action=AuditAction.RESTORE).count() == 1


def test_restore_overwrite_keeps_the_entries_made_since(keystore, admin_client, pki, users):
    merging.make_server_backup(keystore, actor=users["Administrator"])
    services.import_certificate(keystore, "made_later", pki_factory.der(pki.inter))
    page = admin_client.get(url("server_restore", keystore.pk)).content.decode()
    posted = {"mode": "overwrite", "state": posted_state(page)}
    admin_client.post(url("server_restore", keystore.pk), posted)
    assert entry_of(keystore, "made_later") is not None
    [event] = AuditEvent.objects.filter(action=AuditAction.RESTORE)
    assert "(overwrite)" in event.detail and event.actor_label == "admin_a"


def test_restore_without_a_backup_says_so_and_changes_nothing(keystore, admin_client):
    before = everything()
    for method in ("get", "post"):
        response = getattr(admin_client, method)(url("server_restore", keystore.pk))
        assert response.status_code == 302
        assert "has no server-side backup: back up first" in messages_of(response)[-1]
    assert everything() == before


def test_a_forged_restore_form_changes_nothing(keystore, admin_client, users):
    merging.make_server_backup(keystore, actor=users["Administrator"])
    services.import_certificate(
        keystore,
        "made_later",
        pki_factory.der(pki_factory.make_cert("Later", pki_factory.make_key(), ca=True)),
    )
    before = everything()
    page = admin_client.get(url("server_restore", keystore.pk)).content.decode()
    for posted in (
        {"mode": "everything", "state": posted_state(page)},
        {"mode": "replace"},
        {"mode": "replace", "state": "0" * 32},
    ):
        admin_client.post(url("server_restore", keystore.pk), posted)
        assert everything() == before
    assert entry_of(keystore, "made_later") is not None


@pytest.mark.parametrize(
    ("role", "status"),
    [("none", 404), ("ReadOnly", 403), ("IntegrationDeveloper", 403), ("other_admin", 404)],
)
def test_only_the_tenants_administrators_may_back_up_and_restore(keystore, users, role, status):
    merging.make_server_backup(keystore, actor=users["Administrator"])
    services.delete_entry(entry_of(keystore, "partner_root"))
    page = keystore_page(client_for(users["Administrator"]), keystore)
    client = client_for(users[role])
    before = everything()
    for response in (
        client.post(url("server_backup", keystore.pk), {"state": posted_state(page)}),
        client.get(url("server_restore", keystore.pk)),
        client.post(
            url("server_restore", keystore.pk),
            {"mode": "replace", "state": posted_state(page)},
        ),
    ):
        assert response.status_code == status
    assert everything() == before


def test_back_up_is_a_post_with_a_csrf_token(keystore, users):
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["Administrator"])
    before = everything()
    assert client.get(url("server_backup", keystore.pk)).status_code == 405
    page = keystore_page(client, keystore)
    assert (
        client.post(url("server_backup", keystore.pk), {"state": posted_state(page)}).status_code
        == 403
    )
    assert everything() == before
