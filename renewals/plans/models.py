"""The rows of a renewal plan: the plan of one new SAP key, its backends (from where-used, each
with a status), and the contacts of a tenant's backend systems (kept for the next renewal).

A plan outlives its key in New SAP Keys: when the key is activated the plan stays (its checklist and
evidence are about what happened); when another key replaces the waiting one, the plan is marked
replaced and a new plan is made for the new key.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from keystore.models import ALIAS_MAX_LENGTH, Tenant
from keystore.querysets import TenantScopedQuerySet
from renewals.models import PendingSapKey

#: Schemes whose address is a TLS endpoint, with their default port (renewals.plans.probing).
TLS_SCHEMES: dict[str, int | None] = {
    "https": 443,
    "wss": 443,
    "ldaps": 636,
    "tls": None,
    "ssl": None,
}


class PlanState(models.TextChoices):
    WAITING = "waiting", "Waiting for activation"
    REPLACED = "replaced", "Replaced by another new key"
    ACTIVATED = "activated", "Activated"


class BackendStatus(models.TextChoices):
    # The values are the words, as the JSON of `renewal_plan` prints them.
    TO_INFORM = "to inform", "To inform"
    INFORMED = "informed", "Informed"
    CONFIRMED = "confirmed", "Confirmed (certificate imported)"
    VERIFIED = "verified", "Verified (probe succeeded)"
    NOT_AFFECTED = "not affected", "Not affected"


#: Statuses with which a backend does not hold up an activation (the gate of #17, item 6).
SETTLED = (BackendStatus.CONFIRMED, BackendStatus.VERIFIED, BackendStatus.NOT_AFFECTED)


class BackendUsage(models.TextChoices):
    USES = "uses", "Uses this alias"
    MAY_USE = "may use", "May use it"


class Gate(models.TextChoices):
    WARN = "warn", "Warn: activation shows the backends not yet settled"
    REQUIRE = (
        "require",
        "Require: manual and planned activation wait until every backend is settled",
    )


class WindowOutcome(models.TextChoices):
    NONE = "", "Not reached yet"
    ACTIVATED = "activated", "Activated in the window"
    REFUSED = "refused", "Refused in the window"


def _key_waiting() -> models.Exists:
    return models.Exists(
        PendingSapKey.objects.filter(
            tenant_id=models.OuterRef("tenant_id"), material_id=models.OuterRef("occasion")
        )
    )


class PlanQuerySet(TenantScopedQuerySet["RenewalPlan"]):
    def with_waiting(self) -> PlanQuerySet:
        """Each plan annotated with `key_waiting`: is its key still in New SAP Keys?"""
        return self.annotate(key_waiting=_key_waiting())

    def waiting(self) -> PlanQuerySet:
        """Plans whose key still waits in New SAP Keys."""
        return self.filter(_key_waiting(), state=PlanState.WAITING)

    def planned_due(self, now: datetime) -> PlanQuerySet:
        """Waiting plans whose agreed window has come and was not dealt with yet."""
        return self.waiting().filter(planned_activation__lte=now, window_outcome=WindowOutcome.NONE)

    def activated_unprobed(self, since: datetime) -> PlanQuerySet:
        """Plans whose key was activated (it left New SAP Keys without being replaced) after
        `since`, not yet probed with the active key by the scan."""
        tls = models.Q()
        for scheme in TLS_SCHEMES:
            tls |= models.Q(address__istartswith=f"{scheme}://")
        # Plans without a backend to probe are left alone (so they cost the scan nothing).
        probe_able = models.Exists(
            PlanBackend.objects.filter(tls, plan_id=models.OuterRef("pk")).exclude(
                status=BackendStatus.NOT_AFFECTED
            )
        )
        return self.filter(
            ~_key_waiting(),
            probe_able,
            state=PlanState.WAITING,
            created_at__gte=since,
            activation_probed_at__isnull=True,
        )

    def window_notice_due(self, now: datetime, notice: timedelta) -> PlanQuerySet:
        """Waiting plans whose window is near (within `notice`) and not announced yet in its
        current version."""
        return self.waiting().filter(
            planned_activation__gt=now,
            planned_activation__lte=now + notice,
            window_outcome=WindowOutcome.NONE,
            window_noticed_version__lt=models.F("schedule_version"),
        )


class RenewalPlan(models.Model):
    """The plan of one new SAP key: built from where-used when the key arrives (provision,
    import, revert) and rebuilt on demand.

    The plan names its key by the pending row's material id (`occasion`), not by a foreign
    key: activation deletes the pending row, and a foreign key would cost the activation (and
    the scan, per key) one more statement. A plan is waiting while that key waits; the next
    plan of the alias settles it as activated or replaced (services.plan_created), and until
    then a plan whose key is gone was activated (replacing a key always makes a new plan).
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="renewal_plans")
    alias = models.CharField(max_length=ALIAS_MAX_LENGTH)
    # The pending key's material id: the same key may wait twice (revert), each a new plan.
    occasion = models.UUIDField(unique=True)
    fingerprint_sha256 = models.CharField("new key SHA-256", max_length=95)
    # WAITING until settled by the next plan of the alias; see `current_state`.
    state = models.CharField(max_length=16, choices=PlanState.choices, default=PlanState.WAITING)
    created_at = models.DateTimeField(default=timezone.now)
    built_at = models.DateTimeField(
        default=timezone.now, help_text="When the backends were last read from where-used."
    )
    planned_activation = models.DateTimeField(null=True, blank=True)
    # Who set the window: the planned activation runs with this user's permissions (revoked
    # since, it is refused), and four eyes counts the scheduling as the request.
    planned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    planned_by_label = models.CharField(max_length=150, blank=True)
    # Each (re)scheduling or cancellation is a new version: the window mail of an earlier
    # version does not stand for this one (renewals.plans.window).
    schedule_version = models.PositiveIntegerField(default=0)
    window_noticed_version = models.PositiveIntegerField(default=0)
    window_outcome = models.CharField(
        max_length=16, choices=WindowOutcome.choices, default=WindowOutcome.NONE, blank=True
    )
    window_message = models.TextField(blank=True)
    # The gate's override (renewals.plans.gate): a written reason, audited.
    override_reason = models.TextField(blank=True)
    override_by_label = models.CharField(max_length=150, blank=True)
    override_at = models.DateTimeField(null=True, blank=True)
    # Four eyes: one administrator asks, another approves.
    approval_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approval_requested_by_label = models.CharField(max_length=150, blank=True)
    approval_requested_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_by_label = models.CharField(max_length=150, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    # When the scan probed the backends with the active key after the activation (once).
    activation_probed_at = models.DateTimeField(null=True, blank=True)

    objects = PlanQuerySet.as_manager()

    class Meta:
        verbose_name = "renewal plan"
        verbose_name_plural = "Renewal plans"
        ordering = ["tenant__slug", "alias", "-created_at"]
        indexes = [models.Index(fields=["tenant", "alias"], name="plans_plan_tenant_alias")]

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.alias}"

    def pending_key(self) -> PendingSapKey | None:
        """The key of the plan while it waits in New SAP Keys (one query)."""
        return PendingSapKey.objects.filter(
            tenant_id=self.tenant_id, material_id=self.occasion
        ).first()

    def current_state(self, key_waiting: bool | None = None) -> str:
        """waiting, replaced or activated; `key_waiting` from PlanQuerySet.with_waiting saves
        the query."""
        if self.state != PlanState.WAITING:
            return self.state
        if key_waiting is None:
            key_waiting = getattr(self, "key_waiting", None)
        if key_waiting is None:
            key_waiting = self.pending_key() is not None
        return PlanState.WAITING if key_waiting else PlanState.ACTIVATED

    def current_state_display(self) -> str:
        return PlanState(self.current_state()).label


class PlanBackend(models.Model):
    """One backend system (name and address) that where-used names for the plan's alias."""

    plan = models.ForeignKey(RenewalPlan, on_delete=models.CASCADE, related_name="backends")
    system = models.CharField("backend system", max_length=255, blank=True)
    address = models.CharField(max_length=2000, blank=True)
    usage = models.CharField(max_length=16, choices=BackendUsage.choices)
    #: [{"bundle_id", "bundle_name", "components": ["To ERP (SOAP Receiver)", ...]}, ...]
    flows = models.JSONField(default=list, blank=True)
    status = models.CharField(
        max_length=16, choices=BackendStatus.choices, default=BackendStatus.TO_INFORM
    )
    status_reason = models.TextField(blank=True)
    status_at = models.DateTimeField(null=True, blank=True)
    status_by = models.CharField(max_length=150, blank=True)
    informed_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    confirmed_by = models.CharField(max_length=150, blank=True)
    confirmed_comment = models.TextField(blank=True)
    confirmed_from = models.CharField(max_length=64, blank=True)
    # The signed link of the backend's administrator is valid while it carries this nonce;
    # revoking empties it, informing again draws a new one (renewals.plans.backendlinks).
    link_nonce = models.CharField(max_length=32, blank=True)
    link_issued_at = models.DateTimeField(null=True, blank=True)
    link_expires_at = models.DateTimeField(null=True, blank=True)
    # The last probe (a TLS connectivity test with the new key, or with the active one after
    # activation); its whole record is the run.
    probe_at = models.DateTimeField(null=True, blank=True)
    probe_key = models.CharField(max_length=16, blank=True)  # "pending" or "active"
    probe_ok = models.BooleanField(null=True, blank=True)
    probe_message = models.TextField(blank=True)
    probe_run = models.ForeignKey(
        "connectivity.ConnectivityTestRun",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["plan", "usage", "system", "address"]
        constraints = [
            models.UniqueConstraint(
                fields=["plan", "system", "address"], name="plans_one_row_per_backend"
            )
        ]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        return self.system or self.address

    @property
    def contact_key(self) -> str:
        """What a contact is remembered under: the system's name, or its address if unnamed."""
        return (self.system or self.address)[:255]

    @property
    def settled(self) -> bool:
        return self.status in SETTLED


class PlanSettingsQuerySet(TenantScopedQuerySet["TenantPlanSettings"]):
    pass


class TenantPlanSettings(models.Model):
    """A tenant's renewal settings: the activation gate and four eyes. Changed by superusers
    (the people who manage tenants), so that an administrator cannot lift the control that
    is meant to check them; a tenant without a row has RENEWALS_PLAN_GATE and no four eyes."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="plan_settings")
    gate = models.CharField(max_length=8, choices=Gate.choices, default=Gate.WARN)
    four_eyes = models.BooleanField(
        "four eyes",
        default=False,
        help_text="A second administrator approves each manual and planned activation; the "
        "approver cannot be the one who asked.",
    )
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.CharField(max_length=150, blank=True)

    objects = PlanSettingsQuerySet.as_manager()

    class Meta:
        verbose_name = "renewal settings"
        verbose_name_plural = "Renewal settings"
        ordering = ["tenant__slug"]

    def __str__(self) -> str:
        return f"{self.tenant.slug}: gate {self.gate}" + (", four eyes" if self.four_eyes else "")


class ContactQuerySet(TenantScopedQuerySet["BackendContact"]):
    pass


class BackendContact(models.Model):
    """Who administers a backend system of a tenant; remembered for the next renewal."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="backend_contacts")
    system = models.CharField("backend system", max_length=255)
    name = models.CharField(max_length=150)
    email = models.EmailField(max_length=254)
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.CharField(max_length=150, blank=True)

    objects = ContactQuerySet.as_manager()

    class Meta:
        ordering = ["tenant__slug", "system"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "system"], name="plans_one_contact_per_system"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"
