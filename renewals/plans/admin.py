"""Renewal plans in the admin: the list of plans, the plan page of one new SAP key (its backends
with usage, flows, status and contact, or the plain words when there is none), and the POST
actions Rebuild, Not affected / Affected again and Save contact.

Reading roles (NodeManager.read on the plan's tenant) see plans; changing needs
NodeManager.deploysecuritycontent there. Every view asks keystore.permissions for the tenant
before it reads anything else, and calls one function of renewals.plans.services. The New SAP
Key page links here through renewals.admin's PENDING_PAGE_EXTENSIONS hook.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST, require_safe

from keystore import permissions
from keystore.adminmixins import (
    AdminRoute,
    NoAdminForms,
    RowAction,
    TenantFactsAdmin,
    TenantFilter,
    acting_user,
    is_superuser,
)
from keystore.models import Tenant
from keystore.timefmt import utc
from renewals import admin as renewals_admin
from renewals import conf as renewals_conf
from renewals.models import PendingSapKey
from renewals.plans import backendlinks, evidence, probing, services, tokens
from renewals.plans.adminwindow import PlanWindowViews
from renewals.plans.models import (
    SETTLED,
    BackendStatus,
    PlanBackend,
    PlanState,
    RenewalPlan,
    TenantPlanSettings,
)
from renewals.whereused import admin as whereused_admin


def site_base_url(request: HttpRequest) -> str:
    """The address backend administrators reach the site by: RENEWALS_SITE_URL, else the
    request's own."""
    return renewals_conf.site_url() or request.build_absolute_uri("/").rstrip("/")


def plan_url(tenant_id: int, alias: str) -> str:
    """The plan page of an alias (its waiting key's plan, else its latest), without a query."""
    return reverse("admin:plans_renewalplan_for_alias", args=[tenant_id, alias])


@admin.register(RenewalPlan)
class RenewalPlanAdmin(PlanWindowViews, NoAdminForms, TenantFactsAdmin):
    list_display = ("alias", "tenant", "state_now", "progress", "planned", "created_at")
    list_display_links = ("alias",)
    list_filter = (TenantFilter,)
    list_select_related = ("tenant",)
    search_fields = ("alias",)
    actions = ("inform_backends",)

    def get_queryset(self, request: HttpRequest):
        return (
            super()
            .get_queryset(request)
            .with_waiting()
            .annotate(
                backend_count=Count("backends"),
                settled_count=Count("backends", filter=Q(backends__status__in=SETTLED)),
            )
        )

    @admin.display(description="state")
    def state_now(self, plan: RenewalPlan) -> str:
        return plan.current_state_display()

    @admin.display(description="backends settled")
    def progress(self, plan) -> str:
        total = getattr(plan, "backend_count", 0)
        if not total:
            return "no backend"
        return f"{plan.settled_count} of {total}"

    @admin.display(description="planned activation (UTC)", ordering="planned_activation")
    def planned(self, plan: RenewalPlan) -> str:
        return utc(plan.planned_activation) if plan.planned_activation else ""

    def get_urls(self):
        routes: list[AdminRoute] = [
            ("for/<int:tenant_id>/<path:alias>/", self.for_alias_view, "for_alias", require_safe),
            ("rebuild/<int:tenant_id>/<path:alias>/", self.rebuild_view, "rebuild", require_POST),
            ("<int:pk>/backend/", self.backend_view, "backend", require_POST),
            ("<int:pk>/contact/", self.contact_view, "contact", require_POST),
            ("<int:pk>/inform/", self.inform_view, "inform", require_POST),
            ("<int:pk>/probe/", self.probe_view, "probe", require_POST),
            *self.window_routes(),
        ]
        return self.tenant_urls(routes) + super().get_urls()

    def for_alias_view(self, request: HttpRequest, tenant_id: int, alias: str) -> HttpResponse:
        permissions.require(request.user, permissions.READ, tenant_id)
        tenant = Tenant.objects.get(pk=tenant_id)
        try:
            plan = services.plan_of(tenant, alias)
        except services.PlanError as error:
            if not PendingSapKey.objects.filter(tenant=tenant, entry__alias=alias).exists():
                raise Http404(str(error))
            # A key that waited before plans existed: its page offers Rebuild.
            return self._page(request, None, tenant, alias, note=str(error))
        return HttpResponseRedirect(self._change_url(plan))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if request.method not in ("GET", "HEAD"):
            # Plans change only through the POST actions below: Django's view refuses (403).
            return super().change_view(request, object_id, form_url, extra_context)
        plan = self.checked_object(request, object_id)
        return self._page(request, plan, plan.tenant, plan.alias)

    def _page(
        self,
        request: HttpRequest,
        plan: RenewalPlan | None,
        tenant: Tenant,
        alias: str,
        note: str = "",
    ) -> HttpResponse:
        may_deploy = permissions.may(request.user, permissions.DEPLOY, tenant)
        index = services.flow_index(tenant)
        backends: list[PlanBackend] = list(plan.backends.all()) if plan else []
        contacts = services.contacts_for(plan) if plan else {}
        now = timezone.now()
        rows = [
            (
                backend,
                contacts.get(backend.contact_key),
                tokens.link_path(backend)
                if may_deploy and backend.link_expires_at and backend.link_expires_at > now
                else "",
            )
            for backend in backends
        ]
        pending = plan.pending_key() if plan else None
        state = plan.current_state(key_waiting=pending is not None) if plan else ""
        return self.render_page(
            request,
            "plan.html",
            f"Renewal plan of {alias}",
            plan=plan,
            tenant=tenant,
            alias=alias,
            note=note,
            rows=rows,
            settled=sum(1 for backend in backends if backend.settled),
            nothing_to_do=services.nothing_to_do(plan, index) if plan else "",
            no_flows=index.flows == 0,
            flow_import_url=reverse("admin:whereused_integrationflow_import"),
            where_used_url=whereused_admin.whereused_url(tenant.pk, alias, pending=True),
            pack_url=whereused_admin.renewal_pack_url(tenant.pk, alias, pending=True)
            if pending
            else "",
            pending_url=reverse("admin:renewals_pendingsapkey_change", args=[pending.pk])
            if pending
            else "",
            gate=services.gate_of(tenant),
            state=PlanState(state).label if state else "",
            waiting=state == PlanState.WAITING,
            may_deploy=may_deploy and state in ("", PlanState.WAITING),
            rebuild_url=reverse(self.url_name("rebuild"), args=[tenant.pk, alias]),
            backend_url=reverse(self.url_name("backend"), args=[plan.pk]) if plan else "",
            contact_url=reverse(self.url_name("contact"), args=[plan.pk]) if plan else "",
            inform_url=reverse(self.url_name("inform"), args=[plan.pk]) if plan else "",
            probe_url=reverse(self.url_name("probe"), args=[plan.pk]) if plan else "",
            may_probe=bool(plan)
            and permissions.may(request.user, permissions.READ_CREDENTIALS, tenant),
            not_affected=BackendStatus.NOT_AFFECTED,
            checklist=evidence.checklist(plan) if plan and state != PlanState.WAITING else None,
            may_activate=may_deploy and state == PlanState.WAITING,
            **self.window_context(plan, tenant),
        )

    def rebuild_view(self, request: HttpRequest, tenant_id: int, alias: str) -> HttpResponse:
        permissions.require(request.user, permissions.DEPLOY, tenant_id)
        tenant = Tenant.objects.get(pk=tenant_id)
        try:
            plan = services.rebuild_plan(tenant, alias, actor=acting_user(request))
        except services.PlanError as error:
            self.message_user(request, str(error), messages.ERROR)
            return HttpResponseRedirect(plan_url(tenant_id, alias))
        self.message_user(
            request,
            f"Rebuilt the renewal plan of {alias} from where-used: "
            f"{plan.backends.count()} backends.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(self._change_url(plan))

    def _posted_backend(self, request: HttpRequest, plan: RenewalPlan) -> PlanBackend | None:
        raw = request.POST.get("backend", "")
        backend = (
            PlanBackend.objects.filter(plan=plan, pk=int(raw)).first() if raw.isdigit() else None
        )
        if backend is None:
            self.message_user(
                request,
                "Choose a backend of this plan; it may have left the plan when it was rebuilt.",
                messages.ERROR,
            )
        return backend

    def backend_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        plan = self.get_object_for(request, pk, permissions.DEPLOY)
        backend = self._posted_backend(request, plan)
        if backend is None:
            return HttpResponseRedirect(self._change_url(plan))
        action = request.POST.get("action", "")
        try:
            if action == "not_affected":
                services.mark_not_affected(
                    backend, request.POST.get("reason", ""), actor=acting_user(request)
                )
                done = f"{backend.label} is marked not affected."
            elif action == "reopen":
                services.reopen_backend(backend, actor=acting_user(request))
                done = f"{backend.label} is affected again."
            elif action == "revoke":
                backendlinks.revoke_link(backend, actor=acting_user(request))
                done = f"The link of {backend.label} is revoked; Inform backends sends a new one."
            else:
                raise services.PlanError("Choose Not affected, Affected again or Revoke link.")
        except services.PlanError as error:
            self.message_user(request, str(error), messages.ERROR)
        else:
            self.message_user(request, done, messages.SUCCESS)
        return HttpResponseRedirect(self._change_url(plan))

    def _inform(self, request: HttpRequest, plan: RenewalPlan) -> None:
        try:
            result = backendlinks.inform_backends(
                plan.tenant,
                plan.alias,
                base_url=site_base_url(request),
                actor=acting_user(request),
            )
        except services.PlanError as error:
            self.message_user(request, f"{plan}: {error}", messages.ERROR)
            return
        self.message_user(
            request,
            f"{plan}: informed "
            + ", ".join(f"{backend.label} ({mail})" for backend, mail in result.informed)
            + "."
            + (
                " No contact yet: "
                + ", ".join(backend.label for backend in result.without_contact)
                + "."
                if result.without_contact
                else ""
            ),
            messages.WARNING if result.without_contact else messages.SUCCESS,
        )

    def probe_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        plan = self.get_object_for(request, pk, permissions.READ_CREDENTIALS)
        active = request.POST.get("key") == "active"
        try:
            report = probing.probe_backends(
                plan.tenant, plan.alias, active=active, actor=acting_user(request)
            )
        except services.PlanError as error:
            self.message_user(request, str(error), messages.ERROR)
            return HttpResponseRedirect(self._change_url(plan))
        key = "active key" if active else "new key"
        self.message_user(
            request,
            f"Probed {len(report.probed)} backends with the {key}: "
            f"{len(report.succeeded)} succeeded"
            + (
                "; failed: " + "; ".join(f"{b.label}: {b.probe_message}" for b in report.failed)
                if report.failed
                else "."
            ),
            messages.WARNING if report.failed else messages.SUCCESS,
        )
        return HttpResponseRedirect(self._change_url(plan))

    def inform_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        plan = self.get_object_for(request, pk, permissions.DEPLOY)
        self._inform(request, plan)
        return HttpResponseRedirect(self._change_url(plan))

    @admin.action(
        description="Inform backends (mail each contact a signed link)", permissions=("deploy",)
    )
    def inform_backends(self, request: HttpRequest, queryset) -> None:
        for plan in self.filter_selection(request, queryset, permissions.DEPLOY).select_related(
            "tenant"
        ):
            self._inform(request, plan)

    def has_deploy_permission(self, request: HttpRequest) -> bool:
        return permissions.may_anywhere(request.user, permissions.DEPLOY)

    def contact_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        plan = self.get_object_for(request, pk, permissions.DEPLOY)
        backend = self._posted_backend(request, plan)
        if backend is None:
            return HttpResponseRedirect(self._change_url(plan))
        try:
            contact = services.save_contact(
                plan.tenant,
                backend.contact_key,
                request.POST.get("name", ""),
                request.POST.get("email", ""),
                actor=acting_user(request),
            )
        except services.PlanError as error:
            self.message_user(request, str(error), messages.ERROR)
        else:
            self.message_user(request, f"Contact of {contact.system}: {contact}.", messages.SUCCESS)
        return HttpResponseRedirect(self._change_url(plan))


@admin.register(TenantPlanSettings)
class TenantPlanSettingsAdmin(TenantFactsAdmin):
    """A tenant's gate and four eyes. Superusers change them (the people who manage tenants),
    so an administrator cannot lift the control meant to check them; the tenant's readers see
    them. Every change is audited."""

    list_display = ("tenant", "gate", "four_eyes", "updated_at", "updated_by")
    list_select_related = ("tenant",)
    fields = ("tenant", "gate", "four_eyes")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return is_superuser(request.user)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return is_superuser(request.user)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return is_superuser(request.user)

    def save_model(self, request, obj, form, change) -> None:
        services.save_plan_settings(obj.tenant, obj.gate, obj.four_eyes, actor=acting_user(request))


def _pending_page(request: HttpRequest, pending: PendingSapKey) -> list[RowAction]:
    # No query: the plan page is found by tenant and alias, so a list row costs nothing.
    return [("Renewal plan", plan_url(pending.tenant_id, pending.alias), "renewal-plan")]


renewals_admin.PENDING_PAGE_EXTENSIONS.append(_pending_page)
