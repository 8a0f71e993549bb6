"""The renewal commands: each happy path, each "nothing to do" (exit non-zero, one line), JSON."""

from __future__ import annotations

import json
from datetime import UTC, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from keystore import crypto
from keystore.models import KeystoreEntry
from renewals.activation import activate_pending_key
from renewals.models import PendingSapKey, PendingSource, SapKeyBackup
from tests import pki as pki_factory
from tests.renewals.conftest import SAP_ALIAS


def run(*args, **options) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def refused(*args, **options) -> str:
    with pytest.raises(CommandError) as info:
        run(*args, **options)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.fixture
def demo_ca(monkeypatch, sap_ca):
    """keystore.sapca.sap_ca() answers with the test SAP CA (the command uses the stand-in)."""
    import keystore.sapca

    monkeypatch.setattr(keystore.sapca, "sap_ca", lambda *args, **kwargs: sap_ca)
    return sap_ca


def test_provision_sap_key(sap_entry, demo_ca):
    out = run("provision_sap_key", SAP_ALIAS, "--tenant", "tenant-a", "--valid-days", "90")
    pending = PendingSapKey.objects.get()
    assert pending.fingerprint_sha256 in out
    assert pending.issuer == sap_entry.issuer
    assert (pending.valid_until - pending.valid_from).days == 90
    message = refused("provision_sap_key", SAP_ALIAS, "--tenant", "tenant-a")
    assert "waiting" in message
    run("provision_sap_key", SAP_ALIAS, "--tenant", "tenant-a", "--replace")
    assert PendingSapKey.objects.get().pk != pending.pk
    assert "Unknown tenant" in refused("provision_sap_key", SAP_ALIAS, "--tenant", "nope")
    assert "no key pair" in refused("provision_sap_key", "sap_none", "--tenant", "tenant-a")


def test_import_sap_key(sap_entry, sap_pki, tmp_path, monkeypatch):
    key = pki_factory.make_key()
    leaf = pki_factory.make_cert("SAP Leaf", key, sap_pki.inter, sap_pki.inter_key, days=300)
    path = tmp_path / "delivery.p12"
    path.write_bytes(
        pki_factory.make_pkcs12_single(SAP_ALIAS, key, [leaf, sap_pki.inter, sap_pki.root], "pw1")
    )
    args = (
        "import_sap_key",
        str(path),
        "--tenant",
        "tenant-a",
        "--alias",
        SAP_ALIAS,
        "--password-env",
        "DELIVERY_PW",
    )
    assert "DELIVERY_PW is not set" in refused(*args)
    monkeypatch.setenv("DELIVERY_PW", "wrong")
    assert "password" in refused(*args).lower()
    monkeypatch.setenv("DELIVERY_PW", "pw1")
    out = run(*args)
    pending = PendingSapKey.objects.get()
    assert pending.source == PendingSource.IMPORTED
    assert crypto.to_der(pending.certificate()) == crypto.to_der(leaf)
    assert pending.fingerprint_sha256 in out


def test_list_sap_keys(sap_entry, pending):
    rows = json.loads(run("list_sap_keys", "--tenant", "tenant-a", "--json"))
    assert [row["alias"] for row in rows] == [SAP_ALIAS]
    row = rows[0]
    assert row["fingerprint_sha256"] == pending.fingerprint_sha256
    assert row["auto_activation_at"] == pending.auto_activation_at.astimezone(UTC).isoformat()
    assert row["current_valid_until"] == sap_entry.valid_until.astimezone(UTC).isoformat()
    assert SAP_ALIAS in run("list_sap_keys", "--tenant", "tenant-a")


def test_list_sap_keys_empty(tenant):
    assert json.loads(run("list_sap_keys", "--tenant", "tenant-a", "--json")) == []
    assert "No new SAP keys" in run("list_sap_keys", "--tenant", "tenant-a")


def test_activate_sap_key(sap_entry, pending):
    out = run("activate_sap_key", SAP_ALIAS, "--tenant", "tenant-a")
    assert "Activated" in out and pending.fingerprint_sha256 in out
    entry = KeystoreEntry.objects.get(pk=sap_entry.pk)
    assert entry.fingerprint_sha256 == pending.fingerprint_sha256
    assert SapKeyBackup.objects.get().activated_by_label == "system"
    message = refused("activate_sap_key", SAP_ALIAS, "--tenant", "tenant-a")
    assert message == (
        f"No new SAP key is waiting for {SAP_ALIAS} in tenant-a; "
        "it may have been activated already."
    )
    assert SapKeyBackup.objects.count() == 1


def test_sap_key_history_json(sap_entry, pending):
    assert json.loads(run("sap_key_history", SAP_ALIAS, "--tenant", "tenant-a", "--json")) == []
    result = activate_pending_key(sap_entry.tenant, SAP_ALIAS)
    [row] = json.loads(run("sap_key_history", SAP_ALIAS, "--tenant", "tenant-a", "--json"))
    assert row["active_until"] == result.at.astimezone(UTC).isoformat()
    assert row["fingerprint_sha256"] == sap_entry.fingerprint_sha256
    assert row["activated_by"] == "system"
    assert set(row) == {
        "alias",
        "tenant",
        "active_from",
        "active_until",
        "activated_by",
        "fingerprint_sha256",
        "valid_from",
        "valid_until",
    }
    assert sap_entry.fingerprint_sha256 in run("sap_key_history", SAP_ALIAS, "--tenant", "tenant-a")


@pytest.fixture
def two_backups(sap_entry, provide):
    """Two backups of the alias, their Active Until 0.4 s apart within one second."""
    base = sap_entry.active_since.replace(microsecond=0) + timedelta(hours=1)
    provide(sap_entry.tenant)
    first = activate_pending_key(
        sap_entry.tenant, SAP_ALIAS, now=base + timedelta(microseconds=100_000)
    )
    provide(sap_entry.tenant)
    second = activate_pending_key(
        sap_entry.tenant, SAP_ALIAS, now=base + timedelta(microseconds=500_000)
    )
    return first.backup, second.backup


def test_revert_sap_key_matches_active_until(two_backups):
    first, second = two_backups
    args = ("revert_sap_key", SAP_ALIAS, "--tenant", "tenant-a", "--active-until")
    # Whole seconds: both backups lie in that second -> ambiguous, candidates listed.
    whole = first.active_until.replace(microsecond=0)
    message = refused(*args, whole.strftime("%Y-%m-%dT%H:%M:%S"))
    assert "2 backups" in message
    assert first.active_until.isoformat() in message and second.active_until.isoformat() in message
    # The exact instant, as sap_key_history prints it, with or without a zone.
    exact = first.active_until.astimezone(UTC)
    out = run(*args, exact.isoformat())
    assert "is in New SAP Keys" in out
    assert PendingSapKey.objects.get().fingerprint_sha256 == first.fingerprint_sha256
    PendingSapKey.objects.all().delete()
    run(*args, exact.replace(tzinfo=None).isoformat(sep=" "))
    assert PendingSapKey.objects.get().fingerprint_sha256 == first.fingerprint_sha256
    # Nothing to do: no backup then, or the same key waiting already.
    assert "no backup active until" in refused(*args, "2001-01-01T00:00:00Z")
    assert "already" in refused(*args, exact.isoformat())
    assert "not an ISO-8601 time" in refused(*args, "yesterday")


def test_revert_sap_key_in_a_whole_second(sap_entry, pending):
    result = activate_pending_key(
        sap_entry.tenant,
        SAP_ALIAS,
        now=sap_entry.active_since.replace(microsecond=250_000) + timedelta(hours=1),
    )
    text = result.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    run("revert_sap_key", SAP_ALIAS, "--tenant", "tenant-a", "--active-until", text)
    assert PendingSapKey.objects.get().reverted_from == result.backup
    # With fractions the time must be exact: .25 s off by a millisecond matches nothing.
    off = (result.at + timedelta(milliseconds=1)).astimezone(UTC).isoformat()
    assert "no backup active until" in refused(
        "revert_sap_key", SAP_ALIAS, "--tenant", "tenant-a", "--active-until", off
    )


def test_revert_sap_key_replace(sap_entry, pending, provide):
    result = activate_pending_key(sap_entry.tenant, SAP_ALIAS)
    waiting = provide(sap_entry.tenant)
    args = (
        "revert_sap_key",
        SAP_ALIAS,
        "--tenant",
        "tenant-a",
        "--active-until",
        result.at.isoformat(),
    )
    assert "confirm replacing it" in refused(*args)
    assert PendingSapKey.objects.get().pk == waiting.pk
    run(*args, "--replace")
    assert PendingSapKey.objects.get().fingerprint_sha256 == sap_entry.fingerprint_sha256


def test_auto_activate_command(sap_entry, pending, expiry):
    out = run("auto_activate", "--now", (expiry - timedelta(days=3)).isoformat())
    assert "Nothing due" in out or "reminded" in out
    assert PendingSapKey.objects.exists()
    out = run("auto_activate", "--now", (expiry - timedelta(hours=12)).isoformat())
    assert f"activated tenant-a/{SAP_ALIAS}" in out
    assert SapKeyBackup.objects.get().activated_by_label == "automatic"
    assert "Nothing due" in run(
        "auto_activate", "--now", (expiry - timedelta(hours=11)).isoformat()
    )
    assert "not an ISO-8601 time" in refused("auto_activate", "--now", "soon")


def test_auto_activate_command_fails_loudly(sap_entry, provide, expiry):
    pending = provide(sap_entry.tenant)
    # Its private key was sealed under a key-encryption key this site no longer holds.
    type(pending).objects.filter(pk=pending.pk).update(kek_id="retired-kek")
    message = refused("auto_activate", "--now", expiry.isoformat())
    assert message == "1 automatic activations failed."


def test_revert_then_activate_through_commands(sap_entry, pending):
    original = crypto.private_key_to_der(sap_entry.open_private_key())
    run("activate_sap_key", SAP_ALIAS, "--tenant", "tenant-a")
    [row] = json.loads(run("sap_key_history", SAP_ALIAS, "--tenant", "tenant-a", "--json"))
    run("revert_sap_key", SAP_ALIAS, "--tenant", "tenant-a", "--active-until", row["active_until"])
    run("activate_sap_key", SAP_ALIAS, "--tenant", "tenant-a")
    entry = KeystoreEntry.objects.get(pk=sap_entry.pk)
    assert crypto.private_key_to_der(entry.open_private_key()) == original
    assert len(json.loads(run("sap_key_history", SAP_ALIAS, "--tenant", "tenant-a", "--json"))) == 2
