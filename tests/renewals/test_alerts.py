"""Expiry alerts for every entry: each threshold fires once per key, only the nearest after
downtime, to the tenant's administrators, through the scheduled scan; a new key re-arms them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from keystore import services
from keystore.crypto import to_der
from keystore.models import KeystoreEntry, Owner
from renewals import tasks
from renewals.activation import activate_pending_key
from renewals.alerts import due_alert_threshold, send_expiry_alerts
from renewals.models import NotificationKind, ScanRun, SentNotification
from tests import pki as pki_factory
from tests.keystore_site.test_dashboard import add_certificates, add_pending

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
EXPIRY = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def entry(tenant, users):
    [entry] = add_certificates(tenant, [EXPIRY], prefix="partner_root")
    return entry


@pytest.fixture
def scan(django_capture_on_commit_callbacks):
    """scan(now) -> thresholds alerted, delivering the mails as a commit would."""

    def run(now):
        with django_capture_on_commit_callbacks(execute=True):
            return [(n.alias, n.threshold_days) for n in send_expiry_alerts(now)]

    return run


def test_the_nearest_threshold_reached_is_due():
    days = (30, 14, 7, 1)
    assert due_alert_threshold(EXPIRY, EXPIRY - 31 * DAY, days) is None
    assert due_alert_threshold(EXPIRY, EXPIRY - 30 * DAY, days) == 30
    assert due_alert_threshold(EXPIRY, EXPIRY - 10 * DAY, days) == 14
    assert due_alert_threshold(EXPIRY, EXPIRY - 10 * DAY, days, {14}) is None
    assert due_alert_threshold(EXPIRY, EXPIRY - 3 * DAY, days, {30, 14}) == 7
    # A threshold further away is never sent after a nearer one.
    assert due_alert_threshold(EXPIRY, EXPIRY - 20 * DAY, days, {7}) is None
    assert due_alert_threshold(EXPIRY, EXPIRY, days) is None


def test_each_threshold_fires_once_across_repeated_scans(entry, scan):
    mail.outbox.clear()
    schedule = [
        (EXPIRY - 40 * DAY, None),
        (EXPIRY - 30 * DAY - HOUR, None),
        (EXPIRY - 30 * DAY + HOUR, 30),
        (EXPIRY - 30 * DAY + 2 * HOUR, None),
        (EXPIRY - 20 * DAY, None),
        (EXPIRY - 14 * DAY, 14),
        (EXPIRY - 14 * DAY, None),
        (EXPIRY - 8 * DAY, None),
        (EXPIRY - 7 * DAY + HOUR, 7),
        (EXPIRY - 2 * DAY, None),
        (EXPIRY - DAY + HOUR, 1),
        (EXPIRY - HOUR, None),
        (EXPIRY + HOUR, None),
    ]
    for now, expected in schedule:
        assert scan(now) == ([(entry.alias, expected)] if expected else []), now
    assert [message.subject for message in mail.outbox] == [
        f"Expiry alert: certificate {entry.alias} in tenant-a expires in {left} "
        "(2031-03-01 12:00 UTC)"
        for left in ("29 days", "14 days", "6 days", "less than a day")
    ]
    for message in mail.outbox:
        assert message.to == ["admin_a@example.test"]
        assert "Tenant A (tenant-a)" in message.body
        assert entry.fingerprint_sha256 in message.body
        assert "Valid until:    2031-03-01 12:00 UTC" in message.body
    rows = SentNotification.objects.filter(kind=NotificationKind.EXPIRY)
    assert sorted(rows.values_list("threshold_days", flat=True)) == [1, 7, 14, 30]
    assert all(row.sent_at is not None for row in rows)


def test_after_downtime_only_the_nearest_threshold_is_sent(entry, scan):
    mail.outbox.clear()
    assert scan(EXPIRY - 5 * DAY) == [(entry.alias, 7)]
    assert scan(EXPIRY - 4 * DAY) == []
    assert scan(EXPIRY - 12 * HOUR) == [(entry.alias, 1)]
    assert len(mail.outbox) == 2


def test_recipients_are_the_tenants_administrators(tenant, other_tenant, users, scan):
    from tests.conftest import make_user

    make_user("second_admin", tenant=tenant, role="Administrator")
    no_mail = make_user("no_mail", tenant=tenant, role="Administrator", email="")
    no_mail.email = ""
    no_mail.save()
    [theirs] = add_certificates(other_tenant, [EXPIRY], prefix="theirs")
    [ours] = add_certificates(tenant, [EXPIRY], prefix="ours")
    mail.outbox.clear()
    scan(EXPIRY - 3 * DAY)
    recipients = {message.subject.split()[3]: sorted(message.to) for message in mail.outbox}
    assert recipients == {
        ours.alias: ["admin_a@example.test", "second_admin@example.test"],
        theirs.alias: ["admin_b@example.test"],
    }


def test_sap_keys_are_alerted_unless_a_new_key_waits(tenant, users, scan):
    [alone, renewed] = add_certificates(
        tenant, [EXPIRY, EXPIRY], prefix="sap_key", owner=Owner.SAP, key_pair=True
    )
    add_pending(renewed)
    mail.outbox.clear()
    assert scan(EXPIRY - 10 * DAY) == [(alone.alias, 14)]
    [message] = mail.outbox
    assert message.subject.startswith(f"Expiry alert: key pair {alone.alias} in tenant-a")
    assert "none has arrived for this alias" in message.body


def test_an_overwritten_entry_is_alerted_again_for_its_new_key(tenant, entry, scan):
    assert scan(EXPIRY - 20 * DAY) == [(entry.alias, 30)]
    key = pki_factory.make_key("ec")
    renewed = pki_factory.make_cert(
        "renewed", key, not_before=EXPIRY - 400 * DAY, not_after=EXPIRY + 5 * DAY, org=None
    )
    services.import_certificate(
        tenant, entry.alias, to_der(renewed), overwrite=True, allow_expired=True
    )
    assert scan(EXPIRY - 20 * DAY + HOUR) == [(entry.alias, 30)]
    fingerprints = set(
        SentNotification.objects.filter(kind=NotificationKind.EXPIRY).values_list(
            "fingerprint", flat=True
        )
    )
    assert fingerprints == {
        entry.fingerprint_sha256,
        KeystoreEntry.objects.get(pk=entry.pk).fingerprint_sha256,
    }


def test_an_activated_sap_key_re_arms_the_alerts(tenant, users, scan):
    [sap] = add_certificates(tenant, [EXPIRY], prefix="sap_cpi", owner=Owner.SAP, key_pair=True)
    assert scan(EXPIRY - 25 * DAY) == [(sap.alias, 30)]
    pending = add_pending(sap, valid_days=60)
    activate_pending_key(tenant, sap.alias, now=EXPIRY - 20 * DAY)
    new_until = KeystoreEntry.objects.get(pk=sap.pk).valid_until
    assert new_until == pending.valid_until
    assert scan(EXPIRY - 19 * DAY) == []
    assert scan(new_until - 29 * DAY) == [(sap.alias, 30)]


def test_thresholds_follow_the_setting(entry, scan, settings):
    settings.RENEWALS_EXPIRY_ALERT_DAYS = [10, 3]
    assert scan(EXPIRY - 20 * DAY) == []
    assert scan(EXPIRY - 10 * DAY) == [(entry.alias, 10)]
    assert scan(EXPIRY - 3 * DAY) == [(entry.alias, 3)]
    settings.RENEWALS_EXPIRY_ALERT_DAYS = []
    assert scan(EXPIRY - HOUR) == []


def test_the_scheduled_scan_sends_them_and_records_them(entry, django_capture_on_commit_callbacks):
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        summary = tasks.run_auto_activation_scan((EXPIRY - 7 * DAY).isoformat())
    assert summary["alerted"] == [{"tenant": "tenant-a", "alias": entry.alias, "days": 7}]
    assert ScanRun.objects.get().alerted == 1
    assert len(mail.outbox) == 1
    with django_capture_on_commit_callbacks(execute=True):
        again = tasks.run_auto_activation_scan((EXPIRY - 7 * DAY + HOUR).isoformat())
    assert again["alerted"] == [] and len(mail.outbox) == 1


def test_a_failed_alert_mail_is_retried_by_the_next_scan(
    entry, monkeypatch, django_capture_on_commit_callbacks
):
    mail.outbox.clear()

    def smtp_down(self, *args, **kwargs):
        raise OSError("connection refused")

    with monkeypatch.context() as patch, django_capture_on_commit_callbacks(execute=True):
        patch.setattr("django.core.mail.EmailMessage.send", smtp_down)
        tasks.run_auto_activation_scan((EXPIRY - 7 * DAY).isoformat())
    row = SentNotification.objects.get(kind=NotificationKind.EXPIRY)
    assert row.sent_at is None and "refused" in row.last_error
    tasks.run_auto_activation_scan((EXPIRY - 7 * DAY + HOUR).isoformat())
    row.refresh_from_db()
    assert row.sent_at is not None and len(mail.outbox) == 1


def test_the_command_sends_due_alerts(entry):
    out = StringIO()
    call_command("send_expiry_alerts", "--now", (EXPIRY - 14 * DAY).isoformat(), stdout=out)
    assert f"alerted tenant-a/{entry.alias} (14 days before expiry) to admin_a@example.test" in (
        out.getvalue()
    )
    out = StringIO()
    call_command("send_expiry_alerts", "--now", (EXPIRY - 14 * DAY).isoformat(), stdout=out)
    assert "No expiry alert due" in out.getvalue()


def alert_queries(now) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert send_expiry_alerts(now) == []
    return len(queries)


def test_the_query_count_does_not_grow_with_entries_that_are_not_due(tenant, users):
    now = EXPIRY - 10 * DAY
    add_certificates(tenant, [EXPIRY] * 3, prefix="due")
    add_certificates(tenant, [EXPIRY + 100 * DAY] * 3, prefix="far")
    assert len(send_expiry_alerts(now)) == 3
    small = alert_queries(now)
    add_certificates(tenant, [EXPIRY] * 30, prefix="more_due")
    assert len(send_expiry_alerts(now)) == 30
    add_certificates(tenant, [EXPIRY + 100 * DAY] * 30, prefix="more_far")
    large = alert_queries(now)
    assert small == large == 2
