"""The activation gate of a renewal plan (issue 17, item 6), and four eyes.

renewals.activation.activate_pending_key asks `check_activation` inside its transaction, with the
entry and its waiting key locked, so the check and the activation see the same plan:

- gate "warn" (the default): nothing is refused; the caller learns which backends are not
  settled (confirmed, verified or not affected) and says so;
- gate "require": a manual or planned activation is refused while a backend is not settled,
  unless an administrator overrode the gate with a written reason (`override_gate`, or a reason
  given with the activation), audited;
- four eyes: a manual or planned activation needs the approval of a second administrator
  (`request_approval`, then `approve_activation` by someone else).

The automatic activation one day before expiry always happens, as in Cloud Integration; its mail
names the backends that never confirmed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from keystore.audit import actor_label
from keystore.models import Tenant
from keystore.timefmt import utc
from renewals import outbox
from renewals.models import NotificationKind, PendingSapKey
from renewals.plans.models import (
    SETTLED,
    Gate,
    PlanBackend,
    RenewalPlan,
)
from renewals.plans.services import (
    MAX_REASON,
    PlanError,
    audit_plan,
    locked_waiting_plan,
    require_deploy,
    settings_of,
)

if TYPE_CHECKING:
    from keystore.audit import Actor

MANUAL = "manual"
PLANNED = "planned"
AUTOMATIC = "automatic"


def unsettled(backends: list[PlanBackend]) -> list[PlanBackend]:
    return [backend for backend in backends if not backend.settled]


@dataclass(frozen=True)
class GateCheck:
    """What the gate let through: the plan (None for a key without one) and the labels of
    its backends that are not settled."""

    plan: RenewalPlan | None
    unsettled: tuple[str, ...] = ()
    overridden: bool = False


def with_unsettled_count(pendings: QuerySet[PendingSapKey]) -> QuerySet[PendingSapKey]:
    """Each waiting key annotated with `unsettled_backends`: how many backends of its plan are
    not settled (no query more than the caller's own)."""
    counted = (
        PlanBackend.objects.filter(plan__occasion=OuterRef("material_id"))
        .exclude(status__in=SETTLED)
        .order_by()
        .values("plan__occasion")
        .annotate(n=Count("pk"))
        .values("n")[:1]
    )
    return pendings.annotate(unsettled_backends=Coalesce(Subquery(counted), 0))


def _names(labels: list[str] | tuple[str, ...]) -> str:
    shown = ", ".join(labels[:10])
    return shown + (f" and {len(labels) - 10} more" if len(labels) > 10 else "")


def _record_override(plan: RenewalPlan, reason: str, actor: Actor, now: datetime) -> None:
    reason = reason.strip()
    if not reason:
        raise PlanError("Say why the gate is overridden; the reason is kept as evidence.")
    if len(reason) > MAX_REASON:
        raise PlanError(f"The reason is longer than {MAX_REASON} characters.")
    plan.override_reason = reason
    plan.override_by_label = actor_label(actor)
    plan.override_at = now
    plan.save(update_fields=["override_reason", "override_by_label", "override_at"])
    audit_plan(plan, actor, f"gate overridden: {reason}", now)


def check_activation(
    pending: PendingSapKey,
    actor: Actor,
    *,
    kind: str,
    override_reason: str = "",
    now: datetime,
) -> GateCheck:
    """The gate and four eyes for activating `pending` (locked by the caller). Raises
    PlanError with the reason when the activation must not happen; records an override given
    with the activation. Runs in the activation's transaction: a refusal changes nothing."""
    if kind == AUTOMATIC:
        # Always activated; its mail names the backends not settled, looked up only when the
        # caller's count (with_unsettled_count) says there are some.
        if getattr(pending, "unsettled_backends", None) == 0:
            return GateCheck(None)
        waiting_on = PlanBackend.objects.filter(plan__occasion=pending.material_id).exclude(
            status__in=SETTLED
        )
        return GateCheck(None, tuple(backend.label for backend in waiting_on))
    plan = RenewalPlan.objects.select_for_update().filter(occasion=pending.material_id).first()
    if plan is None:
        return GateCheck(None)
    labels = tuple(backend.label for backend in unsettled(list(plan.backends.all())))
    tenant_settings = settings_of(pending.tenant_id)
    if tenant_settings.four_eyes and plan.approved_at is None:
        asked = (
            f" {plan.approval_requested_by_label} asked on "
            f"{utc(plan.approval_requested_at, label=True)}; another administrator approves "
            "it on the renewal plan page."
            if plan.approval_requested_at
            else " Ask for the approval on the renewal plan page; another administrator gives it."
        )
        raise PlanError(
            f"Tenant {pending.tenant.slug} requires a second administrator to approve each "
            f"activation (four eyes); the activation of {pending.alias} is not approved yet."
            + asked
        )
    overridden = bool(plan.override_reason)
    if tenant_settings.gate == Gate.REQUIRE and labels and not overridden:
        if not override_reason.strip():
            raise PlanError(
                f"The gate of tenant {pending.tenant.slug} requires every affected backend to "
                f"be confirmed, verified or not affected before {pending.alias} is activated; "
                f"{len(labels)} not yet: {_names(labels)}. Settle them on the renewal plan "
                "page, or override the gate with a written reason."
            )
        _record_override(plan, override_reason, actor, now)
        overridden = True
    return GateCheck(plan, labels, overridden)


@dataclass(frozen=True)
class GatePreview:
    """What a page says before an activation (read only; the activation checks again)."""

    gate: str
    four_eyes: bool
    unsettled: tuple[str, ...]
    overridden: str  # the override's reason, "" without one
    requested: str  # who asked for the approval, "" if nobody
    approved: str  # who approved, "" if nobody

    @property
    def closed(self) -> bool:
        """A manual activation now would be refused by the gate (not counting four eyes)."""
        return self.gate == Gate.REQUIRE and bool(self.unsettled) and not self.overridden


def preview(tenant: Tenant, plan: RenewalPlan | None) -> GatePreview:
    tenant_settings = settings_of(tenant)
    return GatePreview(
        gate=tenant_settings.gate,
        four_eyes=tenant_settings.four_eyes,
        unsettled=tuple(b.label for b in unsettled(list(plan.backends.all()))) if plan else (),
        overridden=plan.override_reason if plan else "",
        requested=plan.approval_requested_by_label if plan else "",
        approved=plan.approved_by_label if plan else "",
    )


def unsettled_words(check: GateCheck) -> str:
    """For the activation mail: the backends that never confirmed ("" when all did)."""
    if not check.unsettled:
        return ""
    return (
        f"\nThese backends of the renewal plan never confirmed the new certificate "
        f"({len(check.unsettled)}): {_names(check.unsettled)}. Check them first.\n"
    )


# -- the administrator's acts -----------------------------------------------------------------


def override_gate(
    tenant: Tenant, alias: str, reason: str, *, actor: Actor = None, now: datetime | None = None
) -> RenewalPlan:
    """Let the plan's manual and planned activation pass the "require" gate, with a written
    reason (audited)."""
    require_deploy(actor, tenant)
    now = now or timezone.now()
    with transaction.atomic():
        plan = locked_waiting_plan(tenant, alias, now)
        if plan.override_reason:
            raise PlanError(
                f"The gate of {alias} is overridden already by {plan.override_by_label}: "
                f"{plan.override_reason}"
            )
        _record_override(plan, reason, actor, now)
    return plan


def user_of(actor: Actor) -> AbstractBaseUser | None:
    return actor if isinstance(actor, AbstractBaseUser) else None


def request_approval(
    tenant: Tenant, alias: str, *, actor: Actor = None, now: datetime | None = None
) -> RenewalPlan:
    """Ask a second administrator to approve the activation (four eyes); they are mailed."""
    require_deploy(actor, tenant)
    now = now or timezone.now()
    with transaction.atomic():
        plan = locked_waiting_plan(tenant, alias, now)
        if plan.approved_at is not None:
            raise PlanError(f"The activation of {alias} is approved already.")
        if plan.approval_requested_at is not None:
            raise PlanError(
                f"{plan.approval_requested_by_label} asked for the approval already on "
                f"{utc(plan.approval_requested_at, label=True)}."
            )
        mark_requested(plan, actor, now)
    return plan


def mark_requested(plan: RenewalPlan, actor: Actor, now: datetime) -> None:
    plan.approval_requested_by = user_of(actor)  # type: ignore[assignment]
    plan.approval_requested_by_label = actor_label(actor)
    plan.approval_requested_at = now
    plan.save(
        update_fields=[
            "approval_requested_by",
            "approval_requested_by_label",
            "approval_requested_at",
        ]
    )
    audit_plan(plan, actor, "approval of the activation requested (four eyes)", now)
    asker = actor_label(actor)
    recipients = [
        address
        for address in outbox.recipients_for(plan.tenant)
        if not (user_of(actor) and address == getattr(actor, "email", None))
    ]
    outbox.record(
        NotificationKind.APPROVAL,
        plan.tenant,
        plan.alias,
        plan.fingerprint_sha256,
        plan.occasion,
        f"Approve the activation of {plan.alias} in {plan.tenant.slug} (asked by {asker})",
        f"{asker} asks a second administrator to approve the activation of the new SAP key "
        f"{plan.alias} in tenant {plan.tenant.slug} (four eyes).\n\n"
        + (
            f"Planned activation: {utc(plan.planned_activation, label=True)}.\n"
            if plan.planned_activation
            else "No time is planned: the key is activated by hand after the approval.\n"
        )
        + "Review the renewal plan (backends, confirmations, probes) and approve it there; "
        "you cannot approve your own request.\n",
        recipients=recipients,
    )


def approve_activation(
    tenant: Tenant, alias: str, *, actor: Actor = None, now: datetime | None = None
) -> RenewalPlan:
    """The second administrator approves; never the one who asked."""
    require_deploy(actor, tenant)
    now = now or timezone.now()
    with transaction.atomic():
        plan = locked_waiting_plan(tenant, alias, now)
        if plan.approved_at is not None:
            raise PlanError(
                f"The activation of {alias} was approved already by {plan.approved_by_label}."
            )
        if plan.approval_requested_at is None:
            raise PlanError(
                f"Nobody asked for the approval of {alias} yet; an administrator asks first, "
                "another approves."
            )
        if actor_label(actor) == plan.approval_requested_by_label or (
            plan.approval_requested_by_id is not None
            and getattr(actor, "pk", None) == plan.approval_requested_by_id
        ):
            raise PlanError(
                "You asked for this approval yourself; another administrator must approve it."
            )
        plan.approved_by = user_of(actor)  # type: ignore[assignment]
        plan.approved_by_label = actor_label(actor)
        plan.approved_at = now
        plan.save(update_fields=["approved_by", "approved_by_label", "approved_at"])
        audit_plan(
            plan, actor, f"activation approved (asked by {plan.approval_requested_by_label})", now
        )
    return plan
