"""A channel: one chat or webhook destination of one tenant, with the event kinds it takes.

Its apprise URL is a secret (it embeds the webhook's token): it is sealed at rest under the
KEYSTORE_KEK like a private key, bound to this row by the associated data (tenant, the row's
`key` and the URL's version), and only `open_url` ever sees it in clear, for a delivery. What
pages, commands and logs show is `service_name` and `host`, stored beside it when it is set.

A removed channel keeps its row (the outbox's messages to it stay, with what happened to
them) but loses its URL and takes no more events.
"""

from __future__ import annotations

import uuid
from typing import Self

from django.db import models
from django.db.models import Q

from keystore import sealing
from keystore.models import Tenant
from keystore.querysets import TenantScopedQuerySet
from renewals.channels.events import ALL, EVENTS, event_of


class ChannelQuerySet(TenantScopedQuerySet["Channel"]):
    def active(self) -> Self:
        return self.filter(removed_at__isnull=True)

    def taking(self, kind: str) -> Self:
        """Active channels that take this outbox kind (a NotificationKind value); none for a
        kind that never goes to a channel (the backend administrator's link)."""
        event = event_of(kind)
        if event is None:
            return self.none()
        # Events are stored between commas, so a containment test matches whole names only.
        return self.active().filter(
            Q(events__contains=f",{ALL},") | Q(events__contains=f",{event},")
        )

    def named(self, tenant: Tenant, name: str) -> Self:
        return self.filter(tenant=tenant, name=name)


class Channel(models.Model):
    SEALING_LABEL = "channel-url"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="channels")
    name = models.CharField(max_length=64)
    # Names the sealed URL (with url_version): a row's id is not known before its first save.
    key = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)
    sealed_url = models.BinaryField(null=True, editable=False)
    kek_id = models.CharField(max_length=32, blank=True, editable=False)
    url_version = models.PositiveIntegerField(default=1, editable=False)
    service = models.CharField(
        "channel kind", max_length=32, help_text="apprise's protocol, e.g. json, slack, ntfy."
    )
    service_name = models.CharField("service", max_length=64)
    host = models.CharField(max_length=255, blank=True)
    # ",new_key,activation," or ",all,": see ChannelQuerySet.taking.
    events = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150, blank=True)
    changed_at = models.DateTimeField(auto_now=True)
    removed_at = models.DateTimeField(null=True, blank=True)

    objects = ChannelQuerySet.as_manager()

    class Meta:
        verbose_name = "channel"
        verbose_name_plural = "Channels"
        ordering = ["tenant__slug", "name"]
        constraints = [
            # A removed channel's name may be used again.
            models.UniqueConstraint(
                fields=["tenant", "name"],
                condition=Q(removed_at__isnull=True),
                name="one_active_channel_name_per_tenant",
            )
        ]

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.name}" if self.tenant_id else self.name

    # -- the sealed URL ----------------------------------------------------------------------

    def sealing_context(self) -> bytes:
        return "|".join(
            [self.SEALING_LABEL, str(self.tenant_id), str(self.key), str(self.url_version)]
        ).encode("utf-8")

    def seal_url(self, url: str) -> None:
        self.kek_id, self.sealed_url = sealing.seal(url.encode("utf-8"), self.sealing_context())

    def open_url(self) -> str:
        """The URL in clear, for a delivery in memory only; never render, log or export it."""
        if self.sealed_url is None:
            raise sealing.SealingError(f"The channel {self.name} has no URL (it was removed).")
        return sealing.unseal(self.kek_id, bytes(self.sealed_url), self.sealing_context()).decode(
            "utf-8"
        )

    # -- the events --------------------------------------------------------------------------

    @property
    def event_names(self) -> tuple[str, ...]:
        return tuple(name for name in self.events.split(",") if name)

    def set_events(self, names: tuple[str, ...]) -> None:
        self.events = "," + ",".join(names) + ","

    @property
    def events_display(self) -> str:
        names = self.event_names
        if ALL in names:
            return "all events"
        labels = dict(EVENTS)
        return ", ".join(name for name in names if name in labels)

    def takes(self, kind: str) -> bool:
        """The same answer as ChannelQuerySet.taking, for channels read already."""
        event = event_of(kind)
        names = self.event_names
        return event is not None and self.is_active and (ALL in names or event in names)

    @property
    def is_active(self) -> bool:
        return self.removed_at is None
