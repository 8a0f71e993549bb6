"""Admin screens of the renewal: New SAP Keys (download, activate) and SAP Key History
(download, Add to New SAP Keys).

Rows are never added, changed or deleted through the generic admin forms; every change goes
through a confirmation page whose POST calls one function of renewals.activation. Each custom
URL asks keystore.permissions for the row's tenant: reading roles see and download,
NodeManager.deploysecuritycontent activates and reverts.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from django.contrib import admin, messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_safe

from keystore import admin as keystore_admin
from keystore import permissions, services
from keystore.adminmixins import (
    FORM_METHODS,
    AdminRoute,
    NoAdminForms,
    RowAction,
    TenantFactsAdmin,
    TenantFilter,
    acting_user,
    expiry_badge,
    monitor_columns,
    request_now,
    row_menu,
)
from keystore.downloads import file_response
from keystore.timefmt import utc
from renewals import monitor
from renewals.activation import (
    AlreadyWaiting,
    NothingToActivate,
    PendingKeyExists,
    RenewalError,
    activate_pending_key,
    add_back_to_pending,
)
from renewals.models import PendingSapKey, SapKeyBackup, ScanRun, SentNotification
from renewals.plans import gate as plan_gate
from renewals.plans.models import RenewalPlan
from renewals.whereused import admin as whereused_admin
from renewals.whereused.report import annotate_usage_counts

#: Callables (request, pending key) -> buttons (label, url, css class) that other rooms
#: register to add to a new SAP key's row and page (renewals.plans: "Renewal plan").
PENDING_PAGE_EXTENSIONS: list[Callable[[HttpRequest, PendingSapKey], list[RowAction]]] = []

DOWNLOADS = (
    ("Download Certificate", "cer"),
    ("Download Root Certificate", "root"),
    ("Download Certificate Chain", "p7b"),
)
FACT_FIELDS = (
    "subject",
    "issuer",
    "serial",
    "valid_from",
    "valid_until_coloured",
    "key_type",
    "key_size",
    "signature_algorithm",
    "fingerprint_sha256",
    "root_subject",
    "root_fingerprint_sha256",
    "chain_length",
)


def comparison(old, new, now: datetime) -> list[tuple[str, str, str, bool]]:
    """(label, old, new, differs) rows for a confirmation page; public facts only. Valid until
    carries the days left in the expiry colours, as every list does."""
    rows = [
        ("SHA-256 fingerprint", old.fingerprint_sha256, new.fingerprint_sha256),
        ("Subject", old.subject, new.subject),
        ("Issuer", old.issuer, new.issuer),
        ("Serial number", old.serial, new.serial),
        ("Root certificate", old.root_subject, new.root_subject),
        ("Root SHA-256 fingerprint", old.root_fingerprint_sha256, new.root_fingerprint_sha256),
        ("Valid from", utc(old.valid_from) + " UTC", utc(new.valid_from) + " UTC"),
        ("Valid until", expiry_badge(old.valid_until, now), expiry_badge(new.valid_until, now)),
        ("Key", f"{old.key_type} {old.key_size}", f"{new.key_type} {new.key_size}"),
        ("Signature algorithm", old.signature_algorithm, new.signature_algorithm),
    ]
    return [(label, a, b, a != b) for label, a, b in rows]


class RenewalAdmin(NoAdminForms, TenantFactsAdmin):
    """Read-only rows with per-row buttons; changes only through the custom confirmation pages."""

    list_filter = (TenantFilter,)
    search_fields = ("alias", "tenant__slug", "fingerprint_sha256")
    actions = None
    list_per_page = 50
    has_downloads = True

    def may_deploy(self, request: HttpRequest, obj) -> bool:
        return permissions.may(request.user, permissions.DEPLOY, obj.tenant_id)

    #: The monitor's tab this list is (renewals.monitor); "" for lists outside the monitor.
    monitor_tab = ""

    def download_buttons(self, obj) -> list[RowAction]:
        return [
            (label, reverse(self.url_name("download"), args=[obj.pk, kind]), "download")
            for label, kind in DOWNLOADS
        ]

    def row_actions(
        self, request: HttpRequest, obj
    ) -> tuple[list[list[RowAction]], RowAction | None]:
        """(the row's action groups in the original's order, its main action): the same on the
        list's row menu and on the detail page. Subclasses add their own."""
        return ([self.download_buttons(obj)] if self.has_downloads else []), None

    @admin.display(description="valid until", ordering="valid_until")
    def valid_until_coloured(self, obj):
        return expiry_badge(obj.valid_until, timezone.now())

    def changelist_view(self, request, extra_context=None):
        context = dict(extra_context or {})
        if self.monitor_tab:
            context.update(monitor.monitor_context(request, self.monitor_tab))
        return super().changelist_view(request, context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.checked_object(request, object_id)
        groups, _main = self.row_actions(request, obj)
        context = {
            **(extra_context or {}),
            **self.detail_context(request, obj),
            "action_groups": [group for group in groups if group],
        }
        return super().change_view(request, object_id, form_url, context)

    def detail_context(self, request: HttpRequest, obj) -> dict:
        """More context for the detail page of `obj` (subclasses add theirs)."""
        return {}

    def get_urls(self):
        routes = self.custom_routes()
        if self.has_downloads:
            routes.append(
                ("<int:pk>/download/<str:kind>/", self.download_view, "download", require_safe)
            )
        return self.tenant_urls(routes) + super().get_urls()

    def custom_routes(self) -> list[AdminRoute]:
        """(route, view, name suffix, allowed methods) rows, see TenantScopedAdmin.tenant_urls."""
        return []

    def download_view(self, request: HttpRequest, pk: int, kind: str) -> HttpResponse:
        if kind not in services.PUBLIC_FORMATS:
            raise Http404("Unknown download format.")
        obj = self.get_object_for(request, pk, permissions.READ)
        try:
            return file_response(services.public_download(obj, kind))
        except services.KeystoreError as error:
            self.message_user(request, str(error), messages.ERROR)
            return HttpResponseRedirect(reverse(self.url_name("change"), args=[obj.pk]))

    @staticmethod
    def require_deploy_somewhere(request: HttpRequest) -> None:
        permissions.require_anywhere(request.user, permissions.DEPLOY, "activate or revert keys")


@admin.register(PendingSapKey)
class PendingSapKeyAdmin(RenewalAdmin):
    list_title = "New SAP Keys"
    count_plural = "new SAP keys"
    list_display_links = ("alias",)
    list_select_related = ("tenant", "entry")
    ordering = ("entry__valid_until", "tenant__slug", "alias")
    fields = (
        "tenant",
        "alias",
        "source",
        "provided_at",
        "provided_by_label",
        "auto_activation",
        "current_valid_until",
        *FACT_FIELDS,
    )
    readonly_fields = fields

    def get_queryset(self, request):
        # Lists need the facts only, not chains or sealed keys; usage counts come in the same query.
        return annotate_usage_counts(
            super()
            .get_queryset(request)
            .select_related("tenant", "entry")
            .defer(
                "chain_pem", "sealed_private_key", "entry__chain_pem", "entry__sealed_private_key"
            )
        )

    def get_list_display(self, request):
        now = request_now(request)

        @admin.display(description="Current key valid until", ordering="entry__valid_until")
        def current_key_valid_until(pending: PendingSapKey):
            return expiry_badge(pending.entry.valid_until, now)

        @admin.display(description="Automatic activation (UTC)", ordering="entry__valid_until")
        def auto_activation(pending: PendingSapKey):
            attention = pending.attention(now)
            if attention:
                return format_html(
                    '<span class="needs-attention" title="{}">Never: needs attention</span>'
                    "<br><small>{}</small>",
                    attention,
                    attention,
                )
            return utc(pending.auto_activation_at)

        @admin.display(description="Where-used")
        def where_used(pending: PendingSapKey):
            return whereused_admin.where_used_cell(
                pending.tenant_id,
                pending.alias,
                getattr(pending, "where_used_uses", 0),
                getattr(pending, "where_used_may_use", 0),
                pending=True,
            )

        @admin.display(description="Actions")
        def buttons(pending: PendingSapKey):
            groups, main = self.row_actions(request, pending)
            return row_menu(groups, main)

        return monitor_columns(
            request,
            (
                "alias",
                "tenant",
                "new_validity",
                current_key_valid_until,
                auto_activation,
                where_used,
                buttons,
            ),
        )

    monitor_tab = monitor.NEW_SAP_KEYS
    change_list_template = "admin/keystore/monitor_change_list.html"

    def detail_context(self, request: HttpRequest, obj) -> dict:
        # The detail page tells, like the row's Where-used cell, which flows use the alias.
        return whereused_admin.where_used_context(obj.tenant, obj.alias, pending=True)

    def row_actions(
        self, request: HttpRequest, obj
    ) -> tuple[list[list[RowAction]], RowAction | None]:
        [downloads], _ = super().row_actions(request, obj)
        # The Where-used cell links to the list; the pack is the backends' download.
        downloads += [
            button
            for button in whereused_admin.where_used_buttons(obj.tenant_id, obj.alias, pending=True)
            if button[0] == "Renewal pack"
        ]
        # Other rooms (renewal plans) add theirs through the hook, without a query per row.
        more = [
            button for extension in PENDING_PAGE_EXTENSIONS for button in extension(request, obj)
        ]
        if not self.may_deploy(request, obj):
            return [downloads, more], None
        activate = ("Activate", reverse(self.url_name("activate"), args=[obj.pk]), "activate")
        return [downloads, more, [activate]], activate

    @admin.display(description="New key valid (UTC)", ordering="valid_until")
    def new_validity(self, pending: PendingSapKey) -> str:
        return format_html(
            "{}<br>until {}",
            utc(pending.valid_from),
            expiry_badge(pending.valid_until, timezone.now()),
        )

    @admin.display(description="New key valid from", ordering="valid_from")
    def new_valid_from(self, pending: PendingSapKey) -> str:
        return utc(pending.valid_from)

    @admin.display(description="New key valid until", ordering="valid_until")
    def new_valid_until(self, pending: PendingSapKey) -> str:
        return utc(pending.valid_until)

    @admin.display(description="Current key valid until (UTC)")
    def current_valid_until(self, pending: PendingSapKey) -> str:
        return expiry_badge(pending.entry.valid_until, timezone.now())

    @admin.display(description="Automatic activation (UTC)", ordering="entry__valid_until")
    def auto_activation(self, pending: PendingSapKey) -> str:
        return utc(pending.auto_activation_at)

    def custom_routes(self) -> list[AdminRoute]:
        return [("<int:pk>/activate/", self.activate_view, "activate", FORM_METHODS)]

    def activate_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        self.require_deploy_somewhere(request)
        history_url = reverse(f"{self.admin_site.name}:renewals_sapkeybackup_changelist")
        pending = PendingSapKey.objects.select_related("tenant", "entry").filter(pk=pk).first()
        if pending is None:
            if request.method == "POST":
                # A double click or a second administrator: the first POST did the work.
                self.message_user(
                    request,
                    "This new SAP key is not waiting any more; it may have been activated "
                    "already. See SAP Key History.",
                    messages.WARNING,
                )
                return HttpResponseRedirect(history_url)
            raise Http404("No such new SAP key.")
        permissions.require(request.user, permissions.DEPLOY, pending.tenant)
        if request.method == "POST":
            return self._activate(request, pending, history_url)
        entry = pending.entry
        now = request_now(request)
        attention = pending.attention(now)
        return self.render_page(
            request,
            "activate.html",
            f"Activate the older key {pending.alias} again"
            if pending.is_revert
            else f"Activate the new SAP key {pending.alias}",
            pending=pending,
            entry=entry,
            rows=comparison(entry, pending, now),
            root_changed=entry.root_fingerprint_sha256 != pending.root_fingerprint_sha256,
            not_yet_valid=pending.valid_from > now,
            # The scheduler's promise only where it holds: no attention, and the date falls
            # before the key's own expiry.
            auto_activation_at=utc(pending.auto_activation_at)
            if not attention and pending.auto_activation_at < pending.valid_until
            else "",
            attention=attention,
            gate_preview=plan_gate.preview(
                pending.tenant, RenewalPlan.objects.filter(occasion=pending.material_id).first()
            ),
            **whereused_admin.where_used_context(pending.tenant, pending.alias, pending=True),
        )

    def _activate(self, request, pending: PendingSapKey, history_url: str) -> HttpResponse:
        confirmed = request.POST.get("fingerprint", "")
        if not confirmed:
            self.message_user(
                request, "Review the new key on the confirmation page first.", messages.ERROR
            )
            return HttpResponseRedirect(reverse(self.url_name("activate"), args=[pending.pk]))
        try:
            result = activate_pending_key(
                pending.tenant,
                pending.alias,
                actor=acting_user(request),
                expected_fingerprint=confirmed,
                override_reason=request.POST.get("override_reason", ""),
            )
        except NothingToActivate as error:
            self.message_user(request, str(error), messages.WARNING)
            return HttpResponseRedirect(history_url)
        except RenewalError as error:
            self.message_user(request, str(error), messages.ERROR)
            # Back to the confirmation page: it shows what the gate or four eyes wait for.
            return HttpResponseRedirect(reverse(self.url_name("activate"), args=[pending.pk]))
        self.message_user(
            request,
            f"The new SAP key {result.alias} in {result.tenant.slug} is active. The previous "
            f"key is in SAP Key History, active until {utc(result.at, seconds=True)} UTC. "
            "Restart the integration flows that use it and run their tests.",
            messages.SUCCESS,
        )
        if result.flows_to_restart:
            self.message_user(
                request,
                f"{result.flows_to_restart} integration flows with outbound connections are "
                "marked restart required (see Integration flows).",
                messages.WARNING,
            )
        if result.unsettled:
            self.message_user(
                request,
                "Not confirmed, verified or marked not affected in the renewal plan: "
                + ", ".join(result.unsettled)
                + ". Check these backends now.",
                messages.WARNING,
            )
        if result.root_changed:
            self.message_user(
                request,
                "The new key has another root certificate: backends must trust the new root.",
                messages.WARNING,
            )
        return HttpResponseRedirect(history_url)


@admin.register(SapKeyBackup)
class SapKeyHistoryAdmin(RenewalAdmin):
    list_title = "SAP Key History"
    count_plural = "SAP key backups"
    list_display_links = ("alias",)
    list_select_related = ("tenant",)
    ordering = ("tenant__slug", "alias", "-active_until")
    fields = (
        "tenant",
        "alias",
        "active_from",
        "active_until",
        "activated_by_label",
        *FACT_FIELDS,
    )
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).defer("chain_pem", "sealed_private_key")

    monitor_tab = monitor.SAP_KEY_HISTORY
    change_list_template = "admin/keystore/monitor_change_list.html"

    def row_actions(
        self, request: HttpRequest, obj
    ) -> tuple[list[list[RowAction]], RowAction | None]:
        groups, _ = super().row_actions(request, obj)
        if not self.may_deploy(request, obj):
            return groups, None
        url = reverse(self.url_name("revert"), args=[obj.pk])
        revert = ("Add to New SAP Keys", url, "revert")
        return [*groups, [revert]], revert

    def get_list_display(self, request):
        now = request_now(request)

        @admin.display(description="Actions")
        def buttons(backup: SapKeyBackup):
            groups, main = self.row_actions(request, backup)
            return row_menu(groups, main)

        @admin.display(description="Key valid until", ordering="valid_until")
        def key_valid_until(backup: SapKeyBackup):
            return expiry_badge(backup.valid_until, now)

        return monitor_columns(
            request,
            (
                "alias",
                "tenant",
                "key_valid_from",
                key_valid_until,
                "active_from_utc",
                "active_until_utc",
                "activated_by_label",
                buttons,
            ),
        )

    @admin.display(description="Key valid from", ordering="valid_from")
    def key_valid_from(self, backup: SapKeyBackup) -> str:
        return utc(backup.valid_from)

    @admin.display(description="Active from (UTC)", ordering="active_from")
    def active_from_utc(self, backup: SapKeyBackup) -> str:
        return utc(backup.active_from, seconds=True)

    @admin.display(description="Active until (UTC)", ordering="active_until")
    def active_until_utc(self, backup: SapKeyBackup):
        return format_html(
            '<span title="{}">{}</span>',
            backup.active_until.astimezone(UTC).isoformat(),
            utc(backup.active_until, seconds=True),
        )

    def custom_routes(self) -> list[AdminRoute]:
        return [("<int:pk>/revert/", self.revert_view, "revert", FORM_METHODS)]

    def revert_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        backup = self.get_object_for(request, pk, permissions.DEPLOY)
        revert_url = reverse(self.url_name("revert"), args=[backup.pk])
        if request.method == "POST":
            try:
                add_back_to_pending(
                    backup, actor=acting_user(request), replace=request.POST.get("replace") == "on"
                )
            except AlreadyWaiting as error:
                self.message_user(request, str(error), messages.WARNING)
                return HttpResponseRedirect(
                    reverse(f"{self.admin_site.name}:renewals_pendingsapkey_changelist")
                )
            except PendingKeyExists as error:
                self.message_user(request, str(error), messages.ERROR)
                return HttpResponseRedirect(revert_url)
            except RenewalError as error:
                self.message_user(request, str(error), messages.ERROR)
                return HttpResponseRedirect(reverse(self.url_name("changelist")))
            self.message_user(
                request,
                f"The backup of {backup.alias} active until "
                f"{utc(backup.active_until, seconds=True)} UTC is in New SAP Keys. Activate it "
                "there; backends that already use the newer certificate will fail afterwards.",
                messages.SUCCESS,
            )
            return HttpResponseRedirect(
                reverse(f"{self.admin_site.name}:renewals_pendingsapkey_changelist")
            )
        entry = backup.entry
        waiting = PendingSapKey.objects.filter(entry=entry).first()
        where_used = whereused_admin.where_used_context(backup.tenant, backup.alias)
        counts = where_used["where_used"]["counts"]
        return self.render_page(
            request,
            "revert.html",
            f"Add the backup of {backup.alias} to New SAP Keys",
            backup=backup,
            entry=entry,
            waiting=waiting,
            rows=comparison(entry, backup, request_now(request)),
            active_until=utc(backup.active_until, seconds=True),
            expired=backup.valid_until <= request_now(request),
            # Warn of failing backends only where some are known to use the alias, or where
            # the backup's root is not the one backends trust now.
            known_users=counts.uses + counts.may_use,
            root_differs=backup.root_fingerprint_sha256 != entry.root_fingerprint_sha256,
            **where_used,
        )


@admin.register(SentNotification)
class SentNotificationAdmin(RenewalAdmin):
    """The outbox of a tenant's renewals, for its administrators: mails (recipients are
    addresses) and chat or webhook messages (the channel by name; never its URL)."""

    list_title = "Mails"

    view_permission = permissions.DEPLOY
    search_fields = ("alias", "tenant__slug", "subject")
    list_display = (
        "created_at",
        "kind",
        "tenant",
        "alias",
        "threshold_days",
        "recipients",
        "channel_name",
        "sent_at",
        "attempts",
        "last_error",
    )
    list_select_related = ("tenant", "channel")
    ordering = ("-created_at", "-id")
    fields = (
        "kind",
        "tenant",
        "alias",
        "fingerprint",
        "threshold_days",
        "recipients",
        "subject",
        "body",
        "created_at",
        "sent_at",
        "attempts",
        "gave_up",
        "last_error",
    )
    readonly_fields = fields

    has_downloads = False

    @admin.display(description="channel", ordering="channel__name")
    def channel_name(self, notification: SentNotification) -> str:
        # The name only: the channel's URL is a secret (renewals.channels).
        channel = notification.channel
        return channel.name if channel is not None else "mail"


@admin.register(ScanRun)
class ScanRunAdmin(NoAdminForms, admin.ModelAdmin):
    """When the automatic-activation scan ran and what it did (operators: superusers)."""

    list_display = (
        "started_at",
        "as_of",
        "finished_at",
        "activated",
        "skipped",
        "reminded",
        "failed",
        "needing_attention",
        "interrupted",
    )
    fields = (*list_display, "detail")
    readonly_fields = fields
    actions = None

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser


# The keystore list is the monitor's first tab; keystore does not import renewals, so the tab
# header comes to it through its hook.
keystore_admin.ENTRY_LIST_EXTENSIONS.append(
    lambda request: monitor.monitor_context(request, monitor.KEYSTORE)
)
