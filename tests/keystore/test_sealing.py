"""Private keys at rest: sealed, bound to their row, never in clear in the database."""

import base64
import os
import subprocess
import sys

import pytest
from django.core import serializers
from django.db import connection

from keystore import crypto, sealing
from keystore.models import KeystoreEntry
from keystore.sealing import SealingError
from tests import pki as pki_factory


def _new_kek() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def test_private_key_is_sealed_and_opens(key_pair_entry, pki):
    entry = KeystoreEntry.objects.get(pk=key_pair_entry.pk)
    assert entry.kek_id == sealing.current_kek_id()
    clear = crypto.private_key_to_der(pki.leaf_key)
    assert clear not in bytes(entry.sealed_private_key)
    assert crypto.private_key_to_der(entry.open_private_key()) == clear


def test_database_holds_no_private_key_in_clear(key_pair_entry, sap_entry, pki, sap_pki):
    dump = serializers.serialize("json", KeystoreEntry.objects.all())
    assert "PRIVATE KEY" not in dump
    for key in (pki.leaf_key, sap_pki.leaf_key):
        der = crypto.private_key_to_der(key)
        assert base64.b64encode(der).decode()[:64] not in dump
    with connection.cursor() as cursor:
        cursor.execute("SELECT chain_pem, sealed_private_key FROM keystore_keystoreentry")
        for chain_pem, sealed in cursor.fetchall():
            assert "PRIVATE KEY" not in chain_pem
            raw = bytes(sealed)
            for key in (pki.leaf_key, sap_pki.leaf_key):
                assert crypto.private_key_to_der(key)[40:120] not in raw


def test_ciphertext_moved_to_another_row_does_not_open(key_pair_entry, sap_entry):
    sap_entry.sealed_private_key = key_pair_entry.sealed_private_key
    sap_entry.kek_id = key_pair_entry.kek_id
    with pytest.raises(SealingError):
        sap_entry.open_private_key()


def test_renamed_alias_without_reseal_does_not_open(key_pair_entry):
    key_pair_entry.alias = "other"
    with pytest.raises(SealingError):
        key_pair_entry.open_private_key()


def test_every_listed_kek_opens_and_the_first_seals(settings, key_pair_entry, pki):
    old = list(settings.KEYSTORE_KEK)
    new = _new_kek()
    settings.KEYSTORE_KEK = [new, *old]
    entry = KeystoreEntry.objects.get(pk=key_pair_entry.pk)
    assert crypto.private_key_matches(entry.open_private_key(), pki.leaf)
    entry.reseal()
    assert entry.kek_id == sealing.kek_id_of(base64.urlsafe_b64decode(new))
    settings.KEYSTORE_KEK = [new]
    assert crypto.private_key_matches(entry.open_private_key(), pki.leaf)
    settings.KEYSTORE_KEK = old
    with pytest.raises(SealingError, match="not configured"):
        entry.open_private_key()


def test_bad_kek_values_are_refused(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.KEYSTORE_KEK = ["not base64 !!"]
    with pytest.raises(ImproperlyConfigured):
        sealing.seal(b"x", b"aad")
    settings.KEYSTORE_KEK = [base64.urlsafe_b64encode(b"short").decode()]
    with pytest.raises(ImproperlyConfigured, match="32 bytes"):
        sealing.seal(b"x", b"aad")


def _django_setup(env_overrides: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"KEYSTORE_KEK", "DJANGO_DEBUG"}}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('started')"],
        env={**env, "DJANGO_SETTINGS_MODULE": "keystore_site.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_site_refuses_to_start_without_kek_when_debug_is_off():
    result = _django_setup({"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "x" * 60})
    assert result.returncode != 0
    assert "KEYSTORE_KEK must be set" in result.stderr


def test_site_starts_with_kek_when_debug_is_off():
    result = _django_setup(
        {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "x" * 60, "KEYSTORE_KEK": _new_kek()}
    )
    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout


def test_sealed_material_of_pending_like_rows_is_bound_to_label(tenant, pki):
    entry = KeystoreEntry(tenant=tenant, alias="a", entry_type="key_pair", owner="tenant")
    entry.set_material(pki.chain, pki.leaf_key)
    context = entry.sealing_context()
    assert context.startswith(b"keystore-entry|")
    with pytest.raises(SealingError):
        sealing.unseal(entry.kek_id, bytes(entry.sealed_private_key), b"other" + context)
    assert pki_factory  # the factory is the source of the key material above
