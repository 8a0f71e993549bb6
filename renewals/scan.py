"""The scheduler's scan: the keys planned for a window that has come, then every key due for its
automatic activation (one day before the current key expires), the windows' notices, the probes
after activations, reminders and mails that failed before, and (scheduled scans) the expiry
alerts of all entries. Each key is activated through renewals.activation.activate_pending_key,
so a scan racing an administrator, another scan or a window makes one activation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from django.utils import timezone

from renewals import alerts, notifications, outbox
from renewals.activation import ActivationResult, NothingToActivate, activate_pending_key
from renewals.models import PendingSapKey, ScanRun, SentNotification
from renewals.plans import followup, window

if TYPE_CHECKING:
    from renewals.plans.probing import ProbeReport

logger = logging.getLogger(__name__)


# -- automatic activation --------------------------------------------------------------------


@dataclass
class ScanResult:
    now: datetime
    activated: list[ActivationResult] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    reminded: list[SentNotification] = field(default_factory=list)
    alerted: list[SentNotification] = field(default_factory=list)
    attention: list[SentNotification] = field(default_factory=list)
    window_notices: list[SentNotification] = field(default_factory=list)
    probed_after: list[ProbeReport] = field(default_factory=list)
    planned_refused: list[tuple[str, str, str]] = field(default_factory=list)
    recovered: int = 0  # earlier runs found abandoned and marked interrupted

    def as_dict(self) -> dict[str, object]:
        """The result as JSON data (the scheduled task returns it)."""
        return {
            "now": self.now.isoformat(),
            "activated": [
                {
                    "tenant": r.tenant.slug,
                    "alias": r.alias,
                    "fingerprint_sha256": r.new_fingerprint,
                    "kind": r.kind,
                }
                for r in self.activated
            ],
            "planned_refused": [
                {"tenant": t, "alias": a, "reason": why} for t, a, why in self.planned_refused
            ],
            "window_notices": [
                {"tenant": n.tenant.slug, "alias": n.alias} for n in self.window_notices
            ],
            "probed_after_activation": [
                {
                    "tenant": r.plan.tenant.slug,
                    "alias": r.plan.alias,
                    "succeeded": len(r.succeeded),
                    "failed": len(r.failed),
                }
                for r in self.probed_after
            ],
            "skipped": [{"tenant": t, "alias": a, "reason": why} for t, a, why in self.skipped],
            "failed": [{"tenant": t, "alias": a, "error": why} for t, a, why in self.failed],
            "reminded": [
                {"tenant": n.tenant.slug, "alias": n.alias, "days": n.threshold_days}
                for n in self.reminded
            ],
            "alerted": [
                {"tenant": n.tenant.slug, "alias": n.alias, "days": n.threshold_days}
                for n in self.alerted
            ],
            "needing_attention": [
                {"tenant": n.tenant.slug, "alias": n.alias} for n in self.attention
            ],
            "interrupted_runs_recovered": self.recovered,
        }


def auto_activate_due(now: datetime | None = None, *, expiry_alerts: bool = False) -> ScanResult:
    """Activate the keys whose planned window has come (renewals.plans.window), then every
    pending key whose current key expires within a day (or has expired), recorded as
    "automatic"; announce near windows; send due reminders; retry mails that failed before. With
    `expiry_alerts` (the scheduled scan), also send the due expiry alerts of all entries
    (renewals.alerts), after the activations so a replaced key is not alerted.

    Safe to run several times at once and to replay: each key is activated by whichever run
    locks it first, the others skip it; each mail is recorded once. A run killed half-way is
    marked interrupted by the next one, which does its remaining work: the work is derived from
    the database, not handed over.
    """
    now = now or timezone.now()
    started = timezone.now()
    recovered = ScanRun.objects.abandoned(started).update(
        interrupted=True, detail="Interrupted: the run never finished (its worker was stopped)."
    )
    if recovered:
        logger.warning("Marked %s abandoned scan run(s) interrupted; doing their work.", recovered)
    run = ScanRun.objects.create(started_at=started, as_of=now)
    result = ScanResult(now=now, recovered=recovered)
    # Mails that failed in earlier runs first; a mail failing in this run waits for the next.
    outbox.deliver_unsent()
    # Planned windows first: a key planned for today is activated as planned, not as automatic.
    planned = window.run_planned_activations(now)
    result.activated.extend(planned.activated)
    result.skipped.extend(planned.skipped)
    result.planned_refused.extend(planned.refused)
    due = list(
        PendingSapKey.objects.due_for_auto_activation(now)
        .select_related("tenant")
        .only("tenant", "alias")
        .order_by("entry__valid_until", "pk")
    )
    with outbox.batched({pending.tenant_id for pending in due}):
        for pending in due:
            tenant, alias = pending.tenant, pending.alias
            try:
                activation = activate_pending_key(tenant, alias, automatic=True, now=now)
            except NothingToActivate as error:
                result.skipped.append((tenant.slug, alias, str(error)))
            except Exception as error:  # one broken key must not stop the others
                logger.warning(
                    "Automatic activation of %s in %s failed: %s", alias, tenant.slug, error
                )
                result.failed.append((tenant.slug, alias, str(error)))
            else:
                logger.info("Activated %s in %s automatically.", alias, tenant.slug)
                result.activated.append(activation)
    result.window_notices = window.send_window_notices(now)
    # The keys activated since the last scan (here, by hand, in a window) meet their backends.
    result.probed_after = followup.probe_activated_plans(now)
    result.reminded = notifications.send_due_reminders(now)
    result.attention = notifications.send_attention_mails(now)
    if expiry_alerts:
        result.alerted = alerts.send_expiry_alerts(now)
    ScanRun.objects.filter(pk=run.pk).update(
        finished_at=timezone.now(),
        interrupted=False,  # a slow run marked by another one did finish after all
        needing_attention=PendingSapKey.objects.needing_attention(now).count(),
        activated=len(result.activated),
        skipped=len(result.skipped),
        failed=len(result.failed),
        reminded=len(result.reminded),
        alerted=len(result.alerted),
        detail="\n".join(f"{t}/{a}: {why}" for t, a, why in result.failed + result.planned_refused)[
            :4000
        ],
    )
    return result
