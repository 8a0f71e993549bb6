"""One outbox for mails and channels: an event becomes a mail row and one row per channel,
recorded with the change, delivered once after commit, retried with backoff by the scan, given
up after the last attempt; a failing channel never fails the change. Real deliveries through
apprise to an HTTP receiver on 127.0.0.1."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from renewals import outbox
from renewals.activation import activate_pending_key
from renewals.models import NotificationKind, SentNotification
from renewals.scan import auto_activate_due
from tests.renewals.channels.conftest import SECRET
from tests.renewals.conftest import SAP_ALIAS

pytestmark = pytest.mark.django_db


def rows(kind: str) -> list[SentNotification]:
    return list(SentNotification.objects.filter(kind=kind).order_by("pk"))


def test_one_event_reaches_two_channels_and_the_mail_each_once(
    sap_entry,
    provide,
    users,
    receiver,
    second_receiver,
    add_channel,
    site_url,
    django_capture_on_commit_callbacks,
):
    teams = add_channel("ops-teams", receiver.url(), "new_key,activation")
    hook = add_channel("oncall-hook", second_receiver.url(), "all")
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        pending = provide(sap_entry.tenant)

    recorded = rows(NotificationKind.NEW_KEY)
    assert [row.channel_id for row in recorded] == [None, teams.pk, hook.pk]
    mail_row = recorded[0]
    assert all(row.origin_id == mail_row.pk for row in recorded[1:])
    assert all(row.sent_at is not None and row.attempts == 1 for row in recorded)
    assert len(mail.outbox) == 1
    [first] = receiver.messages()
    [second] = second_receiver.messages()
    assert first == second

    # The chat text: tenant, alias, dates, what happened, what next, and the link.
    assert first["title"].startswith(f"New SAP key for {SAP_ALIAS} in tenant-a")
    text = first["message"]
    assert "Tenant: Tenant A (tenant-a) | Alias: " + SAP_ALIAS in text
    assert f" to {pending.valid_until:%Y-%m-%d}" in text
    assert f"current key valid until {sap_entry.valid_until:%Y-%m-%d}" in text
    assert "Next: send the new certificate" in text
    assert text.endswith(f"{site_url}/admin/renewals/pendingsapkey/")
    assert len(text) < 1200 < len(mail.outbox[0].body) + 1200

    # Delivering again, and scans re-running (before any reminder is due), send nothing more.
    assert outbox.deliver([row.pk for row in recorded]) == 0
    assert outbox.deliver_unsent() == 0
    auto_activate_due(sap_entry.valid_until - timedelta(days=18))
    auto_activate_due(sap_entry.valid_until - timedelta(days=18))
    assert len(receiver.messages()) == len(second_receiver.messages()) == 1
    assert len([m for m in mail.outbox if "New SAP key" in m.subject]) == 1


def test_each_channel_takes_only_its_events(
    sap_entry,
    pending,
    users,
    receiver,
    second_receiver,
    add_channel,
    django_capture_on_commit_callbacks,
):
    add_channel("expiry-only", receiver.url(), "expiry")
    add_channel("activations", second_receiver.url(), "activation")
    with django_capture_on_commit_callbacks(execute=True):
        activate_pending_key(sap_entry.tenant, SAP_ALIAS, actor=users["Administrator"])
    assert receiver.messages() == []
    [message] = second_receiver.messages()
    assert message["title"] == f"SAP key {SAP_ALIAS} in tenant-a was activated by admin_a"
    assert "Next: restart the integration flows" in message["message"]
    assert "SAP Key History (Active Until " in message["message"]


def test_a_backend_administrators_link_never_goes_to_a_channel(
    sap_entry, receiver, add_channel, django_capture_on_commit_callbacks
):
    """The backend administrator's mail carries a signed secret link: never a chat's."""
    import uuid

    add_channel("everything", receiver.url(), "all")
    with django_capture_on_commit_callbacks(execute=True):
        outbox.record(
            NotificationKind.BACKEND_LINK,
            sap_entry.tenant,
            SAP_ALIAS,
            "AA:BB",
            uuid.uuid4(),
            "Please import the new certificate",
            "Your link: https://keystore.example.test/backend/signed-token",
            recipients=["backend@example.test"],
        )
    assert SentNotification.objects.channel_messages().count() == 0
    assert receiver.messages() == []


def test_a_plan_mail_without_a_chat_text_is_made_short(
    sap_entry, receiver, add_channel, site_url, django_capture_on_commit_callbacks
):
    """Another room's mail (here a window notice) reaches the channel as its subject, its
    first paragraph (what happened), the short paragraphs after it, its last (what to do
    next) and its link; a long paragraph in between is left out."""
    import uuid

    add_channel("windows", receiver.url(), "window")
    body = (
        f"The planned activation window of {SAP_ALIAS} in tenant Tenant A (tenant-a) starts "
        "on 2027-01-05 22:00 UTC.\n\nNew key SHA-256: AA:BB\n\n"
        + "A long explanation nobody reads in a chat. "
        * 20
        + "\n\nNext: restart the flows and test after the activation.\n\n"
        f"{site_url}/admin/plans/renewalplan/1/change/\n"
    )
    with django_capture_on_commit_callbacks(execute=True):
        outbox.record(
            NotificationKind.WINDOW_DONE,
            sap_entry.tenant,
            SAP_ALIAS,
            "AA:BB",
            uuid.uuid4(),
            "Window over",
            body,
            recipients=[],
        )
    [message] = receiver.messages()
    assert message["title"] == "Window over"
    assert message["message"] == (
        f"The planned activation window of {SAP_ALIAS} in tenant Tenant A (tenant-a) starts "
        "on 2027-01-05 22:00 UTC.\nNew key SHA-256: AA:BB\n"
        "Next: restart the flows and test after the activation.\n"
        f"{site_url}/admin/plans/renewalplan/1/change/"
    )


def test_a_failing_receiver_is_retried_with_backoff_and_delivers_once(
    sap_entry,
    provide,
    users,
    receiver,
    add_channel,
    settings,
    django_capture_on_commit_callbacks,
):
    settings.CHANNELS_RETRY_BACKOFF = timedelta(minutes=5)
    channel = add_channel("flaky", receiver.url(), "new_key")
    receiver.statuses = [500, 503]
    with django_capture_on_commit_callbacks(execute=True):
        provide(sap_entry.tenant)
    row = SentNotification.objects.get(channel=channel)
    assert (row.sent_at, row.attempts, row.gave_up) == (None, 1, False)
    assert "error=500" in row.last_error
    failed_at = row.next_attempt_at - timedelta(minutes=5)
    assert abs((failed_at - timezone.now()).total_seconds()) < 60
    # The mail went out although the channel failed.
    assert SentNotification.objects.mails().get(kind=NotificationKind.NEW_KEY).sent_at

    # The scan right after: the backoff is not over, nothing is sent.
    assert outbox.deliver_unsent() == 0
    # Six minutes later: tried again, the service still fails; the next wait is doubled.
    assert outbox.deliver_unsent(failed_at + timedelta(minutes=6)) == 0
    row.refresh_from_db()
    assert row.attempts == 2 and "error=503" in row.last_error
    waited = row.next_attempt_at - (failed_at + timedelta(minutes=6))
    assert timedelta(minutes=9) < waited <= timedelta(minutes=10)
    # It recovered: the next due scan delivers, once.
    later = failed_at + timedelta(minutes=17)
    assert outbox.deliver_unsent(later) == 1
    assert outbox.deliver_unsent(later + timedelta(hours=1)) == 0
    row.refresh_from_db()
    assert row.sent_at is not None and row.attempts == 3 and row.last_error == ""
    assert len(receiver.messages()) == 1


def test_a_channel_is_given_up_after_the_last_attempt(
    sap_entry, provide, receiver, add_channel, settings, django_capture_on_commit_callbacks
):
    settings.CHANNELS_MAX_ATTEMPTS = 2
    settings.CHANNELS_RETRY_BACKOFF = timedelta(0)
    channel = add_channel("down", receiver.url(), "all")
    receiver.statuses = [500, 500]
    with django_capture_on_commit_callbacks(execute=True):
        provide(sap_entry.tenant)
    assert outbox.deliver_unsent() == 0
    row = SentNotification.objects.get(channel=channel)
    assert (row.sent_at, row.attempts, row.gave_up) == (None, 2, True)
    # Given up: kept with its error, never sent again although the receiver is back.
    assert outbox.deliver_unsent(timezone.now() + timedelta(days=1)) == 0
    assert receiver.messages() == []
    assert "error=500" in SentNotification.objects.get(channel=channel).last_error


@pytest.mark.django_db(transaction=True)
def test_a_failing_channel_never_fails_an_activation(
    sap_entry, pending, users, receiver, add_channel, settings
):
    """Real commits: the activation is done and its mail sent while the channel answers 500."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    channel = add_channel("broken", receiver.url(), "activation")
    receiver.statuses = [500] * 10
    result = activate_pending_key(sap_entry.tenant, SAP_ALIAS, actor=users["Administrator"])
    assert result.new_fingerprint == pending.fingerprint_sha256
    row = SentNotification.objects.get(channel=channel, kind=NotificationKind.ACTIVATED)
    assert row.attempts == 1 and row.sent_at is None
    assert SentNotification.objects.mails().get(kind=NotificationKind.ACTIVATED).sent_at


@pytest.mark.django_db(transaction=True)
def test_a_channel_message_is_rolled_back_with_its_change(
    sap_entry, pending, users, receiver, add_channel, monkeypatch
):
    """Recorded in the activation's transaction: an activation that fails after recording
    leaves no channel row and sends nothing."""
    from renewals import activation

    add_channel("activations", receiver.url(), "activation")

    def restart_fails(*args, **kwargs):
        raise RuntimeError("the flow index is locked")

    monkeypatch.setattr(activation, "record_audit", restart_fails)
    with pytest.raises(RuntimeError):
        activate_pending_key(sap_entry.tenant, SAP_ALIAS, actor=users["Administrator"])
    assert SentNotification.objects.filter(kind=NotificationKind.ACTIVATED).count() == 0
    assert receiver.messages() == []


def test_two_deliveries_of_the_same_rows_send_once(sap_entry, provide, receiver, add_channel):
    """Two workers deliver the same rows: the claim gives each row to one of them."""
    add_channel("hook", receiver.url(), "new_key")
    provide(sap_entry.tenant)  # inside the test's transaction: not delivered yet
    ids = list(SentNotification.objects.mails().values_list("pk", flat=True))
    assert outbox.deliver(ids) == 2  # the mail and its channel row
    assert outbox.deliver(ids) == 0
    assert len(receiver.messages()) == 1


def test_an_expiry_alert_reaches_a_channel_with_the_entry_link(
    tenant, users, receiver, add_channel, site_url, django_capture_on_commit_callbacks
):
    from renewals.alerts import send_expiry_alerts
    from tests.conftest import import_expired_certificate

    add_channel("expiry", receiver.url(), "expiry")
    entry = import_expired_certificate(tenant, "partner", expired_for=timedelta(days=-5))
    with django_capture_on_commit_callbacks(execute=True):
        [alert] = send_expiry_alerts()
    [message] = receiver.messages()
    assert message["title"] == alert.subject
    assert "Alias: partner" in message["message"] and "Expires in 4 days" in message["message"]
    assert message["message"].endswith(f"/admin/keystore/keystoreentry/{entry.pk}/change/")


def test_a_removed_channel_gets_nothing_and_its_waiting_messages_are_given_up(
    sap_entry, provide, receiver, add_channel, settings
):
    from renewals.channels import services

    channel = add_channel("old", receiver.url(), "all")
    provide(sap_entry.tenant)  # recorded, not delivered yet (no commit in this test)
    services.remove_channel(channel)
    row = SentNotification.objects.get(channel=channel)
    assert row.gave_up and "removed" in row.last_error
    assert outbox.deliver_unsent() == 1  # the mail only
    assert receiver.messages() == []
    channel.refresh_from_db()
    assert channel.sealed_url is None and channel.removed_at is not None
    assert SECRET not in repr(channel.__dict__)


def test_the_scans_automatic_activation_reaches_the_channel(
    sap_entry, pending, receiver, add_channel, django_capture_on_commit_callbacks
):
    """The scan reads the tenants' channels once for all its activations (notifications'
    batch) and delivers with its mails."""
    add_channel("activations", receiver.url(), "activation")
    with django_capture_on_commit_callbacks(execute=True):
        result = auto_activate_due(sap_entry.valid_until - timedelta(hours=6))
    assert len(result.activated) == 1
    [message] = receiver.messages()
    assert message["title"] == f"SAP key {SAP_ALIAS} in tenant-a was activated automatically"


def test_a_bad_setting_is_named_by_the_system_check(settings):
    from renewals.channels.conf import check_settings

    assert check_settings() == []
    settings.CHANNELS_MAX_ATTEMPTS = 0
    settings.CHANNELS_TIMEOUT = 600
    assert [error.id for error in check_settings()] == ["channels.E001", "channels.E001"]
