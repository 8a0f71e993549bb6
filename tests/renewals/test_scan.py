"""Automatic activation and reminders: which keys the scan activates when, each mail once,
and a query count that does not grow with the keystore."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from keystore.models import AuditAction, AuditEvent, EntryType, KeystoreEntry, Owner
from renewals import outbox
from renewals.activation import activate_pending_key
from renewals.models import NotificationKind, PendingSapKey, SapKeyBackup, ScanRun, SentNotification
from renewals.scan import auto_activate_due
from tests import pki as pki_factory
from tests.renewals.conftest import SAP_ALIAS


def test_nothing_is_activated_three_days_before_expiry(pending, expiry, day):
    result = auto_activate_due(expiry - 3 * day)
    assert result.activated == [] and result.failed == []
    assert PendingSapKey.objects.filter(pk=pending.pk).exists()
    assert not SapKeyBackup.objects.exists()


def test_the_key_is_activated_twelve_hours_before_expiry_as_automatic(
    sap_entry, pending, expiry, users, django_capture_on_commit_callbacks
):
    now = expiry - timedelta(hours=12)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        result = auto_activate_due(now)
    assert [(r.alias, r.automatic) for r in result.activated] == [(SAP_ALIAS, True)]
    backup = SapKeyBackup.objects.get()
    assert (backup.activated_by, backup.activated_by_label) == (None, "automatic")
    assert backup.active_until == now
    assert KeystoreEntry.objects.get(pk=sap_entry.pk).fingerprint_sha256 == (
        pending.fingerprint_sha256
    )
    assert AuditEvent.objects.get(action=AuditAction.ACTIVATE).actor_label == "automatic"
    [message] = mail.outbox
    assert message.subject == f"SAP key {SAP_ALIAS} in tenant-a was activated automatically"
    assert message.to == ["admin_a@example.test"]

    again = auto_activate_due(now + timedelta(minutes=15))
    assert again.activated == [] and again.failed == []
    assert SapKeyBackup.objects.count() == 1
    assert len(mail.outbox) == 1


def test_exactly_at_the_activation_time_and_after_expiry_the_key_is_due(
    sap_entry, provide, expiry, day
):
    provide(sap_entry.tenant)
    assert len(auto_activate_due(expiry - day - timedelta(seconds=1)).activated) == 0
    assert len(auto_activate_due(expiry - day).activated) == 1


def test_a_key_whose_predecessor_expired_during_downtime_is_activated(pending, expiry, day):
    result = auto_activate_due(expiry + 5 * day)
    assert len(result.activated) == 1


def test_the_scan_does_not_activate_an_expired_new_key(sap_entry, provide, expiry, day, users):
    provide(sap_entry.tenant, valid_days=2)
    outbox.deliver_unsent()  # the new-key mail
    mail.outbox.clear()
    result = auto_activate_due(expiry)
    assert result.activated == [] and result.failed == []
    assert PendingSapKey.objects.exists()
    run = ScanRun.objects.get()
    assert (run.failed, run.needing_attention) == (0, 1)
    [message] = mail.outbox
    assert message.subject == f"New SAP key {SAP_ALIAS} in tenant-a needs attention"
    assert "expired on" in message.body


def test_a_new_key_expiring_before_the_current_one_is_never_activated_automatically(
    sap_entry, provide, expiry, day, users
):
    """Found in a renewal: a pending key valid for 10 more days replacing one valid for 20 was
    scheduled for automatic activation when it would already have expired."""
    pending = provide(sap_entry.tenant, valid_days=10)
    assert pending.valid_until < expiry
    outbox.deliver_unsent()  # the new-key mail
    mail.outbox.clear()
    for now in (expiry - 14 * day, expiry - 7 * day, expiry - day, expiry - timedelta(hours=2)):
        result = auto_activate_due(now)
        assert result.activated == [] and result.failed == [] and result.reminded == []
    assert PendingSapKey.objects.filter(pk=pending.pk).exists()
    assert not SapKeyBackup.objects.exists()
    # One mail, at the first scan, with both dates; no reminders of an activation that never comes.
    [message] = mail.outbox
    assert message.subject == f"New SAP key {SAP_ALIAS} in tenant-a needs attention"
    assert message.to == ["admin_a@example.test"]
    assert f"{pending.valid_until:%Y-%m-%d %H:%M} UTC" in message.body
    assert f"{expiry:%Y-%m-%d %H:%M} UTC" in message.body
    assert "never activated automatically" in message.body
    assert SentNotification.objects.filter(kind=NotificationKind.ATTENTION).count() == 1
    assert set(ScanRun.objects.values_list("needing_attention", flat=True)) == {1}
    # An administrator may still activate it by hand, knowingly.
    activate_pending_key(sap_entry.tenant, SAP_ALIAS)
    assert SapKeyBackup.objects.count() == 1


def test_the_new_key_mail_says_when_a_key_needs_attention(
    sap_entry, provide, users, django_capture_on_commit_callbacks
):
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        provide(sap_entry.tenant, valid_days=10)
    [message] = mail.outbox
    assert message.subject.endswith("needs attention")
    assert "never activated automatically" in message.body
    assert "will be activated automatically" not in message.body


def test_an_abandoned_scan_is_marked_interrupted_and_its_work_done(
    sap_entry, pending, expiry, settings
):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 300}
    now = expiry - timedelta(hours=6)
    # A scan whose worker was killed 10 minutes ago, and one that may still be running.
    dead = ScanRun.objects.create(started_at=timezone.now() - timedelta(minutes=10), as_of=now)
    alive = ScanRun.objects.create(started_at=timezone.now() - timedelta(minutes=2), as_of=now)
    result = auto_activate_due(now)
    assert result.recovered == 1 and len(result.activated) == 1
    dead.refresh_from_db()
    alive.refresh_from_db()
    assert dead.interrupted and dead.finished_at is None and "Interrupted" in dead.detail
    assert not alive.interrupted
    assert auto_activate_due(now).recovered == 0  # marked once


def test_a_scan_is_recorded(pending, expiry):
    auto_activate_due(expiry - timedelta(hours=1))
    run = ScanRun.objects.get()
    assert run.finished_at is not None and run.succeeded
    assert (run.activated, run.failed) == (1, 0)
    assert run.as_of == expiry - timedelta(hours=1)


def test_reminders_at_14_7_2_1_days_each_once(pending, expiry, day, users):
    activation_at = expiry - day
    assert pending.auto_activation_at == activation_at
    hour = timedelta(hours=1)
    mail.outbox.clear()
    schedule = [
        (activation_at - 15 * day, None),
        (activation_at - 14 * day + hour, 14),
        (activation_at - 14 * day + 2 * hour, None),
        (activation_at - 10 * day, None),
        (activation_at - 7 * day, 7),
        (activation_at - 7 * day, None),
        (activation_at - 3 * day, None),
        (activation_at - 2 * day + hour, 2),
        (activation_at - day + hour, 1),
        (activation_at - hour, None),
    ]
    for now, expected in schedule:
        sent = auto_activate_due(now).reminded
        assert [n.threshold_days for n in sent] == ([expected] if expected else []), now
    assert [m.subject for m in mail.outbox] == [
        f"Reminder: SAP key {SAP_ALIAS} in tenant-a is activated automatically in {days} "
        f"{'day' if days == 1 else 'days'} ({activation_at:%Y-%m-%d %H:%M} UTC)"
        for days in (14, 7, 2, 1)
    ]
    for message in mail.outbox:
        assert message.to == ["admin_a@example.test"]
        assert "tenant-a" in message.body and pending.fingerprint_sha256 in message.body
    assert SentNotification.objects.filter(kind=NotificationKind.REMINDER).count() == 4


def test_reminders_passed_before_the_key_arrived_are_not_sent(sap_entry, provide, expiry, day):
    activation_at = expiry - day
    pending = provide(sap_entry.tenant, now=activation_at - 5 * day)
    assert auto_activate_due(activation_at - 4 * day).reminded == []
    assert [n.threshold_days for n in auto_activate_due(activation_at - 2 * day).reminded] == [2]
    assert pending.pk


def test_reminders_follow_the_setting(pending, expiry, day, settings):
    settings.RENEWALS_REMINDER_DAYS = [3]
    activation_at = expiry - day
    assert auto_activate_due(activation_at - 7 * day).reminded == []
    assert [n.threshold_days for n in auto_activate_due(activation_at - 3 * day).reminded] == [3]


def test_a_failed_mail_is_retried_by_the_next_scan(pending, expiry, day, users, monkeypatch):
    activation_at = expiry - day
    mail.outbox.clear()

    def smtp_down(self, *args, **kwargs):
        raise OSError("connection refused")

    with monkeypatch.context() as patch:
        patch.setattr("django.core.mail.EmailMessage.send", smtp_down)
        auto_activate_due(activation_at - 7 * day)
    row = SentNotification.objects.get(kind=NotificationKind.REMINDER)
    assert row.sent_at is None and row.attempts == 1 and "refused" in row.last_error
    assert mail.outbox == []

    auto_activate_due(activation_at - 7 * day + timedelta(minutes=15))
    row.refresh_from_db()
    assert row.sent_at is not None
    assert len(mail.outbox) == 1
    auto_activate_due(activation_at - 7 * day + timedelta(minutes=30))
    assert len(mail.outbox) == 1


def test_a_manually_activated_key_gets_no_more_reminders(sap_entry, pending, expiry, day):
    activation_at = expiry - day
    activate_pending_key(sap_entry.tenant, SAP_ALIAS)
    assert auto_activate_due(activation_at - 2 * day).reminded == []


# -- performance -----------------------------------------------------------------------------


def add_filler_entries(tenant, count: int, start: int) -> None:
    """Entries that are not due: certificates and SAP key pairs with new keys far from due."""
    pki = pki_factory.make_pki(prefix="Filler", leaf_days=365)
    new_leaf = pki_factory.make_cert(
        "Filler new", pki.inter_key, pki.inter, pki.inter_key, days=400
    )
    entries = []
    for number in range(start, start + count):
        entry = KeystoreEntry(
            tenant=tenant,
            alias=f"sap_filler_{number}",
            owner=Owner.SAP,
            entry_type=EntryType.KEY_PAIR,
        )
        entry.set_material(pki.chain, pki.leaf_key)
        entries.append(entry)
    KeystoreEntry.objects.bulk_create(entries)
    pendings = []
    for entry in KeystoreEntry.objects.filter(
        alias__startswith="sap_filler_", pending_sap_key=None
    ):
        pending = PendingSapKey(tenant=tenant, entry=entry, alias=entry.alias, source="provisioned")
        pending.set_material([new_leaf, pki.inter, pki.root], pki.inter_key)
        pendings.append(pending)
    PendingSapKey.objects.bulk_create(pendings)


def scan_queries(now) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as queries:
        result = auto_activate_due(now)
    return len(queries), len(result.activated)


@pytest.mark.parametrize("with_due_key", [False, True])
def test_the_scan_query_count_does_not_grow_with_entries(
    sap_entry, sap_pki, provide, expiry, tenant, with_due_key
):
    from keystore.services import create_sap_entry

    # A second SAP key pair expiring with the first, so each measured scan has one due key.
    create_sap_entry(tenant, "sap_second", sap_pki.leaf_key, sap_pki.chain)
    now = expiry - timedelta(hours=6) if with_due_key else expiry - timedelta(days=20)
    add_filler_entries(tenant, 10, 0)
    if with_due_key:
        provide(tenant, SAP_ALIAS)
    # Mails recorded by the set-up are not part of the measured scans.
    outbox.deliver_unsent()
    small = scan_queries(now)
    add_filler_entries(tenant, 90, 10)
    if with_due_key:
        provide(tenant, "sap_second")
    outbox.deliver_unsent()
    large = scan_queries(now)
    assert KeystoreEntry.objects.filter(alias__startswith="sap_filler_").count() == 100
    assert small == large
    assert small[1] == int(with_due_key)


def test_an_activation_in_the_scan_costs_at_most_ten_queries(
    sap_entry, sap_pki, provide, expiry, tenant, users
):
    """Measured as the scan's benchmark does: the queries of a scan with keys due, less those of
    a scan with none, per key (18 before the mails were batched and the locks taken in one
    statement); the locks stay: an entry and its waiting key, in this order, per key."""
    from keystore.services import create_sap_entry

    for number in range(4):
        create_sap_entry(tenant, f"sap_due_{number}", sap_pki.leaf_key, sap_pki.chain)
        provide(tenant, f"sap_due_{number}")
    outbox.deliver_unsent()
    none_due = scan_queries(expiry - timedelta(days=20))[0]
    queries, activated = scan_queries(expiry - timedelta(hours=6))
    assert activated == 4
    # Inside the test's transaction each activation is a savepoint pair instead of
    # BEGIN/COMMIT: the same count as in production on SQLite.
    assert (queries - none_due) / activated <= 10
