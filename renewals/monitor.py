"""The Keystore Monitor's frame: the three lists of a tenant's keystore (Keystore, New SAP Keys,
SAP Key History) as tabs with their counts, and a link bar to the pages around them (where-used,
connectivity tests, audit log, mails), as Cloud Integration's Keystore Monitor shows them.

The three changelists stay Django admin changelists (filters, search, messages, breadcrumbs);
each renders this frame above itself (keystore/templates/admin/keystore/monitor_tabs.html). It
lives in renewals because it counts renewal rows; the keystore list gets it through
keystore.admin.ENTRY_LIST_EXTENSIONS, so the state app does not import the change side.

Counts use the lists' own managers narrowed by visible_to, so each counts only what the user
may see there; the frame asks the database four times whatever the number of rows (the
tenants, then one count per tab).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse

from keystore import permissions
from keystore.adminmixins import TenantFilter, monitor_tenants
from keystore.models import AuditEvent, KeystoreEntry, Tenant
from renewals.models import PendingSapKey, SapKeyBackup, SentNotification

KEYSTORE, NEW_SAP_KEYS, SAP_KEY_HISTORY = "keystore", "new_sap_keys", "sap_key_history"

#: (tab, label, model): the monitor's tabs in the original's order.
TABS: tuple[tuple[str, str, type[Model]], ...] = (
    (KEYSTORE, "Keystore", KeystoreEntry),
    (NEW_SAP_KEYS, "New SAP Keys", PendingSapKey),
    (SAP_KEY_HISTORY, "SAP Key History", SapKeyBackup),
)


@dataclass(frozen=True)
class Tab:
    key: str
    label: str
    count: int
    url: str
    current: bool

    @property
    def text(self) -> str:
        """ "New SAP Keys (1)"."""
        return f"{self.label} ({self.count})"


@dataclass(frozen=True)
class MonitorLink:
    label: str
    url: str


@dataclass(frozen=True)
class TenantChoice:
    label: str
    url: str
    current: bool


@dataclass(frozen=True)
class Monitor:
    """What monitor_tabs.html draws: the tenant shown (None: all the user's tenants), the tabs,
    the tenant switch (only for users with more than one tenant) and the links."""

    tenant: Tenant | None
    tabs: list[Tab]
    tenants: list[TenantChoice]
    links: list[MonitorLink]


def _links() -> tuple[tuple[str, type[Model]], ...]:
    # Imported here: the where-used and connectivity apps are optional parts of the site.
    from renewals.connectivity.models import ConnectivityTestRun
    from renewals.whereused.models import IntegrationFlow

    return (
        ("Where-used (integration flows)", IntegrationFlow),
        ("Connectivity tests", ConnectivityTestRun),
        ("Audit log", AuditEvent),
        ("Mails", SentNotification),
    )


def _changelist_url(model: type[Model], tenant: Tenant | None) -> str:
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    return f"{url}?{TenantFilter.parameter_name}={tenant.pk}" if tenant else url


def _view_permission(model: type[Model]) -> str | None:
    """The permission the model's admin asks for its list (None: the model has no admin)."""
    model_admin = admin.site._registry.get(model)
    if model_admin is None:
        return None
    return getattr(model_admin, "view_permission", permissions.READ)


def _may_see(request: HttpRequest, perm: str, tenant: Tenant | None) -> bool:
    if tenant is None:
        return permissions.may_anywhere(request.user, perm)
    return permissions.may(request.user, perm, tenant)


def _count(queryset: QuerySet, request: HttpRequest, tenant: Tenant | None) -> int:
    visible = queryset.visible_to(request.user, permissions.READ)  # type: ignore[attr-defined]
    return (visible.filter(tenant=tenant) if tenant else visible).count()


def monitor(request: HttpRequest, current: str) -> Monitor:
    """The frame of the tab `current` (KEYSTORE, NEW_SAP_KEYS or SAP_KEY_HISTORY)."""
    tenant, tenants = monitor_tenants(request)
    tabs = [
        Tab(
            key=key,
            label=label,
            count=_count(model._default_manager.all(), request, tenant),
            url=_changelist_url(model, tenant),
            current=key == current,
        )
        for key, label, model in TABS
    ]
    current_model = next(model for key, _, model in TABS if key == current)
    choices = []
    if len(tenants) > 1:
        base = _changelist_url(current_model, None)
        choices = [TenantChoice("All tenants", base, tenant is None)] + [
            TenantChoice(
                choice.slug,
                f"{base}?{TenantFilter.parameter_name}={choice.pk}",
                choice == tenant,
            )
            for choice in tenants
        ]
    links = []
    for label, model in _links():
        perm = _view_permission(model)
        if perm is None or not _may_see(request, perm, tenant):
            continue
        try:
            links.append(MonitorLink(label, _changelist_url(model, tenant)))
        except NoReverseMatch:
            continue
    return Monitor(tenant=tenant, tabs=tabs, tenants=choices, links=links)


def monitor_context(request: HttpRequest, current: str) -> dict:
    """Context for a changelist of the monitor: {"monitor": ...}."""
    return {"monitor": monitor(request, current)}
