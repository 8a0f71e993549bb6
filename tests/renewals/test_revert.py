"""Revert: a backup from SAP Key History goes back to New SAP Keys and is activated like any
new key; history is never rewritten."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail

from keystore.models import AuditAction, AuditEvent, KeystoreEntry
from renewals.activation import (
    AlreadyWaiting,
    PendingKeyExists,
    RenewalError,
    activate_pending_key,
    add_back_to_pending,
)
from renewals.models import PendingSapKey, PendingSource, SapKeyBackup
from tests.renewals.conftest import SAP_ALIAS
from tests.renewals.test_activation import chain_der, key_der


@pytest.fixture
def activated(sap_entry, pending):
    """The new key is active; the original key is the only backup."""
    activate_pending_key(sap_entry.tenant, SAP_ALIAS)
    return SapKeyBackup.objects.get()


def history_snapshot():
    return [
        (
            b.pk,
            b.fingerprint_sha256,
            b.active_from,
            b.active_until,
            b.activated_by_label,
            bytes(b.sealed_private_key),
            b.chain_pem,
        )
        for b in SapKeyBackup.objects.order_by("pk")
    ]


def test_revert_then_activate_restores_the_exact_original_key(sap_entry, activated, users):
    original_key, original_chain = key_der(sap_entry), chain_der(sap_entry)
    admin = users["Administrator"]
    before = history_snapshot()

    reverted = add_back_to_pending(activated, actor=admin)
    assert reverted.source == PendingSource.REVERTED
    assert reverted.reverted_from == activated
    assert reverted.provided_by == admin
    assert history_snapshot() == before  # the backup stays as it was

    activate_pending_key(sap_entry.tenant, SAP_ALIAS, actor=admin)
    entry = KeystoreEntry.objects.get(pk=sap_entry.pk)
    assert key_der(entry) == original_key
    assert chain_der(entry) == original_chain
    assert entry.fingerprint_sha256 == sap_entry.fingerprint_sha256

    rows = history_snapshot()
    assert len(rows) == 2 and rows[0] == before[0]
    assert AuditEvent.objects.filter(action=AuditAction.REVERT).count() == 1
    assert AuditEvent.objects.filter(action=AuditAction.ACTIVATE).count() == 2


def test_revert_mails_the_administrators_once(activated, users, django_capture_on_commit_callbacks):
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        add_back_to_pending(activated, actor=users["Administrator"])
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["admin_a@example.test"]
    assert SAP_ALIAS in message.subject and "tenant-a" in message.subject
    assert f"{activated.active_until:%Y-%m-%d %H:%M} UTC" in message.body
    assert "admin_a" in message.body
    assert "will fail" in message.body


def test_revert_asks_before_replacing_a_waiting_key(sap_entry, activated, provide):
    waiting = provide(sap_entry.tenant)
    with pytest.raises(PendingKeyExists, match="confirm replacing it"):
        add_back_to_pending(activated)
    assert PendingSapKey.objects.get().pk == waiting.pk

    reverted = add_back_to_pending(activated, replace=True)
    assert PendingSapKey.objects.get().pk == reverted.pk
    assert reverted.fingerprint_sha256 == activated.fingerprint_sha256


def test_a_repeated_revert_is_refused(activated):
    add_back_to_pending(activated)
    with pytest.raises(AlreadyWaiting, match="already"):
        add_back_to_pending(activated, replace=True)
    assert PendingSapKey.objects.count() == 1
    assert AuditEvent.objects.filter(action=AuditAction.REVERT).count() == 1


def test_revert_refuses_the_active_key_expired_backups_and_readers(sap_entry, activated, users):
    add_back_to_pending(activated)
    activate_pending_key(sap_entry.tenant, SAP_ALIAS)
    newest = SapKeyBackup.objects.order_by("-active_until").first()
    original = SapKeyBackup.objects.order_by("active_until").first()
    # The original key is active again: its old backup is the active key.
    with pytest.raises(RenewalError, match="active key"):
        add_back_to_pending(original)
    with pytest.raises(RenewalError, match="expired"):
        add_back_to_pending(newest, now=newest.valid_until + timedelta(seconds=1))
    for role in ("none", "ReadOnly", "IntegrationDeveloper", "other_admin"):
        with pytest.raises(RenewalError, match="not allowed"):
            add_back_to_pending(newest, actor=users[role])
    assert not PendingSapKey.objects.exists()
