"""The change over time of SAP-owned keys: New SAP Keys, SAP Key History, mails and scan runs.

A pending key and a backup are key material like an entry (chain, sealed private key, fact
columns); each seals its private key for its own row, so material moves between the three
tables only through `copy_material_from`, which opens and reseals.
"""

from __future__ import annotations

from datetime import datetime
from typing import Self

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from keystore.models import KeyMaterial, KeystoreEntry, Tenant
from keystore.timefmt import utc
from renewals import conf
from renewals.querysets import (
    HistoryQuerySet,
    NotificationQuerySet,
    PendingQuerySet,
    ScanRunQuerySet,
)


class PendingSource(models.TextChoices):
    PROVISIONED = "provisioned", "Provided by SAP"
    IMPORTED = "imported", "Imported from a delivered file"
    REVERTED = "reverted", "Added back from SAP Key History"


class PendingSapKey(KeyMaterial):
    """A renewed SAP key waiting for activation ("New SAP Keys"); at most one per alias."""

    SEALING_LABEL = "pending-sap-key"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="pending_sap_keys")
    entry = models.OneToOneField(
        KeystoreEntry, on_delete=models.CASCADE, related_name="pending_sap_key"
    )
    provided_at = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=16, choices=PendingSource.choices)
    provided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    provided_by_label = models.CharField("provided by", max_length=150, blank=True)
    reverted_from = models.ForeignKey(
        "SapKeyBackup", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Set when the key is stored (neither validity changes while it waits), so that the scan
    # finds keys needing attention through an index instead of comparing every row's dates.
    replaces_longer_lived_key = models.BooleanField(
        default=False,
        db_index=True,
        help_text="It expires no later than the key it would replace: never activated "
        "automatically.",
    )

    objects = PendingQuerySet.as_manager()

    class Meta:
        verbose_name = "new SAP key"
        verbose_name_plural = "New SAP Keys"
        ordering = ["tenant__slug", "alias"]

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.alias} (new)" if self.tenant_id else self.alias

    @property
    def auto_activation_at(self) -> datetime:
        """When the scheduler activates this key: the current key's expiry minus one day."""
        return self.entry.valid_until - conf.auto_activate_before()

    def attention(self, now: datetime) -> str:
        """Why the scheduler never activates this key ("" when it will): the same rule as
        PendingQuerySet.needing_attention, in words for the list, the activation page and the
        mail."""
        current = self.entry.valid_until
        key = "This older key" if self.is_revert else "This new key"
        if self.valid_until <= now:
            return (
                f"{key} expired on {utc(self.valid_until, label=True)}: it is never "
                "activated automatically, and cannot be activated."
            )
        if self.valid_until <= current:
            advice = (
                "Activate it here if the backends need it back."
                if self.is_revert
                else "Ask SAP for a correct key."
            )
            return (
                f"{key} expires on {utc(self.valid_until, label=True)}, not after the "
                f"current key ({utc(current, label=True)}): it is never activated automatically. "
                + advice
            )
        return ""

    @property
    def is_revert(self) -> bool:
        """An older key added back from SAP Key History, not one SAP provided."""
        return self.source == PendingSource.REVERTED


class SapKeyBackup(KeyMaterial):
    """A replaced key kept for revert ("SAP Key History"); rows are never changed."""

    SEALING_LABEL = "sap-key-backup"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="sap_key_backups")
    entry = models.ForeignKey(KeystoreEntry, on_delete=models.CASCADE, related_name="backups")
    active_from = models.DateTimeField()
    active_until = models.DateTimeField(db_index=True)
    # Who activated the key that replaced this one: a user, or "automatic" for the scheduler.
    activated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    activated_by_label = models.CharField("activated by", max_length=150)

    objects = HistoryQuerySet.as_manager()

    class Meta:
        verbose_name = "SAP key backup"
        verbose_name_plural = "SAP Key History"
        ordering = ["tenant__slug", "alias", "-active_until"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "alias", "active_until"], name="one_backup_per_active_until"
            )
        ]

    def __str__(self) -> str:
        return f"{self.alias} active until {self.active_until:%Y-%m-%d %H:%M:%S} UTC"


class NotificationKind(models.TextChoices):
    NEW_KEY = "new_key", "New SAP key available"
    REMINDER = "reminder", "Reminder before automatic activation"
    ACTIVATED = "activated", "Activation done"
    REVERTED = "reverted", "Revert done"
    EXPIRY = "expiry", "Expiry alert"
    ATTENTION = "attention", "New SAP key needs attention"
    BACKEND_LINK = "backend_link", "Renewal plan: link to a backend's administrator"
    WINDOW = "window", "Renewal plan: planned activation window ahead"
    WINDOW_DONE = "window_done", "Renewal plan: planned activation window over"
    CONFIRMED = "confirmed", "Renewal plan: a backend confirmed the import"
    PROBE_FAILED = "probe_failed", "Renewal plan: a probe failed"
    APPROVAL = "approval", "Renewal plan: activation waits for a second administrator"


class OutboxQuerySet(NotificationQuerySet):
    """The outbox's own filters (here, beside the model, with the fields they read)."""

    def due(self, now: datetime) -> Self:
        """Unsent rows whose wait after a failed attempt (a channel's backoff) is over."""
        return self.unsent().filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))

    def mails(self) -> Self:
        return self.filter(channel__isnull=True)

    def channel_messages(self) -> Self:
        return self.filter(channel__isnull=False)


# The fields that name one occasion of one notification kind; each recipient (the mail, or one
# channel) is recorded once per occasion.
OCCASION_FIELDS = ["kind", "tenant", "alias", "fingerprint", "threshold_days", "occasion"]


class SentNotification(models.Model):
    """The outbox: one row per recipient of a notification, recorded once. A mail row (channel
    empty) goes to the tenant's administrators; a channel row (renewals.channels) carries the
    short chat text of the same event to one channel and points to its mail (`origin`). The
    unique constraints make a second scan (or a retried task) find the rows instead of sending
    again. The rows are written with the change they report, in the same transaction, and
    delivered after commit; `sent_at` stays empty until delivery succeeds, so a failed delivery
    is retried by the scan (a channel's after its backoff, `next_attempt_at`).

    `occasion` is the pending key the mail is about (its material_id): the same key may wait
    and be activated more than once (revert and activate again), and each time is news.
    """

    kind = models.CharField(max_length=16, choices=NotificationKind.choices)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    alias = models.CharField(max_length=250)
    fingerprint = models.CharField(max_length=95)
    threshold_days = models.PositiveSmallIntegerField(default=0)
    occasion = models.UUIDField()
    created_at = models.DateTimeField(default=timezone.now)
    recipients = models.TextField(blank=True)
    subject = models.CharField(max_length=255)
    body = models.TextField()
    # Set on a channel's row: the channel it goes to, and the mail row of the same event
    # (delivering that mail's id delivers its channel rows too).
    channel = models.ForeignKey(
        "channels.Channel",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="messages",
    )
    origin = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="channel_copies"
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    # Which delivery claimed the row: one statement claims many rows, and this tells a worker
    # which of them are its own.
    claim_token = models.UUIDField(null=True, blank=True, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Not before this time may the scan try again (empty: at the next scan, as for mails).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    gave_up = models.BooleanField(default=False)
    last_error = models.CharField(max_length=500, blank=True)

    objects = OutboxQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # Two partial constraints: NULLs are distinct in a unique constraint (SQLite and
            # PostgreSQL alike), so one constraint over the fields and the channel would let
            # a mail be recorded twice.
            models.UniqueConstraint(
                fields=OCCASION_FIELDS,
                condition=Q(channel__isnull=True),
                name="one_mail_per_occasion",
            ),
            models.UniqueConstraint(
                fields=[*OCCASION_FIELDS, "channel"],
                condition=Q(channel__isnull=False),
                name="one_channel_message_per_occasion",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.tenant.slug}/{self.alias}"

    @property
    def recipient_list(self) -> list[str]:
        return [address for address in self.recipients.split(",") if address]


class ScanRun(models.Model):
    """One run of the automatic-activation scan, for monitoring ("when did it last run?")."""

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    as_of = models.DateTimeField(help_text="The time the scan judged due keys by.")
    activated = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    reminded = models.PositiveIntegerField(default=0)
    alerted = models.PositiveIntegerField(
        default=0, help_text="Expiry alerts recorded (scheduled scans only)."
    )
    failed = models.PositiveIntegerField(default=0)
    needing_attention = models.PositiveIntegerField(
        default=0, help_text="New SAP keys that will never be activated automatically."
    )
    interrupted = models.BooleanField(
        default=False,
        help_text="The run never finished (its worker was killed); a later scan did its work.",
    )
    detail = models.TextField(blank=True)

    objects = ScanRunQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-id"]
        get_latest_by = "started_at"

    def __str__(self) -> str:
        return f"scan at {self.started_at:%Y-%m-%d %H:%M:%S}"

    @property
    def succeeded(self) -> bool:
        return self.finished_at is not None and self.failed == 0
