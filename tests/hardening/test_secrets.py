"""Secrets: no private key in clear in a database dump; a sealed key moved to another row does
not open (and the operations that meet one refuse cleanly); PKCS#12 passwords are never logged
or stored; error pages with debug off reveal nothing. (No private key in any admin page, for
any role: tests/hardening/test_access_matrix.py scans every page it opens.)
"""

from __future__ import annotations

import base64
import io
import logging
import os
import shutil
import subprocess
import uuid

import pytest
from django.contrib.sessions.models import Session
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.urls import reverse

from keystore import merging, sealing, services
from keystore.models import AuditEvent, KeystoreEntry
from keystore.sealing import SealingError
from renewals.activation import RenewalError, activate_pending_key
from renewals.models import PendingSapKey, SapKeyBackup, SentNotification
from tests import pki as pki_factory
from tests.conftest import client_for
from tests.hardening.conftest import SAP_ALIAS, leaked, renewal_state


def all_private_keys() -> list:
    """Every private key the database holds, opened from its row."""
    keys = []
    for model in (KeystoreEntry, PendingSapKey, SapKeyBackup):
        for row in model.objects.exclude(sealed_private_key=None):
            keys.append(row.open_private_key())
    return keys


def dumpdata() -> str:
    out = io.StringIO()
    call_command("dumpdata", stdout=out)
    return out.getvalue()


@pytest.fixture
def keys_everywhere(tenant, key_pair_entry, sap_entry, provide, users):
    """Key pairs in the keystore (PKCS#12 and JKS imports), a new SAP key, a backup."""
    pki = pki_factory.make_pki("Dump", kind="ec", size=256)
    jks = pki_factory.make_jks([("jks_pair", pki.leaf_key, pki.chain)], "jks-password")
    merging.import_keystore(tenant, jks, "jks-password")
    provide(tenant)
    activate_pending_key(tenant, SAP_ALIAS, actor=users["Administrator"])
    provide(tenant)
    keys = all_private_keys()
    assert len(keys) == 5  # client_key, jks_pair, the active and the waiting SAP key, a backup
    return keys


# -- dumps ---------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_database_dump_holds_no_private_key_in_clear(keys_everywhere, figures):
    dump = dumpdata()
    # The dump does hold the sealed keys: the scan looks where the keys are.
    for row in KeystoreEntry.objects.exclude(sealed_private_key=None):
        assert base64.b64encode(bytes(row.sealed_private_key)).decode() in dump
    assert leaked(dump, keys_everywhere) == []
    dumps = 1
    if connection.vendor == "postgresql" and shutil.which("pg_dump"):
        db = connection.settings_dict
        env = {**os.environ, "PGPASSWORD": db["PASSWORD"] or ""}
        pg_dump = subprocess.run(
            [
                "pg_dump",
                "--data-only",
                "-h",
                db["HOST"] or "127.0.0.1",
                "-p",
                str(db["PORT"] or 5432),
                "-U",
                db["USER"],
                db["NAME"],
            ],
            capture_output=True,
            env=env,
            check=True,
            timeout=60,
        ).stdout
        assert b"keystore_keystoreentry" in pg_dump
        assert leaked(pg_dump, keys_everywhere) == []
        dumps += 1
    figures["database dumps scanned for private keys"] += dumps


def test_the_dump_scan_would_find_a_key_sealed_in_clear(tenant, pki, monkeypatch):
    """If sealing stored the key as it is, the same scan finds it: the test can fail."""

    def seal_in_clear(plaintext: bytes, associated_data: bytes):
        return sealing.current_kek_id(), b"\x00" * sealing.NONCE_BYTES + plaintext

    monkeypatch.setattr(sealing, "seal", seal_in_clear)
    data = pki_factory.make_pkcs12_single("clear", pki.leaf_key, pki.chain, "pw")
    services.import_key_pair(tenant, "clear", data, "pw")
    assert leaked(dumpdata(), [pki.leaf_key])


# -- a sealed key moved to another row ----------------------------------------------------------


def move_key(source, target) -> None:
    """What someone with write access to the database could do: copy the ciphertext over."""
    type(target).objects.filter(pk=target.pk).update(
        sealed_private_key=bytes(source.sealed_private_key), kek_id=source.kek_id
    )


@pytest.fixture
def activated(sap_entry, provide, users):
    """An SAP key with a backup in history and a new key waiting."""
    provide(sap_entry.tenant)
    activate_pending_key(sap_entry.tenant, SAP_ALIAS, actor=users["Administrator"])
    return provide(sap_entry.tenant)


def test_a_ciphertext_moved_to_another_row_fails_to_open(
    key_pair_entry, sap_entry, activated, other_tenant, pki
):
    backup = SapKeyBackup.objects.get()
    entry = KeystoreEntry.objects.get(pk=sap_entry.pk)
    other = services.import_key_pair(
        other_tenant,
        "client_key",  # same alias, another tenant
        pki_factory.make_pkcs12_single("client", pki.leaf_key, pki.chain, "pw"),
        "pw",
    )
    moves = [
        (key_pair_entry, entry),  # another entry of the same tenant
        (key_pair_entry, other),  # the same alias in another tenant
        (activated, entry),  # the waiting key onto the entry it would replace
        (backup, activated),  # a backup into New SAP Keys
        (entry, backup),  # the active key into the history
    ]
    for source, target in moves:
        source = type(source).objects.get(pk=source.pk)
        target_before = type(target).objects.get(pk=target.pk)
        move_key(source, target)
        moved = type(target).objects.get(pk=target.pk)
        with pytest.raises(SealingError, match="does not open for this entry"):
            moved.open_private_key()
        move_key(target_before, target)  # put it back for the next move
    # A renamed row is another identity: its old ciphertext must not open under the new alias.
    KeystoreEntry.objects.filter(pk=key_pair_entry.pk).update(alias="renamed_by_sql")
    with pytest.raises(SealingError):
        KeystoreEntry.objects.get(pk=key_pair_entry.pk).open_private_key()


def test_operations_that_meet_a_moved_key_refuse_cleanly(
    key_pair_entry, sap_entry, activated, users, monkeypatch
):
    """An activation, a revert and an export that find a key which does not open change
    nothing and answer with one clear line: in the admin (no 500) and in the commands."""
    admin = client_for(users["Administrator"])
    move_key(key_pair_entry, activated)  # the waiting key no longer opens
    before = renewal_state()
    with pytest.raises(RenewalError, match="does not open"):
        activate_pending_key(sap_entry.tenant, SAP_ALIAS)
    with pytest.raises(CommandError, match="does not open"):
        call_command("activate_sap_key", SAP_ALIAS, "--tenant", sap_entry.tenant.slug)
    response = admin.post(
        reverse("admin:renewals_pendingsapkey_activate", args=[activated.pk]),
        {"fingerprint": activated.fingerprint_sha256},
        follow=True,
    )
    assert response.status_code == 200
    assert b"does not open" in response.content
    assert renewal_state() == before

    backup = SapKeyBackup.objects.get()
    move_key(key_pair_entry, backup)
    before = renewal_state()
    response = admin.post(
        reverse("admin:renewals_sapkeybackup_revert", args=[backup.pk]),
        {"replace": "on"},
        follow=True,
    )
    assert response.status_code == 200 and b"does not open" in response.content
    assert renewal_state() == before

    move_key(sap_entry, key_pair_entry)
    before = renewal_state()
    response = admin.post(
        reverse("admin:keystore_keystoreentry_export", args=[key_pair_entry.pk]),
        {"password1": "export-pw-123", "password2": "export-pw-123"},
    )
    assert response.status_code == 200 and b"does not open" in response.content
    assert renewal_state() == before


# -- PKCS#12 passwords -----------------------------------------------------------------------------


def test_pkcs12_passwords_are_never_logged_or_stored(
    tenant, sap_entry, users, pki, sap_pki, caplog, monkeypatch, tmp_path
):
    password = f"p12-{uuid.uuid4().hex}"  # unique: any sighting is this test's password
    wrong = f"wrong-{uuid.uuid4().hex}"
    export_password = f"export-{uuid.uuid4().hex}"
    caplog.set_level(logging.DEBUG)  # every logger, every level
    admin = client_for(users["Administrator"])
    pages = []

    def upload(name: str, fields: dict, data: bytes):
        response = admin.post(
            reverse(f"admin:keystore_keystoreentry_{name}"),
            {"tenant": tenant.pk, **fields, "file": SimpleUploadedFile("f.p12", data)},
            follow=True,
        )
        assert response.status_code == 200
        pages.append(response.content)

    pair = pki_factory.make_pkcs12_single("pair", pki.leaf_key, pki.chain, password)
    upload("add_key_pair", {"alias": "pair", "password": wrong}, pair)  # refused
    upload("add_key_pair", {"alias": "pair", "password": password}, pair)
    jks = pki_factory.make_jks([("store_pair", pki.leaf_key, pki.chain)], password)
    upload("add_keystore", {"password": wrong}, jks)
    upload("add_keystore", {"password": password}, jks)
    assert KeystoreEntry.objects.filter(alias__in=["pair", "store_pair"]).count() == 2

    entry = KeystoreEntry.objects.get(alias="pair")
    response = admin.post(
        reverse("admin:keystore_keystoreentry_export", args=[entry.pk]),
        {"password1": export_password, "password2": export_password},
    )
    assert response["Content-Type"] == "application/x-pkcs12"
    response = admin.post(
        reverse("admin:keystore_keystoreentry_export", args=[entry.pk]),
        {"password1": export_password, "password2": export_password + "x"},
    )
    pages.append(response.content)

    # The commands read passwords from the environment, never from their arguments.
    renewed = pki_factory.make_key()
    renewed_chain = [
        pki_factory.make_cert(
            "SAP Leaf", renewed, sap_pki.inter, sap_pki.inter_key, days=300, org="SAP SE"
        ),
        sap_pki.inter,
        sap_pki.root,
    ]
    sap_file = tmp_path / "renewed.p12"
    sap_file.write_bytes(
        pki_factory.make_pkcs12_single(SAP_ALIAS, renewed, renewed_chain, password)
    )
    store_file = tmp_path / "store.jks"
    store_file.write_bytes(jks)
    monkeypatch.setenv("HARDENING_P12_PASSWORD", password)
    out = io.StringIO()
    call_command(
        "import_sap_key",
        str(sap_file),
        "--tenant",
        tenant.slug,
        "--alias",
        SAP_ALIAS,
        "--password-env",
        "HARDENING_P12_PASSWORD",
        stdout=out,
    )
    call_command(
        "import_keystore",
        str(store_file),
        "--tenant",
        tenant.slug,
        "--password-env",
        "HARDENING_P12_PASSWORD",
        "--overwrite",
        stdout=out,
    )
    assert PendingSapKey.objects.exists()

    stored = [dumpdata(), out.getvalue(), caplog.text]
    stored += [str(record.__dict__) for record in caplog.records]
    stored += [str(session.get_decoded()) for session in Session.objects.all()]
    stored += [
        " ".join(map(str, row))
        for row in AuditEvent.objects.values_list("detail", "actor_label", "alias")
    ]
    stored += [n.subject + n.body for n in SentNotification.objects.all()]
    stored += [m.subject + m.body for m in mail.outbox]
    stored += [page.decode("utf-8", "replace") for page in pages]
    for secret in (password, wrong, export_password):
        assert not [text for text in stored if secret in text], "a password was kept"
    assert any("Wrong password" in page.decode() for page in pages)  # refusals were shown


# -- error pages with debug off ----------------------------------------------------------------


@pytest.fixture
def production_errors(settings):
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["testserver"]


def test_error_pages_with_debug_off_reveal_nothing(
    production_errors, key_pair_entry, users, pki, monkeypatch, settings
):
    marker = f"secret-marker-{uuid.uuid4().hex}"

    def broken(*args, **kwargs):
        raise RuntimeError(f"{marker} {settings.SECRET_KEY} {settings.KEYSTORE_KEK}")

    monkeypatch.setattr(services, "public_download", broken)
    client = Client(raise_request_exception=False)
    client.force_login(users["Administrator"])
    pages = {
        500: client.get(
            reverse("admin:keystore_keystoreentry_download", args=[key_pair_entry.pk, "cer"])
        ),
        404: client.get(f"/admin/keystore/keystoreentry/{key_pair_entry.pk + 999}/change/"),
        403: client_for(users["ReadOnly"]).get(
            reverse("admin:keystore_keystoreentry_export", args=[key_pair_entry.pk])
        ),
        400: client.post(
            reverse("admin:keystore_keystoreentry_add_certificate"),
            {"alias": "x" * (6 * 1024 * 1024)},
        ),
    }
    not_found = Client().get("/no-such-page/")
    pages[0] = not_found
    secrets = [
        marker,
        settings.SECRET_KEY,
        *settings.KEYSTORE_KEK,
        "Traceback",
        'File "',
        "site-packages",
        "URLconf",
        "keystore_site",
        "SELECT ",
        "DEBUG = True",
    ]
    for status, response in pages.items():
        if status:
            assert response.status_code == status, (status, response.status_code)
        body = response.content.decode("utf-8", "replace")
        assert [secret for secret in secrets if secret in body] == [], (status, body[:300])
        assert leaked(body, [pki.leaf_key]) == [], status
