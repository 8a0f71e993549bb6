"""Channels: add, change, remove, send a test, list, and reseal their URLs. One function per
operation; the admin, the commands and rotate_kek call these.

`actor` is the user who acts (an administrator of the tenant: NodeManager.deploysecuritycontent)
or None for the system (commands run by the operator). Every change is audited with the
channel's name, service and host, never its URL.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.utils import timezone

from keystore import permissions, sealing
from keystore.audit import record_audit
from keystore.models import AuditAction, Tenant
from renewals.channels import destinations, events
from renewals.channels.delivery import ChannelDeliveryError, send_message
from renewals.channels.messages import compose
from renewals.channels.models import Channel

if TYPE_CHECKING:
    from keystore.audit import Actor

logger = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")


class ChannelError(Exception):
    """Refused; the message is meant for the operator and never contains the URL."""


def _require_admin(actor: Actor, tenant: Tenant, doing: str) -> None:
    permissions.require_of_actor(actor, permissions.DEPLOY, tenant, ChannelError, doing)


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not NAME_PATTERN.match(name):
        raise ChannelError(
            "The name must be 1 to 64 letters, digits, spaces, dots, dashes or underscores, "
            "starting with a letter or digit."
        )
    return name


def _events(names: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    try:
        return events.parse_events(names)
    except events.UnknownEvent as error:
        raise ChannelError(str(error)) from None


def _destination(url: str) -> destinations.Destination:
    try:
        return destinations.checked(url)
    except destinations.DestinationError as error:
        raise ChannelError(str(error)) from None


def _set_url(channel: Channel, url: str) -> destinations.Destination:
    destination = _destination(url)
    channel.service = destination.service[:32]
    channel.service_name = destination.service_name[:64]
    channel.host = destination.host[:255]
    channel.seal_url(url.strip())
    return destination


def _actor_label(actor: Actor) -> str:
    return actor.get_username() if actor is not None else "system"


def add_channel(
    tenant: Tenant,
    name: str,
    url: str,
    event_names: str | list[str] | tuple[str, ...],
    *,
    actor: Actor = None,
) -> Channel:
    """A new channel of the tenant; its URL is checked (apprise knows it, its host passes the
    address rules) and sealed."""
    _require_admin(actor, tenant, "add channels")
    channel = Channel(tenant=tenant, name=_clean_name(name), created_by=_actor_label(actor))
    channel.set_events(_events(event_names))
    _set_url(channel, url)
    try:
        with transaction.atomic():
            channel.save()
            record_audit(
                tenant,
                "",
                AuditAction.OTHER,
                actor,
                detail=f"Channel {channel.name} added ({channel.service_name}, {channel.host}; "
                f"{channel.events_display})",
            )
    except IntegrityError:
        raise ChannelError(f"The tenant has a channel named {channel.name!r} already.") from None
    return channel


def change_channel(
    channel: Channel,
    *,
    name: str | None = None,
    event_names: str | list[str] | tuple[str, ...] | None = None,
    url: str = "",
    actor: Actor = None,
) -> Channel:
    """Rename, choose other events, or replace the URL (an empty `url` keeps the sealed one:
    it is never shown, so a form cannot send it back)."""
    _require_admin(actor, channel.tenant, "change channels")
    try:
        with transaction.atomic():
            locked = Channel.objects.select_for_update().select_related("tenant").get(pk=channel.pk)
            if not locked.is_active:
                raise ChannelError(f"The channel {locked.name!r} was removed.")
            what = []
            if name is not None and name.strip() != locked.name:
                locked.name = _clean_name(name)
                what.append(f"renamed to {locked.name}")
            if event_names is not None:
                before = locked.events
                locked.set_events(_events(event_names))
                if locked.events != before:
                    what.append(f"events: {locked.events_display}")
            if url.strip():
                # A new version: a ciphertext of the old URL no longer opens for this row.
                locked.url_version += 1
                _set_url(locked, url)
                what.append(f"URL replaced ({locked.service_name}, {locked.host})")
            if what:
                locked.save()
                record_audit(
                    locked.tenant,
                    "",
                    AuditAction.OTHER,
                    actor,
                    detail=f"Channel {channel.name} changed: {'; '.join(what)}",
                )
    except IntegrityError:
        raise ChannelError(f"The tenant has a channel named {name!r} already.") from None
    return locked


def remove_channel(channel: Channel, *, actor: Actor = None) -> Channel:
    """The channel takes no more events and its URL is erased; its messages not sent yet are
    given up (kept in the outbox with the reason)."""
    from renewals.models import SentNotification

    _require_admin(actor, channel.tenant, "remove channels")
    with transaction.atomic():
        locked = Channel.objects.select_for_update().select_related("tenant").get(pk=channel.pk)
        if not locked.is_active:
            raise ChannelError(f"The channel {locked.name!r} was removed already.")
        locked.removed_at = timezone.now()
        locked.sealed_url = None
        locked.kek_id = ""
        locked.save()
        SentNotification.objects.unsent().filter(channel=locked).update(
            gave_up=True, last_error="The channel was removed before this message was sent."
        )
        record_audit(
            locked.tenant,
            "",
            AuditAction.OTHER,
            actor,
            detail=f"Channel {locked.name} removed ({locked.service_name}, {locked.host})",
        )
    return locked


@dataclass(frozen=True)
class SendTestResult:
    ok: bool
    message: str


def send_test(channel: Channel, *, actor: Actor = None) -> SendTestResult:
    """Send a test message now (not through the outbox: the administrator waits for the
    answer) and say what happened, in words without the URL."""
    _require_admin(actor, channel.tenant, "test channels")
    if not channel.is_active:
        raise ChannelError(f"The channel {channel.name!r} was removed.")
    tenant = channel.tenant
    message = compose(
        f"Test message for channel {channel.name} of {tenant.slug}",
        [
            f"Tenant: {tenant.name} ({tenant.slug})",
            f"Sent by {_actor_label(actor)} at {timezone.now():%Y-%m-%d %H:%M} UTC.",
            f"This channel takes: {channel.events_display}.",
            "Nothing to do: this message only shows that the channel works.",
        ],
    )
    try:
        send_message(channel, message.title, message.text)
    except ChannelDeliveryError as error:
        logger.warning(
            "Test message to channel %s of %s (%s, %s) failed: %s",
            channel.name,
            tenant.slug,
            channel.service_name,
            channel.host,
            error,
        )
        return SendTestResult(False, f"The test message did not reach {channel.name}: {error}")
    return SendTestResult(True, f"The test message was sent to {channel.name}.")


@dataclass(frozen=True)
class ResealResult:
    resealed: int
    already_current: int


def reseal_all_channel_urls(*, batch_size: int = 200) -> ResealResult:
    """Re-encrypt every channel URL under the first KEYSTORE_KEK key (rotate_kek), in small
    locked batches as the private keys are."""
    current = sealing.current_kek_id()
    already = Channel.objects.filter(sealed_url__isnull=False, kek_id=current).count()
    resealed = 0
    while True:
        with transaction.atomic():
            batch = list(
                Channel.objects.select_for_update()
                .filter(sealed_url__isnull=False)
                .exclude(kek_id=current)
                .order_by("pk")[:batch_size]
            )
            for channel in batch:
                channel.seal_url(channel.open_url())
                channel.save(update_fields=["sealed_url", "kek_id"])
        resealed += len(batch)
        if len(batch) < batch_size:
            break
    return ResealResult(resealed=resealed, already_current=already)


def channel_facts(channel: Channel) -> dict[str, object]:
    """What a listing may show of a channel: never its URL."""
    return {
        "tenant": channel.tenant.slug,
        "name": channel.name,
        "service": channel.service_name,
        "kind": channel.service,
        "host": channel.host,
        "events": list(channel.event_names),
        "state": "active" if channel.is_active else "removed",
        "created_at": channel.created_at.isoformat() if channel.created_at else None,
    }


RECENT_MESSAGES = 10


def recent_messages(channel: Channel, count: int = RECENT_MESSAGES) -> list[dict[str, object]]:
    """The channel's latest outbox rows, for its page: when, what, and what became of it."""
    from renewals.models import SentNotification

    rows = []
    for row in SentNotification.objects.filter(channel=channel).order_by("-created_at", "-pk")[
        :count
    ]:
        attempts = f"{row.attempts} attempt" + ("" if row.attempts == 1 else "s")
        if row.sent_at:
            state = f"sent {row.sent_at:%Y-%m-%d %H:%M} UTC"
        elif row.gave_up:
            state = f"given up after {attempts}"
        elif row.attempts:
            when = f"{row.next_attempt_at:%Y-%m-%d %H:%M} UTC" if row.next_attempt_at else "soon"
            state = f"{attempts} failed, next at {when}"
        else:
            state = "waiting"
        rows.append(
            {
                "created_at": row.created_at,
                "title": row.subject,
                "alias": row.alias,
                "state": state,
                "error": row.last_error,
            }
        )
    return rows
