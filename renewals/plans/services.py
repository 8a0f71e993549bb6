"""The renewal plan's operations, one function each: build the plan when a new SAP key arrives
(`plan_created`, called by renewals.activation where the pending row is stored), rebuild it
from where-used (`rebuild_plan`), settle a backend as not affected or open it again, remember a
backend system's contact, and describe the plan for pages and scripts (`plan_json`).

Admin views and management commands are thin callers of these; each change checks the actor
with keystore.permissions and is audited in its transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Count, Max
from django.utils import timezone

from keystore import permissions
from keystore.audit import actor_label, record_audit
from keystore.models import AuditAction, Tenant
from keystore.services import KeystoreError
from keystore.timefmt import utc
from renewals import conf as renewals_conf
from renewals.models import PendingSapKey
from renewals.plans import conf, tokens
from renewals.plans.models import (
    BackendContact,
    BackendStatus,
    BackendUsage,
    PlanBackend,
    PlanState,
    RenewalPlan,
    TenantPlanSettings,
)
from renewals.whereused.models import IntegrationFlow
from renewals.whereused.report import BackendUse, where_used

if TYPE_CHECKING:
    from keystore.audit import Actor

MAX_REASON = 2000


class PlanError(KeystoreError):
    """A plan operation was refused; nothing changed. The message is meant for the user."""


def require_deploy(actor: Actor, tenant: Tenant) -> None:
    permissions.require_of_actor(
        actor, permissions.DEPLOY, tenant, PlanError, "change renewal plans"
    )


def audit_plan(
    plan: RenewalPlan, actor: Actor, detail: str, now: datetime, label: str = ""
) -> None:
    record_audit(
        plan.tenant,
        plan.alias,
        AuditAction.OTHER,
        actor,
        label=label or None,
        new_fingerprint=plan.fingerprint_sha256,
        detail=f"renewal plan: {detail}",
        at=now,
    )


# -- building ---------------------------------------------------------------------------------


def _flow_summary(backend: BackendUse) -> list[dict[str, Any]]:
    return [
        {
            "bundle_id": flow.bundle_id,
            "bundle_name": flow.bundle_name,
            "components": sorted(
                {f"{c.label} ({c.kind})" if c.kind else c.label for c in flow.components}
            ),
        }
        for flow in backend.flows
    ]


def _build(plan: RenewalPlan, now: datetime) -> tuple[int, int]:
    """Read the plan's backends from where-used (one query), keeping the status of those
    still named; (added, removed)."""
    report = where_used(plan.tenant, plan.alias, key_pair=True)
    found: dict[tuple[str, str], tuple[str, list[dict[str, Any]]]] = {}
    # "Uses" first: a backend in both sections needs the certificate for sure.
    sections: tuple[tuple[str, list[BackendUse]], ...] = (
        (BackendUsage.USES, report.uses),
        (BackendUsage.MAY_USE, report.may_use),
    )
    for usage, backends in sections:
        for backend in backends:
            if backend.is_backend and (backend.system, backend.address) not in found:
                found[(backend.system, backend.address)] = (usage, _flow_summary(backend))
    existing = {(row.system, row.address): row for row in plan.backends.all()}
    removed = [row.pk for key, row in existing.items() if key not in found]
    PlanBackend.objects.filter(pk__in=removed).delete()
    new_rows = []
    for key, (usage, flows) in found.items():
        row = existing.get(key)
        if row is None:
            new_rows.append(
                PlanBackend(plan=plan, system=key[0], address=key[1], usage=usage, flows=flows)
            )
        elif (row.usage, row.flows) != (usage, flows):
            row.usage, row.flows = usage, flows
            row.save(update_fields=["usage", "flows"])
    PlanBackend.objects.bulk_create(new_rows)
    plan.built_at = now
    plan.save(update_fields=["built_at"])
    return len(new_rows), len(removed)


def plan_created(pending: PendingSapKey, *, now: datetime | None = None) -> RenewalPlan:
    """The plan of a new SAP key that was just stored (provision, import or revert). Called by
    renewals.activation in the transaction that saved the pending row, so the key and its plan
    exist together or not at all. The alias's earlier plans still marked waiting are settled:
    activated if their key is the entry's key now, else replaced (their key was replaced, or
    activated and reverted since)."""
    now = now or timezone.now()
    earlier = RenewalPlan.objects.filter(
        tenant_id=pending.tenant_id, alias=pending.alias, state=PlanState.WAITING
    )
    earlier.filter(fingerprint_sha256=pending.entry.fingerprint_sha256).update(
        state=PlanState.ACTIVATED
    )
    earlier.update(state=PlanState.REPLACED)
    plan = RenewalPlan.objects.create(
        tenant=pending.tenant,
        alias=pending.alias,
        occasion=pending.material_id,
        fingerprint_sha256=pending.fingerprint_sha256,
        created_at=now,
        built_at=now,
    )
    _build(plan, now)
    return plan


def _require_waiting(plan: RenewalPlan, doing: str) -> None:
    state = plan.current_state()
    if state != PlanState.WAITING:
        raise PlanError(
            f"The renewal plan of {plan.alias} is {PlanState(state).label.lower()}; {doing}."
        )


def rebuild_plan(
    tenant: Tenant, alias: str, *, actor: Actor = None, now: datetime | None = None
) -> RenewalPlan:
    """Read the backends of the plan of the key waiting for `alias` from where-used again
    (after flows were imported or removed): new backends are added "to inform", vanished ones
    are dropped, the others keep their status. A key that waited before plans existed gets its
    plan here."""
    require_deploy(actor, tenant)
    now = now or timezone.now()
    with transaction.atomic():
        plan = plan_of(tenant, alias, create=True, now=now)
        locked = RenewalPlan.objects.select_for_update().select_related("tenant").get(pk=plan.pk)
        _require_waiting(locked, "only the plan of a waiting key is rebuilt")
        added, removed = _build(locked, now)
        audit_plan(
            locked,
            actor,
            f"rebuilt from where-used: {locked.backends.count()} backends "
            f"({added} added, {removed} removed)",
            now,
        )
    return locked


def plan_of(
    tenant: Tenant, alias: str, *, create: bool = False, now: datetime | None = None
) -> RenewalPlan:
    """The plan of the key waiting for `alias`, else the alias's latest plan; PlanError when
    there is none. A key that waited before plans existed has none: `create` builds it (a
    change, so pages only do it on POST)."""
    with transaction.atomic():
        pending = (
            PendingSapKey.objects.select_for_update()
            .select_related("tenant")
            .filter(tenant=tenant, entry__alias=alias)
            .first()
        )
        if pending is not None:
            plan = RenewalPlan.objects.filter(occasion=pending.material_id).first()
            if plan is not None:
                return plan
            if create:
                return plan_created(pending, now=now)
            raise PlanError(
                f"The key waiting for {alias} in {tenant.slug} arrived before renewal plans "
                "existed: rebuild its plan to make one."
            )
    plan = RenewalPlan.objects.filter(tenant=tenant, alias=alias).order_by("-created_at").first()
    if plan is None:
        raise PlanError(f"No new SAP key is waiting for {alias!r} in tenant {tenant.slug!r}.")
    return plan


def locked_waiting_plan(
    tenant: Tenant, alias: str, now: datetime, *, create: bool = False
) -> RenewalPlan:
    """The plan of the key waiting for `alias`, locked for the caller's transaction; PlanError
    when no key waits (a racing activation took it). Gate and window changes go through it."""
    plan = plan_of(tenant, alias, create=create, now=now)
    locked = RenewalPlan.objects.select_for_update().select_related("tenant").get(pk=plan.pk)
    if locked.pending_key() is None:
        raise PlanError(
            f"No new SAP key is waiting for {alias} in {tenant.slug}; there is nothing to activate."
        )
    return locked


# -- changing a backend -----------------------------------------------------------------------


def _locked_backend(backend: PlanBackend) -> PlanBackend:
    locked = (
        PlanBackend.objects.select_for_update()
        .select_related("plan", "plan__tenant")
        .filter(pk=backend.pk)
        .first()
    )
    if locked is None:
        raise PlanError("This backend is not in the plan any more; the plan was rebuilt.")
    _require_waiting(locked.plan, "its backends do not change any more")
    return locked


def mark_not_affected(
    backend: PlanBackend, reason: str, *, actor: Actor = None, now: datetime | None = None
) -> PlanBackend:
    """An administrator says the backend does not need the new certificate, with a reason."""
    require_deploy(actor, backend.plan.tenant)
    reason = reason.strip()
    if not reason:
        raise PlanError("Say why the backend is not affected; the reason is kept as evidence.")
    if len(reason) > MAX_REASON:
        raise PlanError(f"The reason is longer than {MAX_REASON} characters.")
    now = now or timezone.now()
    with transaction.atomic():
        locked = _locked_backend(backend)
        if locked.status == BackendStatus.NOT_AFFECTED:
            raise PlanError(f"{locked.label} is marked not affected already.")
        locked.status = BackendStatus.NOT_AFFECTED
        locked.status_reason = reason
        locked.status_at = now
        locked.status_by = actor_label(actor)
        locked.save(update_fields=["status", "status_reason", "status_at", "status_by"])
        audit_plan(locked.plan, actor, f"{locked.label} marked not affected: {reason}", now)
    return locked


def reopen_backend(
    backend: PlanBackend, *, actor: Actor = None, now: datetime | None = None
) -> PlanBackend:
    """Undo "not affected": the backend is "informed" again if it was, else "to inform"."""
    require_deploy(actor, backend.plan.tenant)
    now = now or timezone.now()
    with transaction.atomic():
        locked = _locked_backend(backend)
        if locked.status != BackendStatus.NOT_AFFECTED:
            raise PlanError(f"{locked.label} is not marked not affected.")
        locked.status = BackendStatus.INFORMED if locked.informed_at else BackendStatus.TO_INFORM
        locked.status_reason = ""
        locked.status_at = now
        locked.status_by = actor_label(actor)
        locked.save(update_fields=["status", "status_reason", "status_at", "status_by"])
        audit_plan(locked.plan, actor, f"{locked.label} affected again ({locked.status})", now)
    return locked


def save_contact(
    tenant: Tenant,
    system: str,
    name: str,
    email: str,
    *,
    actor: Actor = None,
    now: datetime | None = None,
) -> BackendContact:
    """Remember who administers a backend system of the tenant (for this and later plans)."""
    require_deploy(actor, tenant)
    system, name, email = system.strip(), name.strip(), email.strip()
    if not system:
        raise PlanError("Name the backend system the contact is for.")
    if not name:
        raise PlanError("Give the contact's name.")
    if len(name) > 150 or len(system) > 255:
        raise PlanError("The name is too long (at most 150 characters).")
    try:
        validate_email(email)
    except ValidationError:
        raise PlanError(f"{email!r} is not a mail address.")
    now = now or timezone.now()
    with transaction.atomic():
        contact, _created = BackendContact.objects.update_or_create(
            tenant=tenant,
            system=system,
            defaults={
                "name": name,
                "email": email,
                "updated_at": now,
                "updated_by": actor_label(actor),
            },
        )
        record_audit(
            tenant,
            "",
            AuditAction.OTHER,
            actor,
            detail=f"backend contact of {system}: {name} <{email}>",
            at=now,
        )
    return contact


# -- reading ----------------------------------------------------------------------------------


def contacts_for(plan: RenewalPlan) -> dict[str, BackendContact]:
    """contact key (system, or address) -> the remembered contact, in one query."""
    keys = [backend.contact_key for backend in plan.backends.all()]
    return {
        contact.system: contact
        for contact in BackendContact.objects.filter(tenant_id=plan.tenant_id, system__in=keys)
    }


@dataclass(frozen=True)
class FlowIndex:
    """How many flows of the tenant where-used knows, and when one was last imported."""

    flows: int
    last_imported: datetime | None


def flow_index(tenant: Tenant | int) -> FlowIndex:
    found = IntegrationFlow.objects.filter(tenant=tenant).aggregate(
        flows=Count("pk"), last=Max("imported_at")
    )
    return FlowIndex(found["flows"], found["last"])


NO_FLOWS = (
    "No integration flow of tenant {slug} is indexed, so where-used cannot tell which backends "
    "need the new certificate. Import the tenant's integration flows first."
)
NO_BACKEND = (
    "No imported integration flow uses or may use this key: no backend needs the new "
    "certificate ({flows} flow{s} indexed, last imported {last})."
)


def nothing_to_do(plan: RenewalPlan, index: FlowIndex) -> str:
    """The plain words for a plan without backends ("" when it has some)."""
    if plan.backends.exists():
        return ""
    if index.flows == 0:
        return NO_FLOWS.format(slug=plan.tenant.slug)
    return NO_BACKEND.format(
        flows=index.flows,
        s="" if index.flows == 1 else "s",
        last=utc(index.last_imported, label=True) if index.last_imported else "never",
    )


def settings_of(tenant: Tenant | int) -> TenantPlanSettings:
    """The tenant's renewal settings; an unsaved default (RENEWALS_PLAN_GATE, no four eyes)
    for a tenant without a row."""
    tenant_id = tenant if isinstance(tenant, int) else tenant.pk
    found = TenantPlanSettings.objects.filter(tenant_id=tenant_id).first()
    return found or TenantPlanSettings(tenant_id=tenant_id, gate=conf.default_gate())


def save_plan_settings(
    tenant: Tenant, gate: str, four_eyes: bool, *, actor: Actor = None, now: datetime | None = None
) -> TenantPlanSettings:
    """Set the tenant's gate and four eyes (superusers, through the admin), audited."""
    if gate not in conf.GATES:
        raise PlanError(f"The gate is one of {', '.join(conf.GATES)}.")
    now = now or timezone.now()
    with transaction.atomic():
        found, _created = TenantPlanSettings.objects.update_or_create(
            tenant=tenant,
            defaults={
                "gate": gate,
                "four_eyes": four_eyes,
                "updated_at": now,
                "updated_by": actor_label(actor),
            },
        )
        record_audit(
            tenant,
            "",
            AuditAction.OTHER,
            actor,
            detail=f"renewal settings: gate {gate}, four eyes {'on' if four_eyes else 'off'}",
            at=now,
        )
    return found


def gate_of(tenant: Tenant) -> str:
    """The tenant's activation gate, "warn" or "require"."""
    return settings_of(tenant).gate


def probe_json(backend: PlanBackend) -> dict[str, Any] | None:
    """The backend's last probe (renewals.plans.probing) as the JSON of the commands."""
    if backend.probe_at is None:
        return None
    return {
        "at": backend.probe_at.isoformat(),
        "key": backend.probe_key,
        "ok": backend.probe_ok,
        "message": backend.probe_message,
    }


def confirm_url(backend: PlanBackend) -> str:
    """The backend's live link (full address with RENEWALS_SITE_URL), "" without one."""
    if backend.link_expires_at is None or backend.link_expires_at <= timezone.now():
        return ""
    return tokens.link_url(backend, renewals_conf.site_url())


def plan_json(plan: RenewalPlan) -> dict[str, Any]:
    """The plan as `renewal_plan --json` prints it: exactly the fields issue 17 names."""
    contacts = contacts_for(plan)
    backends = []
    for backend in plan.backends.all():
        contact = contacts.get(backend.contact_key)
        backends.append(
            {
                "system": backend.system,
                "address": backend.address,
                "usage": backend.usage,
                "status": backend.status,
                "contact": {"name": contact.name, "email": contact.email} if contact else None,
                "confirm_url": confirm_url(backend) or None,
                "probe": probe_json(backend),
            }
        )
    return {
        "alias": plan.alias,
        "planned_activation": plan.planned_activation.isoformat()
        if plan.planned_activation
        else None,
        "gate": gate_of(plan.tenant),
        "backends": backends,
    }
