"""The agreed window (issue 17, item 5): an administrator plans the activation of a waiting SAP
key at a time agreed with the backends; the scan activates it then, through the same
renewals.activation.activate_pending_key as a manual activation (the entry's row lock makes
one of two racing activations win and the other find nothing to activate).

Mails: before the window (RENEWALS_PLAN_WINDOW_NOTICE_HOURS ahead, or at once when it is
nearer) to the tenant's administrators and the backends' contacts, and after it, to both, with
the outcome. Each (re)scheduling is a new version of the window, so a moved window is announced
again and a mail of an old version never stands for the new one.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from keystore.audit import actor_label
from keystore.models import Tenant
from keystore.timefmt import utc
from renewals import conf as renewals_conf
from renewals import outbox
from renewals.activation import NothingToActivate, RenewalError, activate_pending_key
from renewals.models import NotificationKind, PendingSapKey, SentNotification
from renewals.plans import conf
from renewals.plans.gate import mark_requested, user_of
from renewals.plans.models import BackendStatus, RenewalPlan, WindowOutcome
from renewals.plans.services import (
    PlanError,
    audit_plan,
    contacts_for,
    locked_waiting_plan,
    require_deploy,
    settings_of,
)

if TYPE_CHECKING:
    from keystore.audit import Actor

logger = logging.getLogger(__name__)


def schedule_activation(
    tenant: Tenant,
    alias: str,
    at: datetime,
    *,
    actor: Actor = None,
    now: datetime | None = None,
) -> RenewalPlan:
    """Plan the activation of the key waiting for `alias` at `at` (the agreed downtime
    window). The time must come before the automatic activation and the key's expiry. With
    four eyes, planning counts as asking for the approval."""
    require_deploy(actor, tenant)
    now = now or timezone.now()
    if timezone.is_naive(at):
        raise PlanError("Give the planned time with its offset, e.g. 2027-01-15T22:00:00Z.")
    if at <= now:
        raise PlanError(f"The planned time {utc(at, label=True)} is not in the future.")
    with transaction.atomic():
        plan = locked_waiting_plan(tenant, alias, now, create=True)
        pending = PendingSapKey.objects.select_related("entry").get(
            tenant=tenant, material_id=plan.occasion
        )
        if at >= pending.valid_until:
            raise PlanError(
                f"The new key expires on {utc(pending.valid_until, label=True)}; plan the "
                "activation before that."
            )
        if at >= pending.auto_activation_at:
            raise PlanError(
                "The key is activated automatically on "
                f"{utc(pending.auto_activation_at, label=True)}, one day before the current "
                "key expires; plan the window before that."
            )
        plan.planned_activation = at
        plan.planned_by = user_of(actor)  # type: ignore[assignment]
        plan.planned_by_label = actor_label(actor)
        plan.schedule_version += 1
        plan.window_outcome = WindowOutcome.NONE
        plan.window_message = ""
        plan.save(
            update_fields=[
                "planned_activation",
                "planned_by",
                "planned_by_label",
                "schedule_version",
                "window_outcome",
                "window_message",
            ]
        )
        audit_plan(plan, actor, f"activation planned for {utc(at, label=True)}", now)
        if settings_of(tenant).four_eyes and plan.approval_requested_at is None:
            mark_requested(plan, actor, now)
        if at <= now + conf.window_notice():
            _notice(plan, now)
    return plan


def cancel_activation(
    tenant: Tenant, alias: str, *, actor: Actor = None, now: datetime | None = None
) -> RenewalPlan:
    """Take the planned activation back; those told of the window hear it is cancelled."""
    require_deploy(actor, tenant)
    now = now or timezone.now()
    with transaction.atomic():
        plan = locked_waiting_plan(tenant, alias, now, create=True)
        if plan.planned_activation is None or plan.window_outcome != WindowOutcome.NONE:
            raise PlanError(f"No activation of {alias} is planned.")
        was, noticed = plan.planned_activation, plan.window_noticed_version == plan.schedule_version
        plan.planned_activation = None
        plan.schedule_version += 1
        plan.save(update_fields=["planned_activation", "schedule_version"])
        audit_plan(plan, actor, f"planned activation of {utc(was, label=True)} cancelled", now)
        if noticed:
            _window_mail(
                plan,
                NotificationKind.WINDOW,
                f"Cancelled: activation of {alias} in {tenant.slug} on {utc(was, label=True)}",
                f"The activation of the new SAP key {alias} in tenant {tenant.slug} planned for "
                f"{utc(was, label=True)} is cancelled by {actor_label(actor)}. A new time will "
                "be agreed with you.\n",
            )
    return plan


# -- mails ------------------------------------------------------------------------------------


def _recipients(plan: RenewalPlan) -> list[str]:
    """The tenant's administrators and the contacts of the plan's affected backends."""
    contacts = contacts_for(plan)
    addresses = list(outbox.recipients_for(plan.tenant))
    for backend in plan.backends.all():
        contact = contacts.get(backend.contact_key)
        if contact and backend.status != BackendStatus.NOT_AFFECTED:
            addresses.append(contact.email)
    return list(dict.fromkeys(addresses))


def _window_mail(plan: RenewalPlan, kind: str, subject: str, body: str) -> SentNotification | None:
    # One mail per kind and version of the window: the occasion is derived from both.
    occasion = uuid.uuid5(plan.occasion, f"{kind} {plan.schedule_version}")
    base = renewals_conf.site_url()
    link = f"\n{base}{reverse('admin:plans_renewalplan_change', args=[plan.pk])}\n" if base else ""
    return outbox.record(
        kind,
        plan.tenant,
        plan.alias,
        plan.fingerprint_sha256,
        occasion,
        subject,
        body + link,
        recipients=_recipients(plan),
    )


def _notice(plan: RenewalPlan, now: datetime) -> SentNotification | None:
    at = plan.planned_activation
    assert at is not None
    plan.window_noticed_version = plan.schedule_version
    plan.save(update_fields=["window_noticed_version"])
    return _window_mail(
        plan,
        NotificationKind.WINDOW,
        f"Planned activation of {plan.alias} in {plan.tenant.slug} on {utc(at, label=True)}",
        f"The new SAP key {plan.alias} of tenant {plan.tenant.slug} will be activated in the "
        f"agreed window on {utc(at, label=True)}.\n\n"
        f"New key SHA-256: {plan.fingerprint_sha256}\n\n"
        "Backend administrators: make sure the new certificate and its root are imported "
        "before then (your link to the renewal pack and Confirm imported came by mail). "
        "Tenant administrators: restart the flows and test after the activation.\n",
    )


def send_window_notices(now: datetime | None = None) -> list[SentNotification]:
    """The scan's part: announce every window that is near and not announced yet."""
    now = now or timezone.now()
    sent = []
    for plan in RenewalPlan.objects.window_notice_due(now, conf.window_notice()).select_related(
        "tenant"
    ):
        with transaction.atomic():
            locked = (
                RenewalPlan.objects.select_for_update().select_related("tenant").get(pk=plan.pk)
            )
            if locked.window_noticed_version >= locked.schedule_version:
                continue  # another scan was first
            mail = _notice(locked, now)
            if mail is not None:
                sent.append(mail)
    return sent


def _after_window(plan: RenewalPlan, activated: bool, message: str) -> None:
    at = plan.planned_activation
    words = utc(at, label=True) if at else "the window"
    if activated:
        subject = f"Activated in the window: {plan.alias} in {plan.tenant.slug}"
        body = (
            f"The new SAP key {plan.alias} of tenant {plan.tenant.slug} was activated in the "
            f"agreed window ({words}).\n\n{message}\n\n"
            "Backend administrators: test your connections now and tell the tenant's "
            "administrators at once if one fails; they can revert to the previous key.\n"
        )
    else:
        subject = f"Not activated in the window: {plan.alias} in {plan.tenant.slug}"
        body = (
            f"The planned activation of the new SAP key {plan.alias} of tenant "
            f"{plan.tenant.slug} ({words}) did not happen:\n\n{message}\n\n"
            "The current key stays active. Agree a new window, or the key is activated "
            "automatically one day before the current key expires.\n"
        )
    _window_mail(plan, NotificationKind.WINDOW_DONE, subject, body)


# -- the scan's part --------------------------------------------------------------------------


@dataclass
class WindowRun:
    activated: list = field(default_factory=list)  # ActivationResult
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    refused: list[tuple[str, str, str]] = field(default_factory=list)


def run_planned_activations(now: datetime | None = None) -> WindowRun:
    """Activate every planned key whose window has come, as the administrator who planned it
    (their permissions count at that moment). A refusal (gate, four eyes, a lost permission)
    closes the window with its reason and mails it; a key someone activated first is skipped."""
    now = now or timezone.now()
    run = WindowRun()
    for plan in RenewalPlan.objects.planned_due(now).select_related("tenant", "planned_by"):
        tenant, alias = plan.tenant, plan.alias
        actor = plan.planned_by
        try:
            if actor is None and plan.planned_by_label != actor_label(None):
                raise RenewalError(
                    f"{plan.planned_by_label}, who planned the activation, is no longer a user."
                )
            if actor is not None and not actor.is_active:
                raise RenewalError(
                    f"{plan.planned_by_label}, who planned the activation, is deactivated."
                )
            with transaction.atomic():
                result = activate_pending_key(
                    tenant,
                    alias,
                    actor=actor,
                    planned=True,
                    now=now,
                    expected_fingerprint=plan.fingerprint_sha256,
                )
                plan.refresh_from_db()
                plan.window_outcome = WindowOutcome.ACTIVATED
                plan.window_message = f"Activated in the window on {utc(now, label=True)}."
                plan.save(update_fields=["window_outcome", "window_message"])
                _after_window(
                    plan,
                    True,
                    f"Activated by {result.activated_by}; the previous key is in SAP Key "
                    "History."
                    + (
                        f" Not confirmed by then: {', '.join(result.unsettled)}."
                        if result.unsettled
                        else ""
                    ),
                )
        except NothingToActivate as error:
            run.skipped.append((tenant.slug, alias, str(error)))
        except RenewalError as error:
            _refused(plan, str(error), now)
            run.refused.append((tenant.slug, alias, str(error)))
        else:
            logger.info("Activated %s in %s in its planned window.", alias, tenant.slug)
            run.activated.append(result)
    return run


def _refused(plan: RenewalPlan, reason: str, now: datetime) -> None:
    with transaction.atomic():
        locked = RenewalPlan.objects.select_for_update().select_related("tenant").get(pk=plan.pk)
        if locked.window_outcome != WindowOutcome.NONE:
            return
        locked.window_outcome = WindowOutcome.REFUSED
        locked.window_message = reason
        locked.save(update_fields=["window_outcome", "window_message"])
        audit_plan(locked, None, f"planned activation refused: {reason}", now, label="scheduler")
        _after_window(locked, False, reason)
