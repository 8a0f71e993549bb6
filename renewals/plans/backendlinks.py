"""The backend administrators' signed links: issued by *Inform backends* (one mail per contact
through the outbox, renewals.outbox), opened without a login, revoked by an
administrator, and the *Confirm imported* that comes back through them.

A link is django.core.signing over (plan, backend, nonce, expiry) with a salt of its own, so a
token signed for another purpose of the site never opens it. It is bound to the plan and the
backend, it expires (RENEWALS_PLAN_LINK_DAYS), and it is valid only while the backend row holds
its nonce: revoking empties the nonce, informing again draws a new one. Every refusal says why
in words meant for the backend's administrator and changes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from django.core import signing
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from keystore import permissions
from keystore.audit import actor_label, record_audit
from keystore.models import AuditAction, Tenant
from keystore.timefmt import utc
from renewals import outbox
from renewals.models import NotificationKind
from renewals.plans import conf, tokens
from renewals.plans.models import BackendStatus, PlanBackend, PlanState, RenewalPlan
from renewals.plans.services import PlanError, contacts_for, plan_of
from renewals.plans.tokens import link_url

if TYPE_CHECKING:
    from keystore.audit import Actor

MAX_NAME = 150
MAX_COMMENT = 2000


class LinkRefused(Exception):
    """A link that does not open (tampered, expired, revoked, or its renewal is over); the
    message is for the backend's administrator."""


# -- opening a link --------------------------------------------------------------------------


def open_link(token: str, *, now: datetime | None = None) -> PlanBackend:
    """The backend the link is for, or LinkRefused saying why."""
    now = now or timezone.now()
    try:
        payload = tokens.unsign(token)
        plan_id, backend_id, nonce, expires = (payload[k] for k in ("p", "b", "n", "e"))
        expires_at = datetime.fromtimestamp(int(expires), tz=UTC)
    except (signing.BadSignature, TypeError, KeyError, ValueError, OverflowError):
        raise LinkRefused(
            "This link is not valid: it was changed or cut short. Open the link from the mail "
            "as it is, or ask the tenant's administrator for a new one."
        )
    backend = (
        PlanBackend.objects.select_related("plan", "plan__tenant")
        .filter(pk=backend_id, plan_id=plan_id)
        .first()
    )
    if backend is None:
        raise LinkRefused(
            "This link is no longer valid: the system is not in the renewal plan any more."
        )
    if not backend.link_nonce or not constant_time_compare(str(nonce), backend.link_nonce):
        raise LinkRefused(
            "This link was revoked by the tenant's administrator. Ask them for a new one."
        )
    # The row's expiry counts too: an administrator may shorten a link without revoking it.
    if backend.link_expires_at is not None:
        expires_at = min(expires_at, backend.link_expires_at)
    if now >= expires_at:
        raise LinkRefused(
            f"This link expired on {utc(expires_at, label=True)}. Ask the tenant's "
            "administrator for a new one."
        )
    if backend.plan.current_state() != PlanState.WAITING:
        raise LinkRefused(
            "This renewal is over: the new key is no longer waiting for activation. Nothing "
            "is left to confirm here."
        )
    return backend


# -- informing --------------------------------------------------------------------------------


@dataclass
class InformResult:
    plan: RenewalPlan
    informed: list[tuple[PlanBackend, str]] = field(default_factory=list)  # (backend, mail)
    without_contact: list[PlanBackend] = field(default_factory=list)


def _needs_link(backend: PlanBackend, now: datetime) -> bool:
    """To inform, or informed but its link was revoked or has expired."""
    if backend.status == BackendStatus.TO_INFORM:
        return True
    return backend.status == BackendStatus.INFORMED and (
        not backend.link_nonce or backend.link_expires_at is None or backend.link_expires_at <= now
    )


def _mail_body(backend: PlanBackend, plan: RenewalPlan, url: str, name: str) -> str:
    tenant = plan.tenant
    window = (
        f"The switch is planned for {utc(plan.planned_activation, label=True)}."
        if plan.planned_activation
        else "The time of the switch is not agreed yet; the page shows it once it is."
    )
    flows = ", ".join(flow["bundle_name"] for flow in backend.flows)
    return (
        f"Hello {name},\n\n"
        f"SAP renews the key {plan.alias} of the SAP Cloud Integration tenant {tenant.slug}. "
        f"Your system {backend.label} ({backend.address or 'no address'}) "
        f"{'uses' if backend.usage == 'uses' else 'may use'} it (integration flows: {flows}).\n\n"
        f"{window}\n\n"
        "Please download the renewal pack (the new certificate, its root, the chain and "
        "instructions for your system), import it, and then press 'Confirm imported' on this "
        f"page (no login needed):\n\n{url}\n\n"
        f"The link is yours alone and valid until "
        f"{utc(backend.link_expires_at, label=True) if backend.link_expires_at else '-'}.\n"
    )


def inform_backends(
    tenant: Tenant,
    alias: str,
    *,
    base_url: str,
    actor: Actor = None,
    now: datetime | None = None,
) -> InformResult:
    """Mail each contact of the plan's backends that still need it (to inform, or informed
    with a revoked or expired link) a new signed link; they become "informed". Backends
    without a contact are listed, not mailed. `base_url` is the site's address as the backend
    administrators reach it (the request's, or RENEWALS_SITE_URL)."""
    permissions.require_of_actor(actor, permissions.DEPLOY, tenant, PlanError, "inform backends")
    if not base_url.startswith(("https://", "http://")):
        raise PlanError(
            "The mails need the site's full address: set RENEWALS_SITE_URL (for example "
            "https://keystore.example.com)."
        )
    now = now or timezone.now()
    with transaction.atomic():
        plan = plan_of(tenant, alias)
        if plan.current_state() != PlanState.WAITING:
            raise PlanError(f"No new SAP key is waiting for {alias!r} in tenant {tenant.slug!r}.")
        backends = list(plan.backends.select_for_update().order_by("pk"))
        contacts = contacts_for(plan)
        result = InformResult(plan)
        for backend in backends:
            if not _needs_link(backend, now):
                continue
            contact = contacts.get(backend.contact_key)
            if contact is None:
                result.without_contact.append(backend)
                continue
            nonce = uuid.uuid4().hex
            backend.link_nonce = nonce
            backend.link_issued_at = now
            backend.link_expires_at = now + timedelta(days=conf.link_days())
            backend.status = BackendStatus.INFORMED
            backend.informed_at = now
            backend.status_at = now
            backend.status_by = actor_label(actor)
            backend.save()
            url = link_url(backend, base_url)
            outbox.record(
                NotificationKind.BACKEND_LINK,
                tenant,
                plan.alias,
                plan.fingerprint_sha256,
                # One mail per link: informing again after a revoke is a new mail.
                uuid.UUID(nonce),
                f"New SAP certificate for {backend.label}: please import it ({plan.alias}, "
                f"tenant {tenant.slug})",
                _mail_body(backend, plan, url, contact.name),
                recipients=[contact.email],
            )
            record_audit(
                tenant,
                plan.alias,
                AuditAction.OTHER,
                actor,
                new_fingerprint=plan.fingerprint_sha256,
                detail=f"renewal plan: {backend.label} informed, link mailed to {contact.email}"
                f", valid until {utc(backend.link_expires_at, label=True)}",
                at=now,
            )
            result.informed.append((backend, contact.email))
        if not result.informed:
            if result.without_contact:
                raise PlanError(
                    "Nobody was informed: "
                    + ", ".join(backend.label for backend in result.without_contact)
                    + " ha"
                    + ("s" if len(result.without_contact) == 1 else "ve")
                    + " no contact. Add the contacts on the plan page first."
                )
            raise PlanError(
                "Nobody was informed: every backend was informed already with a valid link, "
                "confirmed, verified or is not affected."
            )
    return result


def revoke_link(
    backend: PlanBackend, *, actor: Actor = None, now: datetime | None = None
) -> PlanBackend:
    """End the backend's link at once (a mail went to the wrong person, say)."""
    tenant = backend.plan.tenant
    permissions.require_of_actor(actor, permissions.DEPLOY, tenant, PlanError, "revoke links")
    now = now or timezone.now()
    with transaction.atomic():
        locked = PlanBackend.objects.select_for_update().filter(pk=backend.pk).first()
        if locked is None or not locked.link_nonce:
            raise PlanError(f"{backend.label} has no link to revoke.")
        locked.link_nonce = ""
        locked.save(update_fields=["link_nonce"])
        record_audit(
            tenant,
            backend.plan.alias,
            AuditAction.OTHER,
            actor,
            detail=f"renewal plan: link of {locked.label} revoked",
            at=now,
        )
    locked.plan = backend.plan
    return locked


# -- confirming -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Confirmation:
    backend: PlanBackend
    already: bool  # confirmed before: nothing changed


def confirm_imported(
    token: str,
    name: str,
    comment: str = "",
    *,
    address: str | None,
    now: datetime | None = None,
) -> Confirmation:
    """The backend's administrator says the new certificate is imported. LinkRefused for a
    link that does not open, PlanError for a missing name or an overlong comment; in both
    cases nothing changed. Audited with the address the confirmation came from."""
    now = now or timezone.now()
    name, comment = name.strip(), comment.strip()
    if not name:
        raise PlanError("Give your name: the tenant's administrator sees who confirmed.")
    if len(name) > MAX_NAME:
        raise PlanError(f"The name is longer than {MAX_NAME} characters.")
    if len(comment) > MAX_COMMENT:
        raise PlanError(f"The comment is longer than {MAX_COMMENT} characters.")
    with transaction.atomic():
        backend = open_link(token, now=now)
        backend = PlanBackend.objects.select_for_update().get(pk=backend.pk)
        if backend.confirmed_at is not None:
            return Confirmation(backend, already=True)
        backend.confirmed_at = now
        backend.confirmed_by = name
        backend.confirmed_comment = comment
        backend.confirmed_from = (address or "")[:64]
        # A successful probe is the stronger word; a confirmation does not replace it.
        if backend.status != BackendStatus.VERIFIED:
            backend.status = BackendStatus.CONFIRMED
            backend.status_at = now
            backend.status_by = name
            backend.status_reason = ""
        backend.save()
        plan = backend.plan
        record_audit(
            plan.tenant,
            plan.alias,
            AuditAction.OTHER,
            None,
            label=f"backend:{backend.label}"[:150],
            new_fingerprint=plan.fingerprint_sha256,
            detail=f"renewal plan: {backend.label} confirmed imported by {name} from "
            f"{address or 'an unknown address'}" + (f": {comment}" if comment else ""),
            at=now,
        )
        outbox.record(
            NotificationKind.CONFIRMED,
            plan.tenant,
            plan.alias,
            plan.fingerprint_sha256,
            uuid.uuid5(plan.occasion, f"confirmed {backend.pk}"),
            f"{backend.label} confirmed the new certificate of {plan.alias} ({plan.tenant.slug})",
            f"{name} confirmed on {utc(now, label=True)} that {backend.label} imported the new "
            f"certificate of {plan.alias} (tenant {plan.tenant.slug})"
            + (f":\n\n{comment}\n" if comment else ".\n")
            + "\nProbe the backend with the new key to verify it, then activate in the agreed "
            "window.\n",
            recipients=outbox.recipients_for(plan.tenant),
        )
    return Confirmation(backend, already=False)
