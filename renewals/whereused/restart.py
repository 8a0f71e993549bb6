"""Restarting integration flows after an activation, and how "Restart" reaches the runtime.

An activation marks the flows whose outbound connections use the activated alias (or any key) as
"restart required" (`mark_restart_required`, inside the activation's transaction): their TLS
sockets keep the old key for up to 24 hours. `restart_flows` (the admin's "Restart" action)
restarts them through the configured callable, clears the mark and records who restarted.

WHEREUSED_RESTART_CALLABLE  dotted path of a callable taking one IntegrationFlow, e.g.
                            "mycompany.cpi.restart_flow", which asks the runtime to restart (or
                            redeploy) the flow's bundle. Returning means it worked; raising means
                            it did not, and the flow keeps its "restart required" mark.
                            Default None: the site only records who restarted and when (the
                            administrator restarts the flow in Cloud Integration by hand).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from keystore import permissions
from keystore.audit import actor_label, record_audit
from keystore.models import AuditAction, Tenant
from renewals.whereused import conf
from renewals.whereused.errors import one_line
from renewals.whereused.models import IntegrationFlow

if TYPE_CHECKING:
    from keystore.audit import Actor

logger = logging.getLogger(__name__)


def describe() -> str:
    """For pages: what "Restart" does in this deployment."""
    if conf.restart_callable() is None:
        return (
            "Restart records who restarted the flow and when; restart (or redeploy) the flow "
            "in Cloud Integration yourself."
        )
    return "Restart asks the integration runtime to restart the flow, then records it."


def mark_restart_required(
    tenant: Tenant, alias: str, *, reason: str, at: datetime | None = None
) -> int:
    """Mark the flows whose outbound connections use `alias` (or any key) as "restart
    required"; returns how many. Meant to run inside the activation's transaction.

    "Since" is the latest activation that requires the restart: only a restart begun after it
    clears the mark (see restart_flows)."""
    at = at or timezone.now()
    return IntegrationFlow.objects.holding_connections_with(tenant, alias).update(
        restart_required=True,
        restart_required_since=at,
        restart_reason=reason[:500],
    )


@dataclass(frozen=True)
class RestartResult:
    flow: IntegrationFlow
    ok: bool
    message: str


def restart_flows(flows: Iterable[IntegrationFlow], *, actor: Actor = None) -> list[RestartResult]:
    """Restart each flow through WHEREUSED_RESTART_CALLABLE (default: only record it).

    On success the "restart required" mark is cleared (unless a newer activation marked the flow
    while it restarted) and the restart is recorded with an audit event. If the callable raises,
    the mark stays and the result carries the error. Flows in tenants where the actor may not
    change content are refused one by one.
    """
    run = conf.restart_callable()
    if hasattr(flows, "select_related"):
        flows = flows.select_related("tenant")
    label = actor_label(actor)
    results = []
    for flow in flows:
        # Permission check (DEPLOY on the flow's tenant), refused flow by flow:
        if not permissions.actor_may(actor, permissions.DEPLOY, flow.tenant_id):
            results.append(
                RestartResult(
                    flow,
                    False,
                    f"{flow}: you are not allowed to restart flows in tenant {flow.tenant.slug}.",
                )
            )
            continue
        started = timezone.now()
        if run is not None:
            try:
                run(flow)
            except Exception as error:
                logger.warning("Restarting flow %s failed: %s", flow.bundle_id, error)
                results.append(
                    RestartResult(flow, False, f"{flow}: restart failed: {one_line(error)}")
                )
                continue
        now = timezone.now()
        with transaction.atomic():
            rows = IntegrationFlow.objects.filter(pk=flow.pk)
            rows.update(last_restart_at=now, last_restart_by_label=label)
            cleared = rows.filter(
                Q(restart_required_since__isnull=True) | Q(restart_required_since__lte=started)
            ).update(restart_required=False, restart_required_since=None, restart_reason="")
            record_audit(
                flow.tenant,
                "",
                AuditAction.FLOW_RESTART,
                actor,
                label=label,
                detail=f"flow restarted: {flow.bundle_name} ({flow.bundle_id})"
                + ("" if run is not None else "; recorded only")
                + (f"; was required because {flow.restart_reason}" if flow.restart_reason else ""),
                at=now,
            )
        flow.last_restart_at, flow.last_restart_by_label = now, label
        if cleared:
            flow.restart_required, flow.restart_required_since, flow.restart_reason = (
                False,
                None,
                "",
            )
        done = "restarted" if run is not None else "restart recorded"
        results.append(RestartResult(flow, True, f"{flow}: {done}."))
    return results
