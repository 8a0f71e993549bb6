"""The outbox: notifications about a tenant's keys, one row per recipient, each delivered once.

A notification is first written as a SentNotification row, in the transaction of the change
it reports (so a rolled-back activation notifies nobody), and delivered after commit. The mail
row goes to the tenant's administrators; `record_mail` also writes one row per channel of the
tenant that takes the event (renewals.channels: Teams, Slack, webhooks through apprise), in the
same transaction, with a short chat text. The rows' unique constraints make every message
happen once however often the scan runs; a delivery is claimed with a conditional update, so
two workers never send the same row; a failed delivery leaves `sent_at` empty and the scan
tries again: a mail at each scan (up to RENEWALS_MAIL_MAX_ATTEMPTS), a channel message after
its backoff (up to CHANNELS_MAX_ATTEMPTS). A channel that fails never fails the change.

Mail recipients are the active users holding NodeManager.deploysecuritycontent on the tenant.
What the mails say is renewals.notifications' (and renewals.alerts', renewals.plans').
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta

from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from keystore import permissions
from keystore.models import Tenant
from renewals import conf
from renewals.channels import conf as channels_conf
from renewals.channels import events as channel_events
from renewals.channels.delivery import send_message
from renewals.channels.messages import ChatMessage, from_mail
from renewals.channels.models import Channel
from renewals.models import SentNotification

logger = logging.getLogger(__name__)

# A claim older than this belongs to a worker that died while sending; the row is free again.
STALE_CLAIM = timedelta(minutes=10)


class _Batch:
    """A scan's mails: recipients looked up once per tenant, and every mail recorded by a
    committed activation delivered together at the end (see `batched`)."""

    def __init__(self) -> None:
        self.recipients: dict[int, list[str]] = {}
        self.recorded: list[int] = []


_batch: ContextVar[_Batch | None] = ContextVar("renewals_mail_batch", default=None)

# tenant id -> its active channels, while a scan (or a loop of mails) records many rows: one
# query for the tenants instead of one per recorded mail.
_channels_seen: ContextVar[dict[int, list[Channel]] | None] = ContextVar(
    "renewals_outbox_channels", default=None
)


@contextmanager
def channels_looked_up_once(tenant_ids: Iterable[int] = ()) -> Iterator[None]:
    """Within this block each tenant's channels are read once (those of `tenant_ids` in one
    query at the start); a block inside another uses the outer one's."""
    if _channels_seen.get() is not None:
        yield
        return
    seen: dict[int, list[Channel]] = {}
    wanted = set(tenant_ids)
    if wanted:
        seen.update({tenant_id: [] for tenant_id in wanted})
        for channel in Channel.objects.active().filter(tenant_id__in=wanted).order_by("pk"):
            seen[channel.tenant_id].append(channel)
    token = _channels_seen.set(seen)
    try:
        yield
    finally:
        _channels_seen.reset(token)


def _channels_taking(kind: str, tenant: Tenant) -> list[Channel]:
    if channel_events.event_of(kind) is None:
        return []  # never to a channel (a backend administrator's link): not even a query
    seen = _channels_seen.get()
    if seen is None:
        return list(Channel.objects.for_tenant(tenant).taking(kind).order_by("pk"))
    if tenant.pk not in seen:
        seen[tenant.pk] = list(Channel.objects.active().for_tenant(tenant).order_by("pk"))
    return [channel for channel in seen[tenant.pk] if channel.takes(kind)]


@contextmanager
def batched(tenant_ids: Iterable[int] = ()) -> Iterator[None]:
    """Within this block (a scan), mails are delivered together when it ends instead of one
    by one after each commit: a hundred activations then cost a handful of delivery
    statements. A mail recorded in a transaction that rolls back is not delivered; one that
    the block does not reach (its worker dies) waits for the next scan's deliver_unsent."""
    batch = _Batch()
    ids = set(tenant_ids)
    # The recipients of every tenant the block will mail, in one lookup.
    if ids:
        batch.recipients.update(permissions.emails_with(permissions.DEPLOY, ids))
    token = _batch.set(batch)
    try:
        with channels_looked_up_once(ids):
            yield
    finally:
        _batch.reset(token)

        def deliver_batch() -> None:
            deliver(batch.recorded)

        # Outside a transaction (a scan) this runs at once; rows of activations that rolled
        # back do not exist, so the claim passes them by.
        transaction.on_commit(deliver_batch, robust=True)


def recipients_for(tenant: Tenant) -> list[str]:
    batch = _batch.get()
    if batch is not None:
        if tenant.pk not in batch.recipients:
            batch.recipients[tenant.pk] = _recipients(tenant)
        return batch.recipients[tenant.pk]
    return _recipients(tenant)


def _recipients(tenant: Tenant) -> list[str]:
    return permissions.emails_with(permissions.DEPLOY, [tenant.pk])[tenant.pk]


def record_mail(
    kind: str,
    tenant: Tenant,
    alias: str,
    fingerprint: str,
    occasion: uuid.UUID,
    subject: str,
    body: str,
    *,
    threshold_days: int = 0,
    recipients: list[str] | None = None,
    first_of_its_occasion: bool = False,
    chat: ChatMessage | None = None,
) -> SentNotification | None:
    """Write the mail's row once (this module's mails and renewals.alerts'), and one row per
    channel of the tenant that takes this kind of event, carrying `chat` (or the mail made
    short); None when this mail exists already (another scan was first). Delivering the
    mail's id delivers its channel rows too. `first_of_its_occasion`: the caller holds the
    lock that makes a second row impossible (an activation's mail is about the waiting key it
    deletes in the same transaction), so no savepoint is spent on catching one."""
    row = SentNotification(
        kind=kind,
        tenant=tenant,
        alias=alias,
        fingerprint=fingerprint,
        threshold_days=threshold_days,
        occasion=occasion,
        recipients=",".join(recipients if recipients is not None else recipients_for(tenant)),
        subject=subject[:255],
        body=body,
    )
    channels = _channels_taking(kind, tenant)
    if first_of_its_occasion:
        row.save()
        _fan_out(row, channels, chat)
        return row
    try:
        with transaction.atomic():
            row.save()
            _fan_out(row, channels, chat)
    except IntegrityError:
        return None
    return row


def _fan_out(mail: SentNotification, channels: list[Channel], chat: ChatMessage | None) -> None:
    """The channel rows of a mail row, in one statement (none without channels)."""
    if not channels:
        return
    message = chat or from_mail(mail.subject, mail.body)
    SentNotification.objects.bulk_create(
        [
            SentNotification(
                kind=mail.kind,
                tenant=mail.tenant,
                alias=mail.alias,
                fingerprint=mail.fingerprint,
                threshold_days=mail.threshold_days,
                occasion=mail.occasion,
                created_at=mail.created_at,
                subject=message.title,
                body=message.text,
                channel=channel,
                origin=mail,
            )
            for channel in channels
        ]
    )


def deliver_after_commit(notification: SentNotification | None) -> None:
    if notification is None:
        return
    notification_id = notification.pk
    batch = _batch.get()
    if batch is not None:
        batch.recorded.append(notification_id)
        return

    def deliver_recorded_mail() -> None:
        deliver([notification_id])

    # robust: the change is committed already; a delivery that breaks (say, the database is
    # lost while claiming the row) is logged and retried by the next scan, and must not turn a
    # done activation into an error for its caller. (A named function, not a partial: Django
    # logs the __qualname__ of a robust callback that fails.)
    transaction.on_commit(deliver_recorded_mail, robust=True)


def record(
    kind: str,
    tenant: Tenant,
    alias: str,
    fingerprint: str,
    occasion: uuid.UUID,
    subject: str,
    body: str,
    *,
    recipients: list[str],
    chat: ChatMessage | None = None,
) -> SentNotification | None:
    """Another room's mail (renewal plans: a backend administrator's link, a window's notice):
    recorded once in the caller's transaction with its channel rows (`chat`: their short
    text), delivered after commit, retried by the scan like this module's own; None when this
    mail exists already."""
    notification = record_mail(
        kind,
        tenant,
        alias,
        fingerprint,
        occasion,
        subject,
        body,
        recipients=recipients,
        chat=chat,
    )
    deliver_after_commit(notification)
    return notification


# -- delivery --------------------------------------------------------------------------------


def _claim(notification_ids: list[int], now: datetime) -> uuid.UUID | None:
    """Claim the given unsent rows, and the channel rows of the given mails, that nobody is
    sending and whose backoff is over, in one statement; the token names this worker's claim
    (None: nothing to send)."""
    token = uuid.uuid4()
    claimed = (
        SentNotification.objects.due(now)
        .filter(Q(pk__in=notification_ids) | Q(origin_id__in=notification_ids))
        .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - STALE_CLAIM))
        .update(claimed_at=now, claim_token=token)
    )
    return token if claimed else None


def _failed(notification: SentNotification, error: Exception, now: datetime) -> None:
    """Give the row back for the next scan (a channel's after its backoff), or give it up
    after the last attempt."""
    attempts = notification.attempts + 1
    if notification.channel_id is None:
        last, wait = conf.mail_max_attempts(), None
        logger.warning(
            "Mail %s (%s) could not be sent (attempt %s): %s",
            notification.pk,
            notification.subject,
            attempts,
            error,
        )
    else:
        channel = notification.channel
        last, wait = channels_conf.max_attempts(), channels_conf.retry_backoff(attempts)
        # The channel's name, service and host; the error's words are free of its URL.
        logger.warning(
            "Message %s to channel %s of %s (%s, %s) could not be sent (attempt %s of %s): %s",
            notification.pk,
            channel.name if channel else "?",
            notification.tenant_id,
            channel.service_name if channel else "?",
            channel.host if channel else "?",
            attempts,
            last,
            error,
        )
    SentNotification.objects.filter(pk=notification.pk).update(
        claimed_at=None,
        claim_token=None,
        attempts=attempts,
        gave_up=attempts >= last,
        next_attempt_at=now + wait if wait is not None else None,
        last_error=str(error)[:500],
    )


def _send(notification: SentNotification) -> bool:
    """Deliver one claimed row; False for a mail without any address (nothing to send)."""
    if notification.channel is not None:
        send_message(notification.channel, notification.subject, notification.body)
        return True
    recipients = notification.recipient_list
    if recipients:
        EmailMessage(notification.subject, notification.body, None, recipients).send()
    return bool(recipients)


def deliver(notification_ids: Iterable[int], now: datetime | None = None) -> int:
    """Send the given recorded rows (a mail's id stands for its channel rows too) that nobody
    has sent or is sending; returns how many. One statement claims them all, one reads them
    and one marks the sent ones (however many), so a scan that activates a hundred keys does
    not pay three statements per mail."""
    ids = list(notification_ids)
    if not ids:
        return 0
    now = now or timezone.now()
    token = _claim(ids, now)
    if token is None:
        return 0
    sent: list[int] = []
    unaddressed: list[int] = []
    claimed = SentNotification.objects.filter(claim_token=token).select_related("channel")
    for notification in claimed.order_by("pk"):
        try:
            addressed = _send(notification)
        except Exception as error:  # SMTP, network, a chat service (ChannelDeliveryError)
            _failed(notification, error, now)
            continue
        (sent if addressed else unaddressed).append(notification.pk)
    done = timezone.now()
    for pks, outcome in (
        (sent, ""),
        (unaddressed, "No administrator of the tenant has a mail address."),
    ):
        if pks:
            SentNotification.objects.filter(pk__in=pks).update(
                sent_at=done, attempts=F("attempts") + 1, last_error=outcome
            )
    return len(sent) + len(unaddressed)


def deliver_unsent(now: datetime | None = None) -> int:
    """Retry every row whose delivery failed earlier and whose backoff is over (called by each
    scan; `now` lets a test stand at a later time)."""
    now = now or timezone.now()
    due = SentNotification.objects.due(now).order_by("pk").values_list("pk", flat=True)
    return deliver(list(due), now)
