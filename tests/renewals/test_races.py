"""Concurrent activations on PostgreSQL: real threads, real row locks, one outcome.

Each case starts its callers together (a barrier) and holds the lock a moment inside the
activation, so the other callers are queued on the entry row when the first commits.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection

from keystore.models import AuditAction, AuditEvent, KeystoreEntry
from renewals import activation
from renewals.activation import AlreadyActivated, activate_pending_key
from renewals.models import NotificationKind, PendingSapKey, SapKeyBackup, SentNotification
from renewals.scan import auto_activate_due
from tests.renewals.conftest import SAP_ALIAS

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row-lock races need PostgreSQL"),
    pytest.mark.django_db(transaction=True),
]

HOLD_SECONDS = 0.3


@pytest.fixture
def slow_activation(monkeypatch):
    """Keep the entry row locked a moment after the overwrite, before the commit."""
    original = activation.record_audit

    def record_audit_slowly(*args, **kwargs):
        time.sleep(HOLD_SECONDS)
        return original(*args, **kwargs)

    monkeypatch.setattr(activation, "record_audit", record_audit_slowly)


def run_together(*calls):
    """Run the calls in threads started together; returns ("ok", value) or ("error", exc)."""
    barrier = threading.Barrier(len(calls))
    outcomes: list = [None] * len(calls)

    def worker(index, call):
        try:
            barrier.wait(timeout=10)
            outcomes[index] = ("ok", call())
        except Exception as error:
            outcomes[index] = ("error", error)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=worker, args=(index, call)) for index, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return outcomes


def assert_activated_once(sap_entry, pending) -> None:
    assert SapKeyBackup.objects.count() == 1
    assert SapKeyBackup.objects.get().fingerprint_sha256 == sap_entry.fingerprint_sha256
    entry = KeystoreEntry.objects.get(pk=sap_entry.pk)
    assert entry.fingerprint_sha256 == pending.fingerprint_sha256
    assert entry.version == sap_entry.version + 1
    assert not PendingSapKey.objects.exists()
    assert AuditEvent.objects.filter(action=AuditAction.ACTIVATE).count() == 1
    assert SentNotification.objects.filter(kind=NotificationKind.ACTIVATED).count() == 1
    activated_mails = [m for m in mail.outbox if "was activated" in m.subject]
    assert len(activated_mails) == 1


def test_two_administrators_activating_together(sap_entry, pending, users, slow_activation):
    admin = users["Administrator"]
    mail.outbox.clear()
    outcomes = run_together(
        lambda: activate_pending_key(sap_entry.tenant, SAP_ALIAS, actor=admin),
        lambda: activate_pending_key(sap_entry.tenant, SAP_ALIAS, actor=admin),
    )
    kinds = sorted(kind for kind, _ in outcomes)
    assert kinds == ["error", "ok"], outcomes
    [error] = [value for kind, value in outcomes if kind == "error"]
    assert isinstance(error, AlreadyActivated)
    assert "may have been activated already" in str(error)
    assert_activated_once(sap_entry, pending)


def test_an_administrator_and_the_scan_together(sap_entry, pending, expiry, users, slow_activation):
    admin = users["Administrator"]
    mail.outbox.clear()
    outcomes = run_together(
        lambda: activate_pending_key(sap_entry.tenant, SAP_ALIAS, actor=admin),
        lambda: auto_activate_due(expiry - timedelta(hours=12)),
    )
    manual_kind, manual = outcomes[0]
    scan_kind, scan = outcomes[1]
    assert scan_kind == "ok", scan
    assert scan.failed == []
    if manual_kind == "ok":
        assert scan.activated == []
        assert SapKeyBackup.objects.get().activated_by_label == "admin_a"
    else:
        assert isinstance(manual, AlreadyActivated)
        assert len(scan.activated) == 1
        assert SapKeyBackup.objects.get().activated_by_label == "automatic"
    assert_activated_once(sap_entry, pending)


def test_three_scans_at_once(sap_entry, pending, expiry, users, slow_activation):
    mail.outbox.clear()
    now = expiry - timedelta(hours=12)
    outcomes = run_together(*[lambda: auto_activate_due(now)] * 3)
    assert [kind for kind, _ in outcomes] == ["ok"] * 3, outcomes
    results = [value for _, value in outcomes]
    assert sum(len(result.activated) for result in results) == 1
    assert all(result.failed == [] for result in results)
    assert SapKeyBackup.objects.get().activated_by_label == "automatic"
    assert_activated_once(sap_entry, pending)


def test_three_scans_send_each_reminder_once(pending, expiry, users):
    mail.outbox.clear()
    now = expiry - timedelta(days=8)  # seven days before the automatic activation
    outcomes = run_together(*[lambda: auto_activate_due(now)] * 3)
    assert [kind for kind, _ in outcomes] == ["ok"] * 3, outcomes
    assert sum(len(result.reminded) for _, result in outcomes) == 1
    assert SentNotification.objects.filter(kind=NotificationKind.REMINDER).count() == 1
    assert len([m for m in mail.outbox if m.subject.startswith("Reminder")]) == 1
