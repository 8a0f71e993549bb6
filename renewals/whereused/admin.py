"""Where-used in the admin: imported integration flows (with their key usages and "Restart"), the
"Import integration flows" page, the where-used page of an alias (with CSV) and the renewal pack.

Reading roles (NodeManager.read on the tenant) see flows, where-used pages and download packs;
importing, restarting and removing need NodeManager.deploysecuritycontent on the flow's tenant.
Every view asks keystore.permissions for the tenant it touches. Flows are never added, changed or
deleted through the admin's own forms (removal is the "Remove from the where-used index" action,
with its confirmation page); the views are thin callers of the where-used modules (importing,
report, pack, restart).

Other admin pages link here with `where_used_buttons`, `where_used_cell` and
`where_used_context` (plus the template "admin/whereused/summary.html"); `whereused_url` and
`renewal_pack_url` are the addresses of an alias's pages.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypedDict

from django.contrib import admin, messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_safe

from keystore import admin as keystore_admin
from keystore import permissions
from keystore.adminmixins import (
    FORM_METHODS,
    AdminRoute,
    NoAdminForms,
    TenantFactsAdmin,
    TenantFilter,
    acting_user,
)
from keystore.downloads import file_response
from keystore.models import EntryType, KeyMaterial, KeystoreEntry, Tenant
from renewals.models import PendingSapKey
from renewals.whereused import conf as restart_conf
from renewals.whereused import importing, pack, restart
from renewals.whereused.errors import WhereUsedError
from renewals.whereused.forms import CappedTemporaryFileUploadHandler, FlowImportForm
from renewals.whereused.models import IntegrationFlow, KeyUsageRecord
from renewals.whereused.report import where_used

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

    class _UsageCount(TypedDict):
        usage_count: int

    #: A flow of the flow list, with the number of its key usages (FlowQuerySet.with_usage_count).
    FlowWithUsageCount = WithAnnotations[IntegrationFlow, _UsageCount]

TRUE_VALUES = ("1", "true", "yes", "on")


def utc(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else ""


# -- hooks for other admin pages -------------------------------------------------------------


def whereused_url(tenant_id: int, alias: str, pending: bool = False) -> str:
    url = reverse("admin:whereused_integrationflow_where_used", args=[tenant_id, alias])
    return url + "?pending=1" if pending else url


def renewal_pack_url(tenant_id: int, alias: str, pending: bool = False) -> str:
    url = reverse("admin:whereused_integrationflow_renewal_pack", args=[tenant_id, alias])
    return url + "?pending=1" if pending else url


def where_used_buttons(tenant_id: int, alias: str, *, pending: bool = False) -> list:
    """(label, url, css class) buttons in the style of the keystore and renewal pages."""
    return [
        ("Where-used", whereused_url(tenant_id, alias, pending), "where-used"),
        ("Renewal pack", renewal_pack_url(tenant_id, alias, pending), "download"),
    ]


def where_used_cell(
    tenant_id: int, alias: str, uses: int, may_use: int, *, pending: bool = False
) -> SafeString:
    """A list cell "2 use, 1 may use" linking to the where-used page (counts come from
    renewals.whereused.report's annotate_usage_counts or usage_counts: no query here)."""
    return format_html(
        '<a class="where-used-counts" href="{}" title="Components that use / may use this '
        'alias in the imported integration flows">{} use, {} may use</a>',
        whereused_url(tenant_id, alias, pending),
        uses,
        may_use,
    )


def where_used_context(
    tenant: Tenant, alias: str, *, pending: bool = False, key_pair: bool = True
) -> dict:
    """Context for {% include "admin/whereused/summary.html" %}: counts, the flows to restart
    after activation and the links (one query)."""
    report = where_used(tenant, alias, key_pair=key_pair)
    return {
        "where_used": {
            "alias": alias,
            "pending": pending,
            "counts": report.counts,
            "flows_to_restart": report.flows_to_restart_after_activation,
            # Named on the delete confirmation: what fails when the alias is gone.
            "using_flows": sorted({flow.bundle_name for b in report.uses for flow in b.flows}),
            "using_backends": sorted(
                {" ".join(filter(None, (b.system, b.address))) for b in report.uses if b.is_backend}
            ),
            "url": whereused_url(tenant.pk, alias, pending),
            "csv_url": _with_query(whereused_url(tenant.pk, alias, pending), "format=csv"),
            "pack_url": renewal_pack_url(tenant.pk, alias, pending),
        }
    }


def _with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


# -- the admin -------------------------------------------------------------------------------


class KeyUsageInline(NoAdminForms, admin.TabularInline):
    """The flow's usages, read-only (they change only by importing the flow again)."""

    model = KeyUsageRecord
    extra = 0
    can_delete = False
    show_change_link = False
    fields = (
        "component_name",
        "component_id",
        "component_type",
        "direction",
        "usage",
        "certainty",
        "alias_label",
        "property_key",
        "system",
        "address",
        "outbound",
        "reason",
        "script_file",
    )
    readonly_fields = fields
    ordering = ("component_name", "component_id", "id")

    @admin.display(description="alias")
    def alias_label(self, usage: KeyUsageRecord) -> str:
        return usage.alias_label

    def has_view_permission(self, request, obj=None) -> bool:
        # Django asks without an object for the inline's queryset; the parent's page has
        # checked the flow's tenant already, and the inline only shows that flow's rows.
        if obj is None:
            return permissions.may_anywhere(request.user, permissions.READ)
        return permissions.may(request.user, permissions.READ, obj.tenant_id)


@admin.register(IntegrationFlow)
class IntegrationFlowAdmin(NoAdminForms, TenantFactsAdmin):
    list_display = (
        "bundle_name",
        "bundle_id",
        "version",
        "tenant",
        "usage_count",
        "restart_state",
        "imported_at_utc",
        "imported_by_label",
    )
    list_filter = (TenantFilter, "restart_required")
    search_fields = ("bundle_name", "bundle_id")
    list_select_related = ("tenant",)
    list_per_page = 100
    ordering = ("tenant__slug", "bundle_name", "bundle_id")
    actions = ("restart_selected", "remove_selected")
    inlines = (KeyUsageInline,)
    fields = (
        "tenant",
        "bundle_name",
        "bundle_id",
        "version",
        "flow_names_text",
        "imported_at_utc",
        "imported_by_label",
        "restart_state",
        "restart_reason",
        "last_restart",
        "warnings_text",
        "unresolved_parameters_text",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).with_usage_count()

    # ---- columns and fields ----------------------------------------------------------------

    @admin.display(description="key usages", ordering="usage_count")
    def usage_count(self, flow: FlowWithUsageCount) -> int:
        return flow.usage_count

    @admin.display(description="restart", ordering="restart_required")
    def restart_state(self, flow: IntegrationFlow):
        if flow.restart_required:
            return format_html(
                '<span class="restart-required" title="{}">Restart required since {}</span>',
                flow.restart_reason,
                utc(flow.restart_required_since),
            )
        return format_html('<span class="restart-ok">{}</span>', "No")

    @admin.display(description="imported at", ordering="imported_at")
    def imported_at_utc(self, flow: IntegrationFlow) -> str:
        return utc(flow.imported_at)

    @admin.display(description="last restart")
    def last_restart(self, flow: IntegrationFlow) -> str:
        if flow.last_restart_at is None:
            return "Never"
        return f"{utc(flow.last_restart_at)} by {flow.last_restart_by_label}"

    @admin.display(description="integration flows in the export")
    def flow_names_text(self, flow: IntegrationFlow) -> str:
        return ", ".join(flow.flow_names)

    @admin.display(description="warnings")
    def warnings_text(self, flow: IntegrationFlow):
        if not flow.warnings:
            return "None"
        return format_html(
            "<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((w,) for w in flow.warnings))
        )

    @admin.display(description="unset parameters")
    def unresolved_parameters_text(self, flow: IntegrationFlow) -> str:
        if not flow.unresolved_parameters:
            return "None"
        return ", ".join(f"{{{{{name}}}}}" for name in flow.unresolved_parameters)

    # ---- the Restart action ----------------------------------------------------------------

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        restart_action = actions.get("restart_selected")
        if restart_action is not None and restart_conf.restart_callable() is None:
            # Without a restart hook the action restarts nothing: it records a restart made in
            # Cloud Integration, and says so.
            function, name, _ = restart_action
            actions["restart_selected"] = (
                function,
                name,
                "Record a restart made in Cloud Integration (clears “restart required”)",
            )
        return actions

    @admin.action(description="Restart (clears “restart required”)", permissions=("deploy",))
    def restart_selected(self, request: HttpRequest, queryset) -> None:
        selected = list(queryset.values_list("pk", flat=True))
        allowed = list(
            self.filter_selection(request, queryset, permissions.DEPLOY).values_list(
                "pk", flat=True
            )
        )
        if len(allowed) < len(selected):
            self.message_user(
                request,
                f"{len(selected) - len(allowed)} selected flows are in tenants where you may not "
                "restart flows; they were left unchanged.",
                messages.ERROR,
            )
        flows = IntegrationFlow.objects.filter(pk__in=allowed).order_by("bundle_name")
        results = restart.restart_flows(flows, actor=acting_user(request))
        done = [result for result in results if result.ok]
        for result in results:
            if not result.ok:
                self.message_user(request, result.message, messages.ERROR)
        if done:
            what = (
                "restarted" if restart_conf.restart_callable() is not None else "restart recorded"
            )
            names = ", ".join(str(result.flow) for result in done)
            self.message_user(request, f"{len(done)} flows {what}: {names}.", messages.SUCCESS)

    # ---- the Remove action -----------------------------------------------------------------

    @admin.action(description="Remove from the where-used index", permissions=("deploy",))
    def remove_selected(self, request: HttpRequest, queryset):
        selected = queryset.count()
        allowed = list(
            self.filter_selection(request, queryset, permissions.DEPLOY)
            .select_related("tenant")
            .with_usage_count()
            .order_by("tenant__slug", "bundle_name", "bundle_id")
        )
        not_allowed = selected - len(allowed)
        if not_allowed:
            self.message_user(
                request,
                f"{not_allowed} selected flows are in tenants where you may not remove flows; "
                "they were left unchanged.",
                messages.ERROR,
            )
        if not allowed:
            return None
        if request.POST.get("post") != "yes":
            return self.render_page(
                request,
                "remove_confirmation.html",
                "Remove integration flows from the where-used index",
                flows=allowed,
                usages=sum(flow.usage_count for flow in allowed),
                selected_ids=[flow.pk for flow in allowed],
                action_checkbox_name=admin.helpers.ACTION_CHECKBOX_NAME,
                action_name="remove_selected",
            )
        by_tenant: dict[Tenant, list[str]] = {}
        for flow in allowed:
            by_tenant.setdefault(flow.tenant, []).append(flow.bundle_id)
        for tenant, bundle_ids in by_tenant.items():
            try:
                results = importing.remove_flows(tenant, bundle_ids, actor=acting_user(request))
            except WhereUsedError as error:
                self.message_user(request, str(error), messages.ERROR)
                continue
            removed = [result.message for result in results if result.ok]
            if removed:
                self.message_user(
                    request, f"{tenant.slug}: " + "; ".join(removed) + ".", messages.SUCCESS
                )
            for result in results:
                if not result.ok:
                    self.message_user(request, f"{tenant.slug}: {result.message}.", messages.ERROR)
        return None

    # ---- custom URLs -----------------------------------------------------------------------

    def get_urls(self):
        # csrf_exempt only defers the check: import_view swaps the upload handlers (which must
        # happen before the body is read) and then runs the CSRF check itself.
        routes: list[AdminRoute] = [
            ("import/", csrf_exempt(self.import_view), "import", FORM_METHODS),
            (
                "where-used/<int:tenant_id>/<path:alias>/",
                self.where_used_view,
                "where_used",
                require_safe,
            ),
            (
                "renewal-pack/<int:tenant_id>/<path:alias>/",
                self.renewal_pack_view,
                "renewal_pack",
                require_safe,
            ),
        ]
        return self.tenant_urls(routes) + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        extra = {"import_url": None, "restart_note": restart.describe()}
        if permissions.may_anywhere(request.user, permissions.DEPLOY):
            extra["import_url"] = reverse(self.url_name("import"))
        return super().changelist_view(request, {**(extra_context or {}), **extra})

    # ---- import ----------------------------------------------------------------------------

    def import_view(self, request: HttpRequest) -> HttpResponse:
        permissions.require_anywhere(request.user, permissions.DEPLOY, "import integration flows")
        if request.method == "POST":
            # Every upload goes to a temporary file, so a batch is never held in memory.
            request.upload_handlers = [CappedTemporaryFileUploadHandler(request)]
        return csrf_protect(self._import)(request)

    def _import(self, request: HttpRequest) -> HttpResponse:
        results = None
        tenant = None
        if request.method == "POST":
            self.check_posted_tenant(
                request,
                permissions.DEPLOY,
                "You may not import integration flows into this tenant.",
            )
            form = FlowImportForm(request.POST, request.FILES, user=request.user)
            if form.is_valid():
                tenant = form.cleaned_data["tenant"]
                uploads = form.cleaned_data["files"]
                try:
                    results = importing.import_flow_exports(
                        tenant,
                        ((upload.name, upload) for upload in uploads),
                        actor=acting_user(request),
                    )
                except WhereUsedError as error:
                    form.add_error(None, str(error))
                else:
                    failed = sum(1 for result in results if not result.ok)
                    self.message_user(
                        request,
                        f"{len(results) - failed} of {len(results)} files imported into "
                        f"{tenant.slug}."
                        + (f" {failed} failed; nothing was stored for them." if failed else ""),
                        messages.WARNING if failed else messages.SUCCESS,
                    )
                    form = FlowImportForm(user=request.user, initial={"tenant": tenant.pk})
        else:
            form = FlowImportForm(user=request.user)
        rows = [
            (
                result,
                reverse(self.url_name("change"), args=[result.flow_id]) if result.flow_id else "",
            )
            for result in results or []
        ]
        return self.render_page(
            request,
            "import.html",
            "Import integration flows",
            form=form,
            results=rows,
            imported_tenant=tenant,
        )

    # ---- where-used and renewal pack -------------------------------------------------------

    @staticmethod
    def _material(
        request: HttpRequest, tenant_id: int, alias: str
    ) -> tuple[PendingSapKey | KeystoreEntry, bool]:
        """(entry or pending key, pending?) for a where-used URL; 404 before anything is read
        about a tenant the user may not see."""
        permissions.require(request.user, permissions.READ, tenant_id)
        pending = request.GET.get("pending", "").lower() in TRUE_VALUES
        if pending:
            new_key = (
                PendingSapKey.objects.select_related("tenant", "entry")
                .defer("sealed_private_key", "entry__sealed_private_key")
                .filter(tenant_id=tenant_id, entry__alias=alias)
                .first()
            )
            if new_key is None:
                raise Http404("No new SAP key is waiting for this alias.")
            return new_key, pending
        entry = (
            KeystoreEntry.objects.select_related("tenant")
            .defer("sealed_private_key")
            .filter(tenant_id=tenant_id, alias=alias)
            .first()
        )
        if entry is None:
            raise Http404("No keystore entry with this alias.")
        return entry, pending

    @staticmethod
    def _key_pair(material: KeyMaterial) -> bool:
        entry_type = getattr(material, "entry_type", EntryType.KEY_PAIR)
        return entry_type == EntryType.KEY_PAIR

    def where_used_view(self, request: HttpRequest, tenant_id: int, alias: str) -> HttpResponse:
        material, pending = self._material(request, tenant_id, alias)
        output = request.GET.get("format", "")
        if output not in ("", "html", "csv"):
            raise Http404("Unknown format; choose csv.")
        report = where_used(material.tenant, alias, key_pair=self._key_pair(material))
        if output == "csv":
            return file_response(pack.csv_download(report, pending=pending))
        url = whereused_url(tenant_id, alias, pending)
        entry = material.entry if isinstance(material, PendingSapKey) else material
        for _key, _title, backends in report.sections:
            for backend in backends:
                for flow in backend.flows:
                    flow.admin_url = reverse(self.url_name("change"), args=[flow.flow_id])
        return self.render_page(
            request,
            "where_used.html",
            f"Where-used: {alias}",
            report=report,
            counts=report.counts,
            material=material,
            entry=entry,
            pending=pending,
            tenant=material.tenant,
            csv_url=_with_query(url, "format=csv"),
            pack_url=renewal_pack_url(tenant_id, alias, pending),
            other_url=whereused_url(tenant_id, alias, True) if not pending else url,
            has_pending=pending or PendingSapKey.objects.filter(entry=entry).exists(),
            entry_url=reverse("admin:keystore_keystoreentry_change", args=[entry.pk]),
            flows_url=reverse(self.url_name("changelist")) + f"?tenant={tenant_id}",
            restart_url=reverse(self.url_name("changelist"))
            + f"?tenant={tenant_id}&restart_required__exact=1",
            may_restart=permissions.may(request.user, permissions.DEPLOY, tenant_id),
            restart_note=restart.describe(),
        )

    def renewal_pack_view(self, request: HttpRequest, tenant_id: int, alias: str) -> HttpResponse:
        material, _pending = self._material(request, tenant_id, alias)
        report = where_used(material.tenant, alias, key_pair=self._key_pair(material))
        try:
            return file_response(pack.renewal_pack(material, report))
        except WhereUsedError as error:
            self.message_user(request, str(error), messages.ERROR)
            return HttpResponseRedirect(
                reverse(self.url_name("where_used"), args=[tenant_id, alias])
                + ("?pending=1" if _pending else "")
            )


def _entry_page(request: HttpRequest, entry: KeystoreEntry) -> tuple[list, dict]:
    """Where-used on a keystore entry's page: its buttons and the summary of its uses."""
    return (
        where_used_buttons(entry.tenant_id, entry.alias),
        where_used_context(
            entry.tenant, entry.alias, key_pair=entry.entry_type == EntryType.KEY_PAIR
        ),
    )


keystore_admin.ENTRY_PAGE_EXTENSIONS.append(_entry_page)
