"""Activation: the current key goes to SAP Key History, the entry takes the new key, in one
transaction; a failure at any step changes nothing; a second activation finds nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail

from keystore import crypto
from keystore.models import AuditAction, AuditEvent, KeystoreEntry
from renewals.activation import (
    AlreadyActivated,
    NothingToActivate,
    RenewalError,
    activate_pending_key,
)
from renewals.models import NotificationKind, PendingSapKey, SapKeyBackup, SentNotification
from tests import pki as pki_factory
from tests.renewals.conftest import SAP_ALIAS


def key_der(material) -> bytes:
    return crypto.private_key_to_der(material.open_private_key())


def chain_der(material) -> list[bytes]:
    return [crypto.to_der(cert) for cert in material.certificate_chain()]


def test_activation_moves_the_current_key_to_history_and_the_new_key_in(
    sap_entry, pending, users, django_capture_on_commit_callbacks
):
    admin = users["Administrator"]
    old_key, old_chain = key_der(sap_entry), chain_der(sap_entry)
    new_key, new_chain = key_der(pending), chain_der(pending)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        result = activate_pending_key(sap_entry.tenant, SAP_ALIAS, actor=admin)
        assert mail.outbox == []  # nothing is mailed before the commit
    assert len(callbacks) == 1

    backup = SapKeyBackup.objects.get()
    assert (key_der(backup), chain_der(backup)) == (old_key, old_chain)
    assert backup.fingerprint_sha256 == sap_entry.fingerprint_sha256
    assert backup.active_from == sap_entry.active_since
    assert backup.active_until == result.at
    assert (backup.activated_by, backup.activated_by_label) == (admin, "admin_a")

    entry = KeystoreEntry.objects.get(pk=sap_entry.pk)
    assert (key_der(entry), chain_der(entry)) == (new_key, new_chain)
    assert entry.version == sap_entry.version + 1
    assert entry.active_since == result.at
    assert entry.modified_by_label == "admin_a"
    assert not PendingSapKey.objects.exists()

    audit = AuditEvent.objects.get(action=AuditAction.ACTIVATE)
    assert (audit.old_fingerprint, audit.new_fingerprint) == (
        sap_entry.fingerprint_sha256,
        pending.fingerprint_sha256,
    )
    assert audit.actor == admin
    assert result.old_fingerprint == sap_entry.fingerprint_sha256
    assert result.new_fingerprint == pending.fingerprint_sha256
    assert result.root_changed is False

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["admin_a@example.test"]
    assert message.subject == (f"SAP key {SAP_ALIAS} in tenant-a was activated by admin_a")
    assert pending.fingerprint_sha256 in message.body
    assert f"{result.at:%Y-%m-%d %H:%M} UTC" in message.body


def test_a_second_activation_is_told_it_was_done_and_adds_no_history(sap_entry, pending):
    activate_pending_key(sap_entry.tenant, SAP_ALIAS)
    with pytest.raises(AlreadyActivated, match="it may have been activated already"):
        activate_pending_key(sap_entry.tenant, SAP_ALIAS)
    assert SapKeyBackup.objects.count() == 1
    assert AuditEvent.objects.filter(action=AuditAction.ACTIVATE).count() == 1
    assert SentNotification.objects.filter(kind=NotificationKind.ACTIVATED).count() == 1


def test_nothing_to_activate_without_a_pending_key(sap_entry, tenant):
    with pytest.raises(NothingToActivate, match="No new SAP key is waiting"):
        activate_pending_key(tenant, SAP_ALIAS)
    with pytest.raises(NothingToActivate):
        activate_pending_key(tenant, "sap_unknown")


def assert_nothing_changed(sap_entry, pending) -> None:
    entry = KeystoreEntry.objects.get(pk=sap_entry.pk)
    assert entry.fingerprint_sha256 == sap_entry.fingerprint_sha256
    assert entry.version == sap_entry.version
    assert key_der(entry) == key_der(sap_entry)
    assert not SapKeyBackup.objects.exists()
    assert PendingSapKey.objects.get().fingerprint_sha256 == pending.fingerprint_sha256
    assert not AuditEvent.objects.filter(action=AuditAction.ACTIVATE).exists()
    assert not SentNotification.objects.filter(kind=NotificationKind.ACTIVATED).exists()


def test_a_failure_between_history_copy_and_overwrite_rolls_everything_back(
    sap_entry, pending, users, monkeypatch, django_capture_on_commit_callbacks
):
    copied = []
    original_save = SapKeyBackup.save

    def save_backup(self, *args, **kwargs):
        original_save(self, *args, **kwargs)
        copied.append(self.pk)  # the history row exists at this point

    def broken_overwrite(self, other):
        raise RuntimeError("disk full")

    monkeypatch.setattr(SapKeyBackup, "save", save_backup)
    monkeypatch.setattr(KeystoreEntry, "copy_material_from", broken_overwrite)
    mail.outbox.clear()
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError, match="disk full"),
    ):
        activate_pending_key(sap_entry.tenant, SAP_ALIAS, actor=users["Administrator"])
    assert len(copied) == 1
    assert callbacks == []
    assert mail.outbox == []
    assert_nothing_changed(sap_entry, pending)


def test_a_failing_audit_record_rolls_back_too(sap_entry, pending, monkeypatch):
    def broken_audit(*args, **kwargs):
        raise RuntimeError("audit down")

    monkeypatch.setattr("renewals.activation.record_audit", broken_audit)
    with pytest.raises(RuntimeError):
        activate_pending_key(sap_entry.tenant, SAP_ALIAS)
    assert_nothing_changed(sap_entry, pending)


def test_only_administrators_of_the_tenant_activate(sap_entry, pending, users):
    for role in ("none", "ReadOnly", "IntegrationDeveloper", "other_admin"):
        with pytest.raises(RenewalError, match="not allowed"):
            activate_pending_key(sap_entry.tenant, SAP_ALIAS, actor=users[role])
    assert_nothing_changed(sap_entry, pending)


def test_a_key_that_changed_since_review_is_not_activated(sap_entry, pending):
    with pytest.raises(RenewalError, match="changed since you reviewed it"):
        activate_pending_key(sap_entry.tenant, SAP_ALIAS, expected_fingerprint="AA:BB")
    assert_nothing_changed(sap_entry, pending)
    activate_pending_key(
        sap_entry.tenant, SAP_ALIAS, expected_fingerprint=pending.fingerprint_sha256
    )
    assert SapKeyBackup.objects.count() == 1


def test_an_expired_new_key_is_not_activated(sap_entry, pending):
    later = pending.valid_until + timedelta(seconds=1)
    with pytest.raises(RenewalError, match="expired"):
        activate_pending_key(sap_entry.tenant, SAP_ALIAS, now=later)
    assert_nothing_changed(sap_entry, pending)


def test_a_new_root_is_reported(sap_entry, provide):
    other = pki_factory.make_pki(prefix="Other SAP")
    provide(sap_entry.tenant, ca=(other.inter_key, [other.inter, other.root]))
    result = activate_pending_key(sap_entry.tenant, SAP_ALIAS)
    assert result.root_changed is True
    entry = KeystoreEntry.objects.get(pk=sap_entry.pk)
    assert entry.root_fingerprint_sha256 == crypto.certificate_facts(other.root).fingerprint_sha256
