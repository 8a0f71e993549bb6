"""Expiry alerts for every keystore entry, SAP- or tenant-owned, mailed to the tenant's
administrators before the entry's certificate expires.

Thresholds are RENEWALS_EXPIRY_ALERT_DAYS (default 30, 14, 7 and 1 days before expiry). Each
alert is a SentNotification row of kind "expiry", unique per (tenant, alias, fingerprint,
threshold), so every threshold fires once per key however often the scan runs; a new key under
the alias (activation, overwrite) has a new fingerprint and is alerted afresh. Only the nearest
threshold reached is sent, so a scan after downtime sends one alert per entry, not a burst, and
a threshold further from expiry is never sent after a nearer one.

SAP keys with a new key waiting in New SAP Keys get no expiry alert: the new key is activated
before the current one expires, and the reminders before the automatic activation
(renewals.notifications) tell the administrators when.

The scheduled scan (renewals.tasks.run_auto_activation_scan) calls `send_expiry_alerts`; so does
the `send_expiry_alerts` command.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import partial

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from keystore.models import EntryType, KeystoreEntry, Owner, Tenant
from keystore.timefmt import utc
from renewals import conf, outbox
from renewals.channels.messages import compose
from renewals.models import NotificationKind, SentNotification

# Alerts name their key by uuid5(tenant, alias, fingerprint): stable across scans, new per key.
ALERT_NAMESPACE = uuid.UUID("6b1f0c5e-2d55-4c1e-9a7e-6a3f1f0d8e21")
DAY = timedelta(days=1)


def alert_occasion(tenant_id: int, alias: str, fingerprint: str) -> uuid.UUID:
    return uuid.uuid5(ALERT_NAMESPACE, f"{tenant_id}|{alias}|{fingerprint}")


def due_alert_threshold(
    valid_until: datetime, now: datetime, days: Iterable[int], sent: Iterable[int] = ()
) -> int | None:
    """The alert (in days before expiry) that is due now: the nearest threshold reached, unless
    it or a nearer one was sent already. None once the certificate has expired."""
    if now >= valid_until:
        return None
    reached = [day for day in days if valid_until - timedelta(days=day) <= now]
    if not reached:
        return None
    threshold = min(reached)
    if any(done <= threshold for done in sent):
        return None
    return threshold


def _tenant_words(tenant: Tenant) -> str:
    return f"{tenant.name} ({tenant.slug})" if tenant.name != tenant.slug else tenant.slug


def _time_left(valid_until: datetime, now: datetime) -> str:
    whole_days = (valid_until - now) // DAY
    if whole_days < 1:
        return "in less than a day"
    return f"in {whole_days} day" + ("" if whole_days == 1 else "s")


def _what_to_do(entry: KeystoreEntry) -> str:
    if entry.owner == Owner.SAP:
        return (
            "SAP provides a renewed key for an SAP-owned key pair about 60 days before it "
            "expires, in New SAP Keys under the same alias; none has arrived for this alias. "
            "Contact SAP support: once the current key expires, scenarios that use it fail.\n"
        )
    if entry.entry_type == EntryType.KEY_PAIR:
        return (
            "Obtain a renewed certificate for this key pair (or a new key pair), upload it under "
            "the same alias before the current one expires, and send the new certificate to the "
            "administrators of the backend systems that use it.\n"
        )
    return (
        "Obtain the renewed certificate from its owner and upload it under the same alias "
        "before the current one expires; connections and verifications that trust it fail "
        "afterwards.\n"
    )


def _alert(
    entry: KeystoreEntry,
    threshold: int,
    now: datetime,
    recipients: list[str],
    occasion: uuid.UUID,
) -> SentNotification | None:
    tenant = entry.tenant
    left = _time_left(entry.valid_until, now)
    kind = entry.get_entry_type_display().lower()
    subject = (
        f"Expiry alert: {kind} {entry.alias} in {tenant.slug} expires {left} "
        f"({utc(entry.valid_until, label=True)})"
    )
    base = conf.site_url()
    link = (
        f"\n{base}{reverse('admin:keystore_keystoreentry_change', args=[entry.pk])}\n"
        if base
        else ""
    )
    body = (
        f"The {kind} {entry.alias} in tenant {_tenant_words(tenant)} "
        f"expires {left}, on {utc(entry.valid_until, label=True)}.\n\n"
        f"  Owner:          {entry.get_owner_display()}\n"
        f"  Subject:        {entry.subject}\n"
        f"  Issuer:         {entry.issuer}\n"
        f"  Valid from:     {utc(entry.valid_from, label=True)}\n"
        f"  Valid until:    {utc(entry.valid_until, label=True)}\n"
        f"  SHA-256:        {entry.fingerprint_sha256}\n\n"
        + _what_to_do(entry)
        + f"\nThis is the {threshold}-day alert; alerts are sent "
        f"{', '.join(str(day) for day in conf.expiry_alert_days())} days before expiry, "
        "each once per key.\n" + link
    )
    chat = compose(
        subject,
        [
            f"Tenant: {_tenant_words(tenant)} | Alias: {entry.alias} "
            f"({entry.get_owner_display()} {kind})",
            f"Expires {left}, on {utc(entry.valid_until, label=True)} "
            f"(valid from {utc(entry.valid_from)}).",
            "Next: " + _what_to_do(entry).strip(),
        ],
        reverse("admin:keystore_keystoreentry_change", args=[entry.pk]),
    )
    return outbox.record_mail(
        NotificationKind.EXPIRY,
        tenant,
        entry.alias,
        entry.fingerprint_sha256,
        occasion,
        subject,
        body,
        threshold_days=threshold,
        recipients=recipients,
        chat=chat,
    )


def send_expiry_alerts(now: datetime | None = None) -> list[SentNotification]:
    """Record each expiry alert that is due and deliver it after commit; an alert already
    recorded is not sent again. Two queries find the work (the entries within the largest
    threshold, and their alerts so far) however many entries there are."""
    now = now or timezone.now()
    days = conf.expiry_alert_days()
    if not days:
        return []
    entries = list(
        KeystoreEntry.objects.expiring(timedelta(days=days[0]), now)
        .filter(pending_sap_key__isnull=True)
        .select_related("tenant")
        .defer("chain_pem", "sealed_private_key")
        .order_by("valid_until", "pk")
    )
    if not entries:
        return []
    occasions = {
        entry.pk: alert_occasion(entry.tenant_id, entry.alias, entry.fingerprint_sha256)
        for entry in entries
    }
    sent: dict[uuid.UUID, set[int]] = {}
    for occasion, sent_threshold in SentNotification.objects.filter(
        kind=NotificationKind.EXPIRY, occasion__in=occasions.values()
    ).values_list("occasion", "threshold_days"):
        sent.setdefault(occasion, set()).add(sent_threshold)
    recipients: dict[int, list[str]] = {}
    recorded: list[SentNotification] = []
    # Each tenant's channels are read once for all its alerts, when its first one is due.
    with outbox.channels_looked_up_once():
        for entry in entries:
            occasion = occasions[entry.pk]
            threshold = due_alert_threshold(entry.valid_until, now, days, sent.get(occasion, ()))
            if threshold is None:
                continue
            if entry.tenant_id not in recipients:
                recipients[entry.tenant_id] = outbox.recipients_for(entry.tenant)
            notification = _alert(entry, threshold, now, recipients[entry.tenant_id], occasion)
            if notification is not None:
                recorded.append(notification)
    if recorded:
        transaction.on_commit(
            partial(outbox.deliver, [notification.pk for notification in recorded])
        )
    return recorded
