"""After the activation (issue 17, item 7): the plan's checklist and its evidence report.

The checklist: the flows to restart (from the restart marks of where-used), the probe of every
backend with an HTTPS or TLS address with the active key, and the revert link (the previous key
in SAP Key History). The plan is done when every flow was restarted after the activation and
every probe with the active key succeeded.

The evidence report lists who informed, confirmed, probed, approved, activated and restarted,
and when: read from the audit log (every plan operation is audited with the plan's key), the
backends' rows and the flows' restart records. Nothing is stored twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.urls import reverse

from keystore.models import AuditAction, AuditEvent
from keystore.timefmt import utc
from renewals.models import SapKeyBackup
from renewals.plans.models import BackendStatus, PlanBackend, RenewalPlan
from renewals.plans.probing import ACTIVE, tls_target
from renewals.plans.services import gate_of, probe_json, settings_of
from renewals.whereused.models import IntegrationFlow

#: (words in an audit detail, the step the evidence names it by), first match wins.
STEPS = (
    ("informed", "informed"),
    ("confirmed imported", "confirmed"),
    ("probed", "probed"),
    ("approval of the activation requested", "approval requested"),
    ("activation approved", "approved"),
    ("gate overridden", "gate overridden"),
    ("planned activation", "window"),
    ("activation planned", "window"),
    ("not affected", "not affected"),
    ("contact", "contact"),
    ("revoked", "link revoked"),
    ("rebuilt", "rebuilt"),
)


@dataclass
class ChecklistItem:
    kind: str  # "restart" or "probe"
    label: str
    done: bool
    detail: str = ""
    url: str = ""
    at: datetime | None = None  # when it was done
    by: str = ""


@dataclass
class Checklist:
    activated_at: datetime | None
    activated_by: str = ""
    items: list[ChecklistItem] = field(default_factory=list)
    revert_url: str = ""
    previous_key: SapKeyBackup | None = None

    @property
    def done(self) -> bool:
        return self.activated_at is not None and all(item.done for item in self.items)

    @property
    def ticked(self) -> int:
        return sum(1 for item in self.items if item.done)


def activation_of(plan: RenewalPlan) -> AuditEvent | None:
    return (
        AuditEvent.objects.filter(
            tenant_id=plan.tenant_id,
            alias=plan.alias,
            action=AuditAction.ACTIVATE,
            new_fingerprint=plan.fingerprint_sha256,
            at__gte=plan.created_at,
        )
        .order_by("at", "pk")
        .first()
    )


def checklist(plan: RenewalPlan) -> Checklist:
    """The plan's checklist after its key was activated (empty before)."""
    activated = activation_of(plan)
    if activated is None:
        return Checklist(activated_at=None)
    result = Checklist(activated_at=activated.at, activated_by=activated.actor_label)
    flows = IntegrationFlow.objects.holding_connections_with(plan.tenant, plan.alias).order_by(
        "bundle_name", "pk"
    )
    for flow in flows:
        restarted = flow.last_restart_at is not None and flow.last_restart_at >= activated.at
        result.items.append(
            ChecklistItem(
                "restart",
                f"Restart {flow.bundle_name or flow.bundle_id}",
                restarted and not flow.restart_required,
                f"restarted by {flow.last_restart_by_label} {utc(flow.last_restart_at)} UTC"
                if restarted and flow.last_restart_at
                else "restart required",
                reverse("admin:whereused_integrationflow_change", args=[flow.pk]),
                flow.last_restart_at if restarted else None,
                flow.last_restart_by_label if restarted else "",
            )
        )
    for backend in plan.backends.all():
        if backend.status == BackendStatus.NOT_AFFECTED or tls_target(backend.address) is None:
            continue
        probed = backend.probe_key == ACTIVE and backend.probe_at is not None
        result.items.append(
            ChecklistItem(
                "probe",
                f"Probe {backend.label} with the active key",
                probed and bool(backend.probe_ok),
                (("succeeded: " if backend.probe_ok else "failed: ") + backend.probe_message)
                if probed
                else "not probed with the active key yet",
            )
        )
    previous = SapKeyBackup.objects.filter(
        tenant_id=plan.tenant_id, alias=plan.alias, active_until=activated.at
    ).first()
    if previous is not None:
        result.previous_key = previous
        result.revert_url = reverse("admin:renewals_sapkeybackup_revert", args=[previous.pk])
    return result


def _step(event: AuditEvent) -> str:
    if event.action == AuditAction.ACTIVATE:
        return "activated"
    for words, step in STEPS:
        if words in event.detail:
            return step
    return event.get_action_display().lower()


@dataclass
class EvidenceRow:
    at: datetime
    step: str
    by: str
    detail: str


@dataclass
class Evidence:
    plan: RenewalPlan
    gate: str
    four_eyes: bool
    backends: list[PlanBackend]
    events: list[EvidenceRow]
    checklist: Checklist


def evidence(plan: RenewalPlan) -> Evidence:
    """Who did what for this renewal, in time order."""
    events = [
        EvidenceRow(event.at, _step(event), event.actor_label, event.detail)
        for event in AuditEvent.objects.filter(
            tenant_id=plan.tenant_id,
            alias=plan.alias,
            new_fingerprint=plan.fingerprint_sha256,
        ).order_by("at", "pk")
    ]
    done = checklist(plan)
    events += [
        EvidenceRow(item.at, "restarted", item.by, item.label)
        for item in done.items
        if item.kind == "restart" and item.at is not None
    ]
    events.sort(key=lambda row: row.at)
    return Evidence(
        plan=plan,
        gate=gate_of(plan.tenant),
        four_eyes=settings_of(plan.tenant).four_eyes,
        backends=list(plan.backends.all()),
        events=events,
        checklist=done,
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def evidence_json(plan: RenewalPlan) -> dict[str, Any]:
    """The evidence report as its JSON download."""
    report = evidence(plan)
    done = report.checklist
    return {
        "tenant": plan.tenant.slug,
        "alias": plan.alias,
        "fingerprint_sha256": plan.fingerprint_sha256,
        "state": plan.current_state(),
        "created_at": _iso(plan.created_at),
        "planned_activation": _iso(plan.planned_activation),
        "gate": report.gate,
        "four_eyes": report.four_eyes,
        "gate_override": {
            "reason": plan.override_reason,
            "by": plan.override_by_label,
            "at": _iso(plan.override_at),
        }
        if plan.override_reason
        else None,
        "approval": {
            "requested_by": plan.approval_requested_by_label,
            "requested_at": _iso(plan.approval_requested_at),
            "approved_by": plan.approved_by_label or None,
            "approved_at": _iso(plan.approved_at),
        }
        if plan.approval_requested_at
        else None,
        "backends": [
            {
                "system": backend.system,
                "address": backend.address,
                "usage": backend.usage,
                "status": backend.status,
                "status_reason": backend.status_reason,
                "informed_at": _iso(backend.informed_at),
                "confirmed_by": backend.confirmed_by or None,
                "confirmed_at": _iso(backend.confirmed_at),
                "confirmed_from": backend.confirmed_from or None,
                "probe": probe_json(backend),
            }
            for backend in report.backends
        ],
        "events": [
            {"at": _iso(row.at), "step": row.step, "by": row.by, "detail": row.detail}
            for row in report.events
        ],
        "checklist": {
            "activated_at": _iso(done.activated_at),
            "activated_by": done.activated_by or None,
            "items": [
                {"kind": item.kind, "label": item.label, "done": item.done, "detail": item.detail}
                for item in done.items
            ],
            "revert_url": done.revert_url or None,
            "done": done.done,
        },
    }
