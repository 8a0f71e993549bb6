"""What the renewal mails say: a new SAP key, reminders before the automatic activation, an
activation, a revert, and a key that needs attention; each recorded once in the outbox
(renewals.outbox) in the transaction of the change it reports, with its chat text for the
channels, and delivered after commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.urls import reverse
from django.utils import timezone

from keystore.models import KeyMaterial, KeystoreEntry, Tenant
from keystore.timefmt import utc
from renewals import conf
from renewals.channels.messages import ChatMessage, compose
from renewals.models import NotificationKind, PendingSapKey, SapKeyBackup, SentNotification
from renewals.outbox import (
    channels_looked_up_once,
    deliver,
    deliver_after_commit,
    recipients_for,
    record_mail,
)


def _link(url_name: str) -> str:
    base = conf.site_url()
    return f"\n{base}{reverse(url_name)}\n" if base else ""


def _key_lines(material: KeyMaterial, heading: str) -> str:
    return (
        f"{heading}\n"
        f"  Subject:        {material.subject}\n"
        f"  Issuer:         {material.issuer}\n"
        f"  Valid from:     {utc(material.valid_from, label=True)}\n"
        f"  Valid until:    {utc(material.valid_until, label=True)}\n"
        f"  SHA-256:        {material.fingerprint_sha256}\n"
    )


def _auto(pending: PendingSapKey) -> str:
    return utc(pending.auto_activation_at, label=True)


def _tenant_words(tenant: Tenant) -> str:
    return f"{tenant.name} ({tenant.slug})" if tenant.name != tenant.slug else tenant.slug


def _chat(title: str, tenant: Tenant, alias: str, lines: list[str], url_name: str) -> ChatMessage:
    """The chat text of a mail: who and what first, then the dates and the next step."""
    return compose(
        title, [f"Tenant: {_tenant_words(tenant)} | Alias: {alias}", *lines], reverse(url_name)
    )


# -- the four mails -------------------------------------------------------------------------


def notify_new_key(pending: PendingSapKey) -> SentNotification | None:
    """A new SAP key is available; call inside the transaction that stored it."""
    tenant, entry = pending.tenant, pending.entry
    attention = pending.attention(timezone.now())
    subject = f"New SAP key for {pending.alias} in {tenant.slug}: " + (
        "needs attention" if attention else f"automatic activation on {_auto(pending)}"
    )
    body = (
        f"A new SAP key is available for alias {pending.alias} in tenant "
        f"{_tenant_words(tenant)}.\n\n"
        + _key_lines(pending, "New key:")
        + f"\nCurrent key: valid until {utc(entry.valid_until, label=True)}.\n\n"
        + (
            attention
            or f"The new key will be activated automatically on {_auto(pending)}, one day "
            "before the current key expires, unless you activate it earlier."
        )
        + "\n\n"
        "Before activating: download the new certificate, its root certificate and the chain "
        "from New SAP Keys, send them to the administrators of the backend systems that use "
        "this key, and agree a time for the switch with them.\n"
        + _link("admin:renewals_pendingsapkey_changelist")
    )
    chat = _chat(
        subject,
        tenant,
        pending.alias,
        [
            f"New key valid {utc(pending.valid_from)} to {utc(pending.valid_until, label=True)}; "
            f"current key valid until {utc(entry.valid_until, label=True)}.",
            attention or f"Automatic activation on {_auto(pending)} unless activated earlier.",
            "Next: send the new certificate and its root to the backends' administrators and "
            "agree a time for the switch.",
        ],
        "admin:renewals_pendingsapkey_changelist",
    )
    notification = record_mail(
        NotificationKind.NEW_KEY,
        tenant,
        pending.alias,
        pending.fingerprint_sha256,
        pending.material_id,
        subject,
        body,
        chat=chat,
    )
    deliver_after_commit(notification)
    return notification


def _reminder(
    pending: PendingSapKey, threshold: int, now: datetime, recipients: list[str]
) -> SentNotification | None:
    tenant = pending.tenant
    at = pending.auto_activation_at
    left = at - now
    days_left = max(1, round(left / timedelta(days=1)))
    unit = "day" if days_left == 1 else "days"
    subject = (
        f"Reminder: SAP key {pending.alias} in {tenant.slug} is activated automatically "
        f"in {days_left} {unit} ({utc(at, label=True)})"
    )
    body = (
        f"The new SAP key for alias {pending.alias} in tenant {_tenant_words(tenant)} is "
        f"still waiting for activation.\n\n"
        f"It will be activated automatically on {utc(at, label=True)} "
        f"(in about {days_left} {unit}); "
        f"the current key expires on {utc(pending.entry.valid_until, label=True)}.\n\n"
        + _key_lines(pending, "New key:")
        + "\nIf the backend systems have not imported the new certificate yet, scenarios that "
        "use this key will fail after the activation.\n"
        + _link("admin:renewals_pendingsapkey_changelist")
    )
    return record_mail(
        NotificationKind.REMINDER,
        tenant,
        pending.alias,
        pending.fingerprint_sha256,
        pending.material_id,
        subject,
        body,
        threshold_days=threshold,
        recipients=recipients,
        chat=_chat(
            subject,
            tenant,
            pending.alias,
            [
                f"Still waiting: automatic activation on {utc(at, label=True)}; the current "
                f"key expires on {utc(pending.entry.valid_until, label=True)}.",
                "Next: make sure the backends imported the new certificate, then activate it, "
                "or scenarios that use this key fail after the automatic activation.",
            ],
            "admin:renewals_pendingsapkey_changelist",
        ),
    )


def notify_activated(
    *,
    tenant: Tenant,
    alias: str,
    entry: KeystoreEntry,
    backup: SapKeyBackup,
    occasion: uuid.UUID,
    activated_by: str,
    automatic: bool,
    extra: str = "",
) -> SentNotification | None:
    """Activation done; call inside the activation's transaction. `extra`: the renewal
    plan's words (the backends that never confirmed)."""
    how = "automatically" if automatic else f"by {activated_by}"
    subject = f"SAP key {alias} in {tenant.slug} was activated {how}"
    body = (
        f"The new SAP key for alias {alias} in tenant {_tenant_words(tenant)} was activated "
        f"{how} on {utc(backup.active_until, label=True)}.\n\n"
        + _key_lines(entry, "Active key now:")
        + "\n"
        + _key_lines(backup, "Previous key (kept in SAP Key History):")
        + f"  Active until:   {utc(backup.active_until, label=True)}\n\n"
        "Restart the integration flows that hold outbound connections with this key, and run "
        "their scenarios and a TLS connectivity test. If something is broken and cannot be "
        "fixed, add the previous key back to New SAP Keys from SAP Key History (identified by "
        "its Active Until) and activate it.\n" + _link("admin:renewals_sapkeybackup_changelist")
    )
    if automatic:
        body += (
            "\nThe key was activated because its predecessor expires within a day; backends "
            "that were not updated will fail, as they would have with the expired key.\n"
        )
    body += extra
    chat = _chat(
        subject,
        tenant,
        alias,
        [
            f"Activated {how} on {utc(backup.active_until, label=True)}; the new key is valid "
            f"until {utc(entry.valid_until, label=True)}, the previous one is in SAP Key "
            f"History (Active Until {utc(backup.active_until, label=True)}).",
            "Next: restart the integration flows that use this key and test their scenarios; "
            "if something breaks, revert from SAP Key History.",
            *([extra.strip()[:300]] if extra.strip() else []),
        ],
        "admin:renewals_sapkeybackup_changelist",
    )
    notification = record_mail(
        NotificationKind.ACTIVATED,
        tenant,
        alias,
        entry.fingerprint_sha256,
        occasion,
        subject,
        body,
        first_of_its_occasion=True,
        chat=chat,
    )
    deliver_after_commit(notification)
    return notification


def notify_reverted(pending: PendingSapKey, backup: SapKeyBackup) -> SentNotification | None:
    """A backup went back to New SAP Keys; call inside the revert's transaction."""
    tenant = pending.tenant
    subject = f"SAP key {pending.alias} in {tenant.slug}: a backup was added back to New SAP Keys"
    body = (
        f"{pending.provided_by_label} added the backup of alias {pending.alias} that was "
        f"active until {utc(backup.active_until, label=True)} back to New SAP Keys in tenant "
        f"{_tenant_words(tenant)}.\n\n"
        + _key_lines(pending, "Key waiting for activation:")
        + "\nIt is not active yet. "
        + (
            pending.attention(timezone.now())
            or "Activate it from New SAP Keys; otherwise it is activated automatically on "
            f"{_auto(pending)}."
        )
        + "\n"
        "Warning: backend systems that already use the newer certificate will fail after "
        "the previous key is active again.\n" + _link("admin:renewals_pendingsapkey_changelist")
    )
    chat = _chat(
        subject,
        tenant,
        pending.alias,
        [
            f"{pending.provided_by_label} added back the backup active until "
            f"{utc(backup.active_until, label=True)}; it is valid until "
            f"{utc(pending.valid_until, label=True)} and not active yet.",
            pending.attention(timezone.now())
            or f"Next: activate it from New SAP Keys, or it is activated automatically on "
            f"{_auto(pending)}. Backends already on the newer certificate will fail.",
        ],
        "admin:renewals_pendingsapkey_changelist",
    )
    notification = record_mail(
        NotificationKind.REVERTED,
        tenant,
        pending.alias,
        pending.fingerprint_sha256,
        pending.material_id,
        subject,
        body,
        chat=chat,
    )
    deliver_after_commit(notification)
    return notification


# -- reminders -------------------------------------------------------------------------------


def due_threshold(
    auto_activation_at: datetime, provided_at: datetime, now: datetime, days: Iterable[int]
) -> int | None:
    """The reminder (in days) that is due now: the closest threshold already reached. A
    threshold that was reached before the key was provided is not sent: the mail about the new
    key named the activation date already."""
    reached = [day for day in days if auto_activation_at - timedelta(days=day) <= now]
    if not reached or now >= auto_activation_at:
        return None
    threshold = min(reached)
    if auto_activation_at - timedelta(days=threshold) < provided_at:
        return None
    return threshold


def send_due_reminders(now: datetime | None = None) -> list[SentNotification]:
    """Record and send each reminder that is due; a reminder already recorded is not sent again."""
    now = now or timezone.now()
    days = conf.reminder_days()
    pending_keys = list(
        PendingSapKey.objects.in_reminder_window(now).select_related("tenant", "entry")
    )
    if not pending_keys:
        return []
    recorded_before = set(
        SentNotification.objects.filter(
            kind=NotificationKind.REMINDER,
            occasion__in=[pending.material_id for pending in pending_keys],
        ).values_list("occasion", "threshold_days")
    )
    recipients: dict[int, list[str]] = {}
    recorded: list[SentNotification] = []
    with channels_looked_up_once():
        for pending in pending_keys:
            threshold = due_threshold(pending.auto_activation_at, pending.provided_at, now, days)
            if threshold is None or (pending.material_id, threshold) in recorded_before:
                continue
            if pending.tenant_id not in recipients:
                recipients[pending.tenant_id] = recipients_for(pending.tenant)
            notification = _reminder(pending, threshold, now, recipients[pending.tenant_id])
            if notification is not None:
                recorded.append(notification)
    deliver([notification.pk for notification in recorded])
    return recorded


# -- needs attention -------------------------------------------------------------------------


def send_attention_mails(now: datetime | None = None) -> list[SentNotification]:
    """Once per waiting key that the scheduler will never activate (expired, or expiring no
    later than the key it replaces): tell the tenant's administrators, with both dates."""
    now = now or timezone.now()
    pending_keys = list(
        PendingSapKey.objects.needing_attention(now)
        .select_related("tenant", "entry")
        .exclude(
            material_id__in=SentNotification.objects.filter(kind=NotificationKind.ATTENTION).values(
                "occasion"
            )
        )
    )
    recorded: list[SentNotification] = []
    with channels_looked_up_once():
        for pending in pending_keys:
            tenant = pending.tenant
            subject = f"New SAP key {pending.alias} in {tenant.slug} needs attention"
            body = (
                f"The new SAP key for alias {pending.alias} in tenant {_tenant_words(tenant)} "
                "will not be activated automatically.\n\n"
                f"{pending.attention(now)}\n\n"
                + _key_lines(pending, "New key:")
                + f"\nCurrent key: valid until {utc(pending.entry.valid_until, label=True)}.\n\n"
                "Until a correct key arrives, the current key stays active and expires on its "
                "date. Ask SAP to provide a renewed key for this alias.\n"
                + _link("admin:renewals_pendingsapkey_changelist")
            )
            chat = _chat(
                subject,
                tenant,
                pending.alias,
                [
                    pending.attention(now),
                    f"Current key valid until {utc(pending.entry.valid_until, label=True)}.",
                    "Next: ask SAP to provide a renewed key for this alias.",
                ],
                "admin:renewals_pendingsapkey_changelist",
            )
            notification = record_mail(
                NotificationKind.ATTENTION,
                tenant,
                pending.alias,
                pending.fingerprint_sha256,
                pending.material_id,
                subject,
                body,
                chat=chat,
            )
            if notification is not None:
                recorded.append(notification)
    deliver([notification.pk for notification in recorded])
    return recorded
