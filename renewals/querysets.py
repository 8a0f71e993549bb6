"""Business filters over New SAP Keys, SAP Key History and recorded mails, in the domain's words."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Self

from django.db import models
from django.db.models import Q
from django.utils import timezone

from keystore.querysets import TenantScopedQuerySet
from renewals import conf

if TYPE_CHECKING:
    from keystore.models import Tenant

    # The models are named in quotes as the querysets' type arguments (they import this module).
    from renewals.models import (  # noqa: F401
        PendingSapKey,
        SapKeyBackup,
        ScanRun,
        SentNotification,
    )


class PendingQuerySet(TenantScopedQuerySet["PendingSapKey"]):
    def needing_attention(self, now: datetime | None = None) -> Self:
        """Pending keys the scheduler never activates: expired already, or expiring no later
        than the key they would replace (activating them would shorten the alias's life)."""
        now = now or timezone.now()
        # The flag as an IN list, not a bare boolean, so that the database answers this OR
        # from the two indexes instead of reading every waiting key.
        return self.filter(Q(valid_until__lte=now) | Q(replaces_longer_lived_key__in=[True]))

    def activatable_automatically(self, now: datetime | None = None) -> Self:
        now = now or timezone.now()
        return self.filter(valid_until__gt=now, replaces_longer_lived_key=False)

    def _current_key_expiring_by(self, until: datetime) -> Self:
        # As a subquery of ids: the window on the current key's expiry is what narrows a scan
        # down (its index), and a join would let the planner start from the waiting keys'
        # own validity instead, reading them all.
        window = self.model.objects.filter(entry__valid_until__lte=until).values("pk")
        return self.filter(pk__in=window)

    def due_for_auto_activation(self, now: datetime | None = None) -> Self:
        """Pending keys whose current key expires within RENEWALS_AUTO_ACTIVATE_BEFORE (or has
        expired already), except those needing attention."""
        now = now or timezone.now()
        return self._current_key_expiring_by(
            now + conf.auto_activate_before()
        ).activatable_automatically(now)

    def in_reminder_window(self, now: datetime | None = None) -> Self:
        """Pending keys whose automatic activation is at most the largest reminder away."""
        now = now or timezone.now()
        days = conf.reminder_days()
        if not days:
            return self.none()
        horizon = now + conf.auto_activate_before() + timedelta(days=days[0])
        return self._current_key_expiring_by(horizon).activatable_automatically(now)

    def for_alias(self, tenant: Tenant, alias: str) -> Self:
        return self.filter(tenant=tenant, entry__alias=alias)


class HistoryQuerySet(TenantScopedQuerySet["SapKeyBackup"]):
    def for_alias(self, tenant: Tenant, alias: str) -> Self:
        return self.filter(tenant=tenant, alias=alias)

    def active_until_matching(self, instant: datetime, precision: timedelta | None = None) -> Self:
        """Backups whose Active Until is `instant`, or lies in [instant, instant + precision)
        when the operator typed the time less precisely than it is stored (the screens show
        whole seconds)."""
        if precision:
            return self.filter(active_until__gte=instant, active_until__lt=instant + precision)
        return self.filter(active_until=instant)


class NotificationQuerySet(TenantScopedQuerySet["SentNotification"]):
    def unsent(self) -> Self:
        return self.filter(sent_at__isnull=True, gave_up=False)


class ScanRunQuerySet(models.QuerySet["ScanRun"]):
    def abandoned(self, now: datetime | None = None) -> Self:
        """Unfinished runs older than any scan may live: django-q2 stops a task after its
        timeout, so such a run's worker was killed (or the task was lost) and nobody finishes it."""
        now = now or timezone.now()
        return self.filter(
            finished_at__isnull=True, interrupted=False, started_at__lt=now - conf.scan_lifetime()
        )
