"""KEK rotation re-encrypts every key; the old KEK can then be removed."""

import base64
import os

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from keystore import crypto, sealing
from keystore.models import KeystoreEntry


def test_rotation_reseals_every_key_and_the_old_kek_can_go(
    settings, key_pair_entry, sap_entry, pki, sap_pki, capsys
):
    old = list(settings.KEYSTORE_KEK)
    new = base64.urlsafe_b64encode(os.urandom(32)).decode()
    settings.KEYSTORE_KEK = [new, *old]
    call_command("rotate_kek")
    assert "Resealed 2 private keys" in capsys.readouterr().out
    new_id = sealing.current_kek_id()
    assert set(KeystoreEntry.objects.values_list("kek_id", flat=True)) == {new_id}

    settings.KEYSTORE_KEK = [new]
    client = KeystoreEntry.objects.get(pk=key_pair_entry.pk)
    sap = KeystoreEntry.objects.get(pk=sap_entry.pk)
    assert crypto.private_key_to_der(client.open_private_key()) == crypto.private_key_to_der(
        pki.leaf_key
    )
    assert crypto.private_key_matches(sap.open_private_key(), sap_pki.leaf)

    call_command("rotate_kek")
    assert "Resealed 0 private keys; 2 were already" in capsys.readouterr().out


def test_rotation_without_the_old_kek_fails_cleanly_and_changes_nothing(settings, key_pair_entry):
    before = bytes(KeystoreEntry.objects.get(pk=key_pair_entry.pk).sealed_private_key)
    settings.KEYSTORE_KEK = [base64.urlsafe_b64encode(os.urandom(32)).decode()]
    with pytest.raises(CommandError, match="not configured"):
        call_command("rotate_kek")
    assert bytes(KeystoreEntry.objects.get(pk=key_pair_entry.pk).sealed_private_key) == before
