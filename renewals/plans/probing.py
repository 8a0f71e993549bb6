"""Probing a plan's backends: the TLS connectivity test of every backend with an HTTPS or TLS
address, with the new key before activation (as Cloud Integration's "include new SAP key") or
with the active key after it, in parallel (renewals.connectivity.services.run_connectivity_tests,
under the limits of #9). A success with the new key marks the backend verified; a failure shows
the test's own words (for example, that the server does not accept the client certificate).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone

from keystore import permissions
from keystore.audit import record_audit
from keystore.models import AuditAction, Tenant
from renewals import outbox
from renewals.connectivity.models import ConnectivityTestRun
from renewals.connectivity.services import (
    DEFAULT_TIMEOUT,
    ConnectivityError,
    run_connectivity_tests,
)
from renewals.models import NotificationKind
from renewals.plans import conf
from renewals.plans.models import (
    TLS_SCHEMES,
    BackendStatus,
    PlanBackend,
    PlanState,
    RenewalPlan,
)
from renewals.plans.services import PlanError, plan_of

if TYPE_CHECKING:
    from keystore.audit import Actor

PENDING = "pending"
ACTIVE = "active"


def tls_target(address: str) -> tuple[str, int] | None:
    """(host, port) of an HTTPS or TLS address, None for anything else (SFTP, mail, a
    parameter nobody set, plain HTTP)."""
    try:
        parts = urlsplit(address.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in TLS_SCHEMES or not parts.hostname or "{{" in address:
        return None
    port = port or TLS_SCHEMES[scheme]
    return (parts.hostname, port) if port else None


@dataclass
class ProbeReport:
    plan: RenewalPlan
    key: str  # PENDING or ACTIVE
    probed: list[PlanBackend] = field(default_factory=list)
    without_tls: list[PlanBackend] = field(default_factory=list)

    @property
    def succeeded(self) -> list[PlanBackend]:
        return [backend for backend in self.probed if backend.probe_ok]

    @property
    def failed(self) -> list[PlanBackend]:
        return [backend for backend in self.probed if not backend.probe_ok]


def _after_probe(backend: PlanBackend, key: str, ok: bool) -> None:
    """The status a probe leaves: verified after a success with the new key; a verified
    backend whose new-key probe fails is verified no more."""
    if key != PENDING:
        return
    if ok and backend.status != BackendStatus.NOT_AFFECTED:
        backend.status = BackendStatus.VERIFIED
    elif not ok and backend.status == BackendStatus.VERIFIED:
        backend.status = (
            BackendStatus.CONFIRMED
            if backend.confirmed_at
            else BackendStatus.INFORMED
            if backend.informed_at
            else BackendStatus.TO_INFORM
        )


def probe_backends(
    tenant: Tenant,
    alias: str,
    *,
    active: bool = False,
    actor: Actor = None,
    timeout: float = DEFAULT_TIMEOUT,
    now: datetime | None = None,
) -> ProbeReport:
    """Probe every backend of the alias's plan that has an HTTPS or TLS address: with the new
    key while it waits (default), or with the active key (`active`, after activation). Records
    each test as a connectivity test run and its result on the backend; PlanError when there is
    nothing to probe or the tests are refused (nothing changed then)."""
    permissions.require_of_actor(
        actor, permissions.READ_CREDENTIALS, tenant, PlanError, "run connectivity tests"
    )
    return probe_plan(plan_of(tenant, alias), active=active, actor=actor, timeout=timeout, now=now)


def probe_plan(
    plan: RenewalPlan,
    *,
    active: bool = False,
    actor: Actor = None,
    timeout: float = DEFAULT_TIMEOUT,
    now: datetime | None = None,
) -> ProbeReport:
    """probe_backends of a plan in hand (the scan's probe after activation); the caller
    checked the actor."""
    tenant, alias = plan.tenant, plan.alias
    waiting = plan.current_state() == PlanState.WAITING
    if not active and not waiting:
        raise PlanError(
            f"No new SAP key is waiting for {alias!r} in tenant {tenant.slug!r}; probe the "
            "active key instead."
        )
    key = ACTIVE if active else PENDING
    report = ProbeReport(plan, key)
    targets: list[tuple[PlanBackend, tuple[str, int]]] = []
    for backend in plan.backends.all():
        target = tls_target(backend.address)
        if target is None:
            report.without_tls.append(backend)
        else:
            targets.append((backend, target))
    if not targets:
        raise PlanError(
            "No backend of the plan has an HTTPS or TLS address to probe"
            + (
                ": " + ", ".join(backend.label for backend in report.without_tls) + "."
                if report.without_tls
                else "."
            )
        )
    try:
        answers = run_connectivity_tests(
            tenant,
            [target for _backend, target in targets],
            alias=alias,
            include_pending=not active,
            workers=conf.probe_workers(),
            timeout=timeout,
            actor=actor,
        )
    except ConnectivityError as error:
        raise PlanError(str(error))
    now = now or timezone.now()
    with transaction.atomic():
        for (backend, _target), answer in zip(targets, answers, strict=True):
            locked = PlanBackend.objects.select_for_update().filter(pk=backend.pk).first()
            if locked is None:  # the plan was rebuilt meanwhile
                continue
            run = answer if isinstance(answer, ConnectivityTestRun) else None
            locked.probe_at = now
            locked.probe_key = key
            locked.probe_run = run
            locked.probe_ok = bool(run and run.succeeded)
            locked.probe_message = run.message if run else f"Not tested: {answer}"
            # Statuses change only while the key waits; after activation the probe is evidence.
            if waiting:
                _after_probe(locked, key, locked.probe_ok)
            locked.save()
            report.probed.append(locked)
        record_audit(
            tenant,
            plan.alias,
            AuditAction.OTHER,
            actor,
            new_fingerprint=plan.fingerprint_sha256,
            detail=f"renewal plan: probed {len(report.probed)} backends with the "
            f"{'active' if active else 'new'} key: {len(report.succeeded)} succeeded"
            + (
                ", failed: " + ", ".join(backend.label for backend in report.failed)
                if report.failed
                else ""
            ),
            at=now,
        )
        if report.failed:
            _mail_failures(plan, report, now)
    return report


def _mail_failures(plan: RenewalPlan, report: ProbeReport, now: datetime) -> None:
    """The tenant's administrators hear of failed probes (one mail per probe run)."""
    key = "active key" if report.key == ACTIVE else "new key"
    lines = "\n".join(f"- {b.label} ({b.address}): {b.probe_message}" for b in report.failed)
    outbox.record(
        NotificationKind.PROBE_FAILED,
        plan.tenant,
        plan.alias,
        plan.fingerprint_sha256,
        uuid.uuid5(plan.occasion, f"probe {report.key} {now.isoformat()}"),
        f"Probe failed for {len(report.failed)} backend(s) of {plan.alias} in {plan.tenant.slug}",
        f"The TLS probe with the {key} of {plan.alias} (tenant {plan.tenant.slug}) failed for "
        f"{len(report.failed)} of {len(report.probed)} backends:\n\n{lines}\n\n"
        + (
            "These backends do not accept the new key yet: ask their administrators to "
            "import the new certificate and its root, then probe again before activating.\n"
            if report.key == PENDING
            else "These backends fail with the active key: check them now, or revert.\n"
        ),
        recipients=outbox.recipients_for(plan.tenant),
    )
