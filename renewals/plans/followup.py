"""After the activation (issue 17, item 4): the same probe runs with the active key.

The scan probes the backends of every plan whose key was activated since its last run (manual,
planned or automatic), once, with the active key: a failure is mailed to the tenant's
administrators (and to the channels taking probe_failed) while the revert is still cheap, and
the result is a line of the plan's checklist. Pages do not wait for handshakes: a manual
activation's probe runs in the next scan.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from renewals.plans import evidence, probing
from renewals.plans.models import RenewalPlan
from renewals.plans.services import PlanError

logger = logging.getLogger(__name__)

#: Plans older than this are not probed any more: their activation is history.
LOOK_BACK = timedelta(days=30)


def probe_activated_plans(now: datetime | None = None) -> list[probing.ProbeReport]:
    """Probe each recently activated plan's backends with the active key, once per plan."""
    now = now or timezone.now()
    reports = []
    for plan in RenewalPlan.objects.activated_unprobed(now - LOOK_BACK).select_related("tenant"):
        with transaction.atomic():
            # Claimed first, so two scans never probe the same plan twice.
            claimed = RenewalPlan.objects.filter(
                pk=plan.pk, activation_probed_at__isnull=True
            ).update(activation_probed_at=now)
        if not claimed or evidence.activation_of(plan) is None:
            continue  # another scan was first, or the key left without an activation
        try:
            reports.append(probing.probe_plan(plan, active=True, actor=None, now=now))
        except PlanError as error:
            # Nothing to probe (no HTTPS or TLS backend) is an answer too.
            logger.info("No probe after the activation of %s: %s", plan, error)
    return reports
