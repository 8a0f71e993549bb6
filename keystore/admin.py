"""The keystore in the Django admin: tenants, keystore entries (with uploads, downloads, key pair
creation, signing request and signed certificate, rename, delete, PKCS#12 export, and the
server-side backup's Back up and Restore) and the audit log.

Every page asks keystore.permissions for the tenant it shows or changes. The admin's own add,
change and delete machinery is switched off for entries: an entry comes only from an upload or
"Create key pair" and changes only through the service functions in keystore.services, which
the custom views below call with `actor=acting_user(request)`. Lists read certificate facts from
columns; only the detail page parses the chain (to draw it as a tree). Private keys are never
put in a page.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, TypedDict

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_POST, require_safe

from keystore import crypto, merging, permissions, roles, services
from keystore.adminmixins import (
    FORM_METHODS,
    AdminRoute,
    NoAdminForms,
    RowAction,
    TenantFactsAdmin,
    TenantFilter,
    acting_user,
    days_left,
    expiry_badge,
    is_superuser,
    monitor_columns,
    monitor_tenants,
    request_now,
    row_menu,
    visible_rows,
)
from keystore.downloads import file_response
from keystore.forms import (
    CertificateUploadForm,
    CreateKeyPairForm,
    ExportForm,
    KeyPairUploadForm,
    KeystoreBackupForm,
    KeystoreUploadForm,
    RenameForm,
    SigningResponseForm,
    read_upload,
)
from keystore.models import AuditEvent, EntryType, KeystoreBackup, KeystoreEntry, Tenant
from keystore.timefmt import utc

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

    class _EntryCount(TypedDict):
        entry_count: int

    #: A tenant of the tenant list, with the number of its entries.
    TenantWithEntryCount = WithAnnotations[Tenant, _EntryCount]

# Stands for an entry's id in URLs reversed once per request (see entry_url).
_PK_PLACEHOLDER = 987654321987
EXPIRY_WINDOWS_DAYS = (7, 30, 90)
SUMMARY_SESSION_KEY = "keystore_import_summary"

#: Callables (request, entry) -> (buttons, context) that other apps register to add buttons
#: and context to an entry's page; buttons are (label, url, css class).
ENTRY_PAGE_EXTENSIONS: list[Callable[[HttpRequest, KeystoreEntry], tuple[list, dict]]] = []
#: Callables (request) -> context that other apps register to add to the entry list's page
#: (renewals puts the Keystore Monitor's tabs there, whose counts are renewal rows).
ENTRY_LIST_EXTENSIONS: list[Callable[[HttpRequest], dict]] = []


class ServerRestoreForm(forms.Form):
    """Restore's confirmation: how (the API's importOption) and the keystore as it was shown."""

    mode = forms.ChoiceField(
        label="Entries made since the backup",
        choices=[
            ("overwrite", "Keep them (overwrite: only the backed-up aliases are written)"),
            ("replace", "Remove them (replace: the tenant-owned entries become the backup)"),
        ],
        initial="overwrite",
        widget=forms.RadioSelect,
    )
    state = forms.CharField(widget=forms.HiddenInput, max_length=64)


# -- list filters ----------------------------------------------------------------------------


class ExpiryFilter(admin.SimpleListFilter):
    title = "expiry"
    parameter_name = "expiry"

    # Filter values of the dashboard's exclusive buckets (keystore.querysets.EXPIRY_BUCKETS).
    BUCKETS = {"8-30": "within_30_days", "31-90": "within_90_days", "later": "later"}

    def lookups(self, request, model_admin):
        return (
            [("expired", "Expired")]
            + [(str(days), f"Expires within {days} days") for days in EXPIRY_WINDOWS_DAYS]
            + [
                ("8-30", "Expires in 8 to 30 days"),
                ("31-90", "Expires in 31 to 90 days"),
                ("later", "Valid for more than 90 days"),
            ]
        )

    def queryset(self, request, queryset):
        value = self.value()
        now = request_now(request)
        if value == "expired":
            return queryset.expired(now)
        if value in {str(days) for days in EXPIRY_WINDOWS_DAYS}:
            return queryset.expiring(timedelta(days=int(value)), now)
        if value in self.BUCKETS:
            return queryset.in_expiry_bucket(self.BUCKETS[value], now)
        return queryset


# -- tenants ---------------------------------------------------------------------------------


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    """Superusers manage tenants; everyone else sees the tenants they may read, view only."""

    list_display = ("slug", "name", "entry_count", "created_at")
    search_fields = ("slug", "name")
    prepopulated_fields = {"slug": ("name",)}

    def get_queryset(self, request: HttpRequest) -> QuerySet[TenantWithEntryCount]:
        return visible_rows(super().get_queryset(request), request.user, permissions.READ).annotate(
            entry_count=Count("entries")
        )

    @admin.display(description="entries", ordering="entry_count")
    def entry_count(self, tenant: TenantWithEntryCount) -> int:
        return tenant.entry_count

    def has_module_permission(self, request):
        return is_superuser(request.user) or permissions.may_anywhere(request.user)

    def has_view_permission(self, request, obj=None):
        if is_superuser(request.user):
            return True
        if obj is None:
            return permissions.may_anywhere(request.user)
        return permissions.may(request.user, permissions.READ, obj)

    def has_add_permission(self, request):
        return is_superuser(request.user)

    def has_change_permission(self, request, obj=None):
        return is_superuser(request.user)

    def has_delete_permission(self, request, obj=None):
        return is_superuser(request.user)

    def checked_tenant(self, request, object_id) -> Tenant:
        """404 for a missing tenant and for one the user may not see (not a redirect)."""
        tenant = Tenant.objects.filter(pk=object_id).first() if str(object_id).isdigit() else None
        if tenant is None or not self.has_view_permission(request, tenant):
            raise Http404("No such tenant.")
        return tenant

    def change_view(self, request, object_id, form_url="", extra_context=None):
        self.checked_tenant(request, object_id)
        return super().change_view(request, object_id, form_url, extra_context)

    def history_view(self, request, object_id, extra_context=None):
        self.checked_tenant(request, object_id)
        return super().history_view(request, object_id, extra_context)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        # A new tenant gets its role groups at once, so roles can be assigned to it.
        roles.ensure_roles([obj])


# -- keystore entries ------------------------------------------------------------------------


@admin.register(KeystoreEntry)
class KeystoreEntryAdmin(NoAdminForms, TenantFactsAdmin):
    list_title = "Keystore"
    list_filter = (TenantFilter, "entry_type", "owner", ExpiryFilter)
    search_fields = ("alias", "subject", "issuer", "serial", "fingerprint_sha256")
    list_select_related = ("tenant",)
    list_per_page = 100
    actions = ["delete_selected_entries"]

    fieldsets = (
        (None, {"fields": ("tenant", "alias_with_owner", "entry_type", "owner", "active_since")}),
        (
            "Certificate",
            {
                "fields": (
                    "subject",
                    "issuer",
                    "serial",
                    "valid_from",
                    "valid_until_coloured",
                    "key",
                    "signature_algorithm",
                    "fingerprint_sha256",
                    "root",
                    "root_fingerprint",
                    "chain_length",
                )
            },
        ),
        ("Certificate chain", {"fields": ("chain_tree",)}),
        ("Changes", {"fields": ("created_at", "modified_at", "modified_by_label")}),
    )
    # Every fact is read-only; the sealed key is no field of any form here.
    readonly_fields = (
        "tenant",
        "alias_with_owner",
        "entry_type",
        "owner",
        "active_since",
        "subject",
        "issuer",
        "serial",
        "valid_from",
        "valid_until_coloured",
        "key",
        "signature_algorithm",
        "fingerprint_sha256",
        "root",
        "root_fingerprint",
        "chain_length",
        "chain_tree",
        "created_at",
        "modified_at",
        "modified_by_label",
    )

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    # ---- changelist ------------------------------------------------------------------------

    def get_queryset(self, request):
        # The chain and the sealed key are not needed to list entries.
        return super().get_queryset(request).defer("chain_pem", "sealed_private_key")

    def get_list_display(self, request):
        # Built once per request: the columns close over the request (its clock and user), and
        # the admin compares columns by identity (sortable_by), so repeated calls must agree.
        columns = getattr(request, "_keystore_entry_columns", None)
        if columns is not None:
            return columns
        now = request_now(request)

        @admin.display(description="valid until", ordering="valid_until")
        def valid_until(entry):
            return expiry_badge(entry.valid_until, now)

        @admin.display(description="actions")
        def buttons(entry):
            return row_menu(self.entry_actions(request, entry))

        columns = (
            "alias_with_owner",
            "tenant",
            "entry_type",
            "owner",
            valid_until,
            "subject_common_name",
            "issuer_common_name",
            "key",
            "last_modified",
            buttons,
        )
        columns = monitor_columns(request, columns)
        request._keystore_entry_columns = columns
        return columns

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        # A fingerprint pasted without colons (as openssl -fingerprint prints with them removed).
        if re.fullmatch(r"[0-9A-Fa-f]{64}", term):
            colons = ":".join(term[i : i + 2] for i in range(0, 64, 2)).upper()
            results |= queryset.filter(fingerprint_sha256=colons)
        return results, may_have_duplicates

    def changelist_view(self, request, extra_context=None):
        may_upload = permissions.may_anywhere(request.user, permissions.DEPLOY)
        tools = []
        if may_upload:
            tools = [
                ("Add certificate", reverse(self.url_name("add_certificate"))),
                ("Add key pair", reverse(self.url_name("add_key_pair"))),
                ("Add keystore", reverse(self.url_name("add_keystore"))),
                ("Create key pair", reverse(self.url_name("create_key_pair"))),
            ]
        if permissions.may_anywhere(request.user, permissions.READ_SECURITY):
            tools.append(("Back up keystore", reverse(self.url_name("backup"))))
        shown, _tenants = monitor_tenants(request)
        context = {**(extra_context or {}), "upload_tools": tools}
        if shown is not None:
            # Every certificate of the tenant in one JKS, for backend administrators.
            public = reverse(self.url_name("public_content"), args=[shown.pk])
            tools.append(("Download public content", public))
            context["server_backup"] = self._server_backup_context(request, shown)
        for extension in ENTRY_LIST_EXTENSIONS:
            context.update(extension(request))
        return super().changelist_view(request, context)

    @admin.display(description="alias", ordering="alias")
    def alias_with_owner(self, entry: KeystoreEntry):
        if entry.is_sap_owned:
            return format_html(
                '{} <span class="sap-badge" title="Owned by SAP">SAP</span>',
                entry.alias,
            )
        return entry.alias

    @admin.display(description="root subject")
    def root(self, entry: KeystoreEntry) -> str:
        if entry.root_known:
            return entry.root_subject
        # Its top certificate is not self-signed: never show it as the root.
        return (
            f"not known: the chain ends at {entry.root_subject}, whose issuer is not in the "
            "keystore"
        )

    @admin.display(description="root SHA-256 fingerprint")
    def root_fingerprint(self, entry: KeystoreEntry) -> str:
        return entry.root_fingerprint_sha256 if entry.root_known else ""

    @admin.display(description="subject CN", ordering="subject_cn")
    def subject_common_name(self, entry: KeystoreEntry) -> str:
        return entry.subject_cn

    @admin.display(description="issuer CN", ordering="issuer_cn")
    def issuer_common_name(self, entry: KeystoreEntry) -> str:
        return entry.issuer_cn

    @admin.display(description="key", ordering="key_size")
    def key(self, entry: KeystoreEntry) -> str:
        return f"{entry.key_type} {entry.key_size}"

    @admin.display(description="last modified", ordering="modified_at")
    def last_modified(self, entry: KeystoreEntry):
        return format_html(
            "{}<br><small>{}</small>", utc(entry.modified_at), entry.modified_by_label
        )

    # ---- detail page ---------------------------------------------------------------------

    @admin.display(description="valid until")
    def valid_until_coloured(self, entry: KeystoreEntry):
        return expiry_badge(entry.valid_until, timezone.now())

    @admin.display(description="chain (root at the top)")
    def chain_tree(self, entry: KeystoreEntry):
        """The chain as nested lists: the root outermost, the entry's own certificate innermost."""
        chain = entry.certificate_chain()
        html = ""
        for position, cert in enumerate(chain):
            facts = crypto.certificate_facts(cert)
            if position == 0:
                role = "this entry"
            elif position < len(chain) - 1:
                role = "intermediate"
            else:
                role = "root" if facts.self_signed else "top of the chain; its root is not included"
            item = format_html(
                '<div class="chain-member"><strong>{}</strong> <small>({})</small><br>'
                "<small>SHA-256 {}<br>serial {} &middot; valid {} &ndash; {}</small></div>",
                facts.subject or "(empty subject)",
                role,
                facts.fingerprint_sha256,
                facts.serial,
                utc(facts.not_before),
                utc(facts.not_after),
            )
            html = format_html(
                '<ul class="chain-tree"><li>{}{}</li></ul>',
                item,
                html,
            )
        return html

    def change_view(self, request, object_id, form_url="", extra_context=None):
        entry = self.checked_object(request, object_id)
        # The row's actions in the row's order, then what only the detail page offers.
        groups = self.entry_actions(request, entry) + [self.signing_buttons(request, entry)]
        context = dict(extra_context or {})
        # Other apps (where-used, in renewals) add to the page through ENTRY_PAGE_EXTENSIONS,
        # so the state app does not import the impact side.
        for extension in ENTRY_PAGE_EXTENSIONS:
            more_buttons, more_context = extension(request, entry)
            groups.append(more_buttons)
            context.update(more_context)
        context["action_groups"] = [group for group in groups if group]
        return super().change_view(request, object_id, form_url, context)

    # ---- buttons -------------------------------------------------------------------------

    def entry_url(self, request, name: str, pk: int, *args) -> str:
        """The URL of an entry's own view; each (view, args) is reversed once per request and
        the entry's id put in, since a list page asks for seven URLs on each of its rows."""
        templates = getattr(request, "_keystore_entry_url_templates", None)
        if templates is None:
            templates = request._keystore_entry_url_templates = {}
        template = templates.get((name, args))
        if template is None:
            template = reverse(self.url_name(name), args=[_PK_PLACEHOLDER, *args])
            templates[(name, args)] = template
        return template.replace(f"/{_PK_PLACEHOLDER}/", f"/{int(pk)}/", 1)

    def entry_actions(self, request, entry: KeystoreEntry) -> list[list[RowAction]]:
        """What this user may do with this entry, in the original's groups: the downloads,
        then Rename, Delete and Export."""
        downloads = [
            (label, self.entry_url(request, "download", entry.pk, kind), "download")
            for label, kind in (
                ("Download Certificate", "cer"),
                ("Download Root Certificate", "root"),
                ("Download Certificate Chain", "p7b"),
                ("PEM chain", "pem"),
            )
        ]
        if entry.entry_type == EntryType.KEY_PAIR:
            url = self.entry_url(request, "download", entry.pk, "ssh")
            downloads.append(("Download Public OpenSSH Key", url, "download"))
        changes: list[RowAction] = []
        if not entry.is_sap_owned and permissions.may(
            request.user, permissions.DEPLOY, entry.tenant_id
        ):
            changes.append(("Rename", self.entry_url(request, "rename", entry.pk), "change"))
            changes.append(("Delete", self.entry_url(request, "delete_entry", entry.pk), "delete"))
        if entry.entry_type == EntryType.KEY_PAIR and permissions.may(
            request.user, permissions.READ_SECURITY, entry.tenant_id
        ):
            url = self.entry_url(request, "export", entry.pk)
            changes.append(("Export PKCS#12", url, "export"))
        return [downloads, changes]

    def signing_buttons(self, request, entry: KeystoreEntry) -> list[RowAction]:
        """The entry page's buttons for getting a tenant key pair signed by a CA (not in the
        list, whose rows carry only the everyday buttons)."""
        if (
            entry.entry_type != EntryType.KEY_PAIR
            or entry.is_sap_owned
            or not permissions.may(request.user, permissions.DEPLOY, entry.tenant_id)
        ):
            return []
        return [
            (
                "Signing request (CSR)",
                self.entry_url(request, "signing_request", entry.pk),
                "download",
            ),
            (
                "Upload signed certificate",
                self.entry_url(request, "signing_response", entry.pk),
                "change",
            ),
        ]

    # ---- custom URLs ---------------------------------------------------------------------

    def get_urls(self):
        get, form = require_safe, FORM_METHODS  # downloads are plain GETs
        routes: list[AdminRoute] = [
            ("download/<int:pk>/<str:kind>/", self.download_view, "download", get),
            ("add-certificate/", self.add_certificate_view, "add_certificate", form),
            ("add-key-pair/", self.add_key_pair_view, "add_key_pair", form),
            ("add-keystore/", self.add_keystore_view, "add_keystore", form),
            ("import-summary/", self.import_summary_view, "import_summary", get),
            ("create-key-pair/", self.create_key_pair_view, "create_key_pair", form),
            ("backup/", self.backup_view, "backup", form),
            (
                "<int:tenant_id>/server-backup/",
                self.server_backup_view,
                "server_backup",
                require_POST,
            ),
            ("<int:tenant_id>/server-restore/", self.server_restore_view, "server_restore", form),
            ("public-content/<int:tenant_id>/", self.public_content_view, "public_content", get),
            ("<int:pk>/rename/", self.rename_view, "rename", form),
            ("<int:pk>/delete-entry/", self.delete_entry_view, "delete_entry", form),
            ("<int:pk>/export/", self.export_view, "export", form),
            ("<int:pk>/signing-request/", self.signing_request_view, "signing_request", get),
            ("<int:pk>/signing-response/", self.signing_response_view, "signing_response", form),
        ]
        return self.tenant_urls(routes) + super().get_urls()

    def _change_url(self, entry: KeystoreEntry) -> str:
        return reverse(self.url_name("change"), args=[entry.pk])

    def _changelist_redirect(self) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse(self.url_name("changelist")))

    @staticmethod
    def _require_deploy_somewhere(request) -> None:
        permissions.require_anywhere(request.user, permissions.DEPLOY, "change keystore content")

    def _refuse_sap_owned(self, request, entry: KeystoreEntry) -> HttpResponseRedirect:
        self.message_user(
            request,
            f"{entry.alias!r} is owned by SAP; it changes only through New SAP Keys.",
            messages.ERROR,
        )
        return HttpResponseRedirect(self._change_url(entry))

    # ---- downloads -----------------------------------------------------------------------

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in services.PUBLIC_FORMATS:
            raise Http404("Unknown download format.")

    def _download(self, request, entry: KeystoreEntry, kind: str) -> HttpResponse:
        try:
            return file_response(services.public_download(entry, kind))
        except services.KeystoreError as error:
            self.message_user(request, str(error), messages.ERROR)
            return HttpResponseRedirect(self._change_url(entry))

    @staticmethod
    def _entry_facts(entry: KeystoreEntry) -> list[tuple[str, str]]:
        return [
            ("Tenant", entry.tenant.slug),
            ("Alias", entry.alias),
            ("Type", entry.get_entry_type_display()),
            ("Subject", entry.subject),
            ("SHA-256 fingerprint", entry.fingerprint_sha256),
            (
                "Valid until",
                f"{utc(entry.valid_until)} ({days_left(entry.valid_until, timezone.now())})",
            ),
        ]

    def public_content_view(self, request, tenant_id: int):
        permissions.require(request.user, permissions.READ, tenant_id)
        tenant = Tenant.objects.get(pk=tenant_id)
        return file_response(services.public_keystore(tenant, actor=acting_user(request)))

    def download_view(self, request, pk: int, kind: str):
        self._check_kind(kind)
        entry = self.get_object_for(request, pk, permissions.READ)
        return self._download(request, entry, kind)

    # ---- uploads -------------------------------------------------------------------------

    def _upload(self, request, form_class, title: str, intro: str, store):
        self._require_deploy_somewhere(request)
        if request.method == "POST":
            self.check_posted_tenant(
                request, permissions.DEPLOY, "You may not change keystore content in this tenant."
            )
            form = form_class(request.POST, request.FILES, user=request.user)
            if form.is_valid():
                tenant = form.cleaned_data["tenant"]
                permissions.require(request.user, permissions.DEPLOY, tenant)
                try:
                    return store(form, tenant, read_upload(form.cleaned_data["file"]))
                except services.KeystoreError as error:
                    form.add_error(None, str(error))
        else:
            form = form_class(user=request.user)
        return self.render_page(
            request,
            "entry_form.html",
            title,
            form=form,
            intro=intro,
            multipart=True,
            submit_label="Upload",
        )

    def add_certificate_view(self, request):
        def store(form, tenant, data):
            entry = services.import_certificate(
                tenant,
                form.cleaned_data["alias"],
                data,
                actor=acting_user(request),
                overwrite=form.cleaned_data["overwrite"],
            )
            return self._stored(request, entry, "certificate")

        return self._upload(
            request,
            CertificateUploadForm,
            "Add certificate",
            "Add a trusted certificate (PEM or DER) to a tenant's keystore.",
            store,
        )

    def add_key_pair_view(self, request):
        def store(form, tenant, data):
            entry = services.import_key_pair(
                tenant,
                form.cleaned_data["alias"],
                data,
                form.cleaned_data["password"],
                actor=acting_user(request),
                overwrite=form.cleaned_data["overwrite"],
            )
            return self._stored(request, entry, "key pair")

        return self._upload(
            request,
            KeyPairUploadForm,
            "Add key pair",
            "Add a private key with its certificate chain from a PKCS#12 file.",
            store,
        )

    def add_keystore_view(self, request):
        def store(form, tenant, data):
            summary = merging.import_keystore(
                tenant,
                data,
                form.cleaned_data["password"],
                actor=acting_user(request),
                overwrite=form.cleaned_data["overwrite"],
            )
            self._keep_summary(request, tenant, summary, "Keystore import summary")
            level = messages.WARNING if summary.rejected else messages.SUCCESS
            self.message_user(
                request,
                f"Keystore imported into {tenant.slug}: {len(summary.added)} added, "
                f"{len(summary.overwritten)} overwritten, {len(summary.rejected)} rejected."
                + (
                    " Chains completed with the new certificates: "
                    + ", ".join(summary.chains_completed)
                    + "."
                    if summary.chains_completed
                    else ""
                ),
                level,
            )
            return HttpResponseRedirect(reverse(self.url_name("import_summary")))

        return self._upload(
            request,
            KeystoreUploadForm,
            "Add keystore",
            "Merge a whole keystore (PKCS#12 or JKS) into a tenant's keystore; each entry "
            "keeps its own alias.",
            store,
        )

    def _stored(self, request, entry: KeystoreEntry, what: str) -> HttpResponseRedirect:
        done = "overwritten" if entry.version > 1 else "added"
        self.message_user(
            request,
            f"The {what} {entry.alias!r} was {done} in tenant {entry.tenant.slug}.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(self._change_url(entry))

    @staticmethod
    def _keep_summary(request, tenant: Tenant, summary: merging.ImportSummary, title: str) -> None:
        """Post/redirect/get: the summary of an import or restore travels in the session, so a
        reload shows it again without acting twice."""
        request.session[SUMMARY_SESSION_KEY] = {
            "tenant": tenant.slug,
            "title": title,
            "outcomes": [
                {
                    "alias": outcome.alias,
                    "result": outcome.result,
                    "reason": outcome.reason,
                    "entry_type": EntryType(outcome.entry_type).label if outcome.entry_type else "",
                    "fingerprint": outcome.fingerprint or outcome.previous_fingerprint,
                }
                for outcome in summary.outcomes
            ],
        }

    def import_summary_view(self, request):
        self._require_deploy_somewhere(request)
        summary = request.session.get(SUMMARY_SESSION_KEY)
        if summary is None:
            return self._changelist_redirect()
        outcomes = summary["outcomes"]
        return self.render_page(
            request,
            "import_summary.html",
            summary.get("title", "Keystore import summary"),
            tenant_slug=summary["tenant"],
            added=[o for o in outcomes if o["result"] == "added"],
            overwritten=[o for o in outcomes if o["result"] == "overwritten"],
            rejected=[o for o in outcomes if o["result"] == "rejected"],
            removed=[o for o in outcomes if o["result"] == "removed"],
        )

    # ---- key pairs made here: create, signing request, signed certificate -------------------

    def create_key_pair_view(self, request):
        self._require_deploy_somewhere(request)
        if request.method == "POST":
            self.check_posted_tenant(
                request, permissions.DEPLOY, "You may not change keystore content in this tenant."
            )
            form = CreateKeyPairForm(request.POST, user=request.user)
            if form.is_valid():
                tenant = form.cleaned_data["tenant"]
                permissions.require(request.user, permissions.DEPLOY, tenant)
                try:
                    entry = services.create_key_pair(
                        tenant,
                        form.cleaned_data["alias"],
                        form.cleaned_data["subject"],
                        key_type=form.cleaned_data["key_type"],
                        valid_days=form.cleaned_data["valid_days"],
                        actor=acting_user(request),
                    )
                except services.KeystoreError as error:
                    form.add_error(None, str(error))
                else:
                    self.message_user(
                        request,
                        f"The key pair {entry.alias!r} was created in tenant {tenant.slug} with "
                        "a self-signed certificate. To have it signed by a certificate "
                        "authority, download its signing request (CSR) below and upload the "
                        "signed certificate when it comes back.",
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(self._change_url(entry))
        else:
            form = CreateKeyPairForm(user=request.user)
        return self.render_page(
            request,
            "entry_form.html",
            "Create key pair",
            form=form,
            intro="A new private key, generated and sealed here, with a self-signed certificate. "
            "The private key never leaves the keystore unless exported as PKCS#12.",
            submit_label="Create",
        )

    def _signable_entry(self, request, pk: int) -> KeystoreEntry | HttpResponseRedirect:
        entry = self.get_object_for(request, pk, permissions.DEPLOY)
        if entry.is_sap_owned:
            return self._refuse_sap_owned(request, entry)
        if entry.entry_type != EntryType.KEY_PAIR:
            self.message_user(
                request,
                f"{entry.alias!r} is a certificate entry: only key pairs have signing requests.",
                messages.ERROR,
            )
            return HttpResponseRedirect(self._change_url(entry))
        return entry

    def signing_request_view(self, request, pk: int):
        entry = self._signable_entry(request, pk)
        if isinstance(entry, HttpResponseRedirect):
            return entry
        try:
            download = services.signing_request(entry, actor=acting_user(request))
        except services.KeystoreError as error:
            self.message_user(request, str(error), messages.ERROR)
            return HttpResponseRedirect(self._change_url(entry))
        return file_response(download)

    def signing_response_view(self, request, pk: int):
        self._require_deploy_somewhere(request)
        entry = self._signable_entry(request, pk)
        if isinstance(entry, HttpResponseRedirect):
            return entry
        if request.method == "POST":
            form = SigningResponseForm(request.POST, request.FILES)
            if form.is_valid():
                try:
                    entry, warnings = services.apply_signing_response(
                        entry, read_upload(form.cleaned_data["file"]), actor=acting_user(request)
                    )
                except services.KeystoreError as error:
                    form.add_error("file", str(error))
                else:
                    self.message_user(
                        request,
                        f"The signed certificate of {entry.alias!r} is in place: issued by "
                        f"{entry.issuer}, valid until {utc(entry.valid_until)}. Send its "
                        "certificate or chain to the partners that check it.",
                        messages.SUCCESS,
                    )
                    for warning in warnings:
                        self.message_user(request, warning, messages.WARNING)
                    return HttpResponseRedirect(self._change_url(entry))
        else:
            form = SigningResponseForm()
        return self.render_page(
            request,
            "entry_form.html",
            f"Upload signed certificate for {entry.alias}",
            form=form,
            entry=entry,
            facts=self._entry_facts(entry),
            intro="The certificate authority's answer to this key pair's signing request "
            "replaces its certificate; the private key stays. A chain that stops short is "
            "completed from the tenant's trusted certificates.",
            multipart=True,
            submit_label="Upload",
        )

    # ---- rename, delete, export ----------------------------------------------------------

    def rename_view(self, request, pk: int):
        self._require_deploy_somewhere(request)
        entry = self.get_object_for(request, pk, permissions.DEPLOY)
        if entry.is_sap_owned:
            return self._refuse_sap_owned(request, entry)
        if request.method == "POST":
            form = RenameForm(request.POST)
            if form.is_valid():
                old_alias = entry.alias
                try:
                    renamed = services.rename_entry(
                        entry, form.cleaned_data["new_alias"], actor=acting_user(request)
                    )
                except services.KeystoreError as error:
                    form.add_error("new_alias", str(error))
                else:
                    self.message_user(
                        request, f"Renamed {old_alias!r} to {renamed.alias!r}.", messages.SUCCESS
                    )
                    return HttpResponseRedirect(self._change_url(renamed))
        else:
            form = RenameForm(initial={"new_alias": entry.alias})
        return self.render_page(
            request,
            "entry_form.html",
            f"Rename {entry.alias}",
            form=form,
            entry=entry,
            facts=self._entry_facts(entry),
            submit_label="Rename",
        )

    def delete_entry_view(self, request, pk: int):
        self._require_deploy_somewhere(request)
        try:
            entry = self.get_object_for(request, pk, permissions.DEPLOY)
        except Http404:
            if request.method != "POST":
                raise
            # A repeated confirmation (double click, back and resubmit): say so and move on.
            self.message_user(
                request, "The entry no longer exists; it was deleted already.", messages.WARNING
            )
            return self._changelist_redirect()
        if entry.is_sap_owned:
            return self._refuse_sap_owned(request, entry)
        if request.method == "POST":
            try:
                services.delete_entry(entry, actor=acting_user(request))
            except services.KeystoreError as error:
                self.message_user(request, str(error), messages.ERROR)
                return HttpResponseRedirect(self._change_url(entry))
            self.message_user(
                request,
                f"Deleted {entry.alias!r} from tenant {entry.tenant.slug}.",
                messages.SUCCESS,
            )
            return self._changelist_redirect()
        # Where-used (renewals) names the flows and backends that fail without the alias.
        uses: dict = {}
        for extension in ENTRY_PAGE_EXTENSIONS:
            uses.update(extension(request, entry)[1])
        return self.render_page(
            request,
            "entry_form.html",
            f"Delete {entry.alias}",
            entry=entry,
            facts=self._entry_facts(entry),
            intro="This entry will be removed from the tenant's keystore. Integration flows "
            "that use its alias will fail.",
            submit_label="Yes, delete",
            danger=True,
            **uses,
        )

    def export_view(self, request, pk: int):
        entry = self.get_object_for(request, pk, permissions.READ_SECURITY)
        if entry.entry_type != EntryType.KEY_PAIR:
            self.message_user(request, "Only key pairs can be exported as PKCS#12.", messages.ERROR)
            return HttpResponseRedirect(self._change_url(entry))
        if request.method == "POST":
            form = ExportForm(request.POST, user=request.user)
            if form.is_valid():
                try:
                    content = services.export_pkcs12(
                        entry, form.cleaned_data["password1"], actor=acting_user(request)
                    )
                except services.KeystoreError as error:
                    form.add_error(None, str(error))
                else:
                    stem = entry.alias.replace("/", "_").replace("\\", "_")
                    return file_response(
                        services.Download(f"{stem}.p12", "application/x-pkcs12", content)
                    )
        else:
            form = ExportForm(user=request.user)
        return self.render_page(
            request,
            "entry_form.html",
            f"Export {entry.alias} as PKCS#12",
            form=form,
            entry=entry,
            facts=self._entry_facts(entry),
            intro="The file holds the private key, protected by the password you choose here. "
            "The export is recorded in the audit log.",
            submit_label="Export",
        )

    def backup_view(self, request):
        permissions.require_anywhere(request.user, permissions.READ_SECURITY, "back up a keystore")
        if request.method == "POST":
            self.check_posted_tenant(
                request, permissions.READ_SECURITY, "You may not back up this tenant's keystore."
            )
            form = KeystoreBackupForm(request.POST, user=request.user)
            if form.is_valid():
                try:
                    download = services.backup_keystore(
                        form.cleaned_data["tenant"],
                        form.cleaned_data["password1"],
                        actor=acting_user(request),
                    )
                except services.KeystoreError as error:
                    form.add_error(None, str(error))
                else:
                    return file_response(download)
        else:
            form = KeystoreBackupForm(user=request.user)
        return self.render_page(
            request,
            "entry_form.html",
            "Back up keystore",
            form=form,
            intro="Every key pair (with its private key and chain) and every trusted "
            "certificate of the tenant, in one PKCS#12 file protected by the password you "
            "choose here (AES-256). keytool and openssl read it; 'Add keystore' with "
            "'overwrite' restores its tenant-owned entries. The backup is recorded in the "
            "audit log.",
            submit_label="Download backup",
        )

    # ---- the server-side backup (backup_admin_system) -------------------------------------

    def _server_backup_context(self, request, tenant: Tenant) -> dict:
        """The Keystore page's line about the tenant's server-side backup, with Back up and
        Restore for the tenant's administrators."""
        backup = (
            KeystoreBackup.objects.filter(tenant=tenant)
            .annotate(size=Count("entries"))
            .values("made_at", "made_by_label", "size")
            .first()
        )
        context: dict[str, object] = {"tenant": tenant, "backup": backup}
        if permissions.may(request.user, permissions.DEPLOY, tenant):
            context.update(
                state=merging.keystore_state(tenant),
                backup_url=reverse(self.url_name("server_backup"), args=[tenant.pk]),
                restore_url=reverse(self.url_name("server_restore"), args=[tenant.pk]),
            )
        return context

    def _tenant_list_redirect(self, tenant_id: int) -> HttpResponseRedirect:
        return HttpResponseRedirect(
            f"{reverse(self.url_name('changelist'))}?{TenantFilter.parameter_name}={tenant_id}"
        )

    def server_backup_view(self, request, tenant_id: int):
        """Back up (POST only, from the Keystore page): the form carries the keystore's state as
        shown, so a double click backs up once and says so the second time."""
        permissions.require(request.user, permissions.DEPLOY, tenant_id)
        tenant = Tenant.objects.get(pk=tenant_id)
        try:
            summary = merging.make_server_backup(
                tenant,
                actor=acting_user(request),
                expected_state=request.POST.get("state", ""),
            )
        except services.KeystoreError as error:
            stale = isinstance(error, merging.StaleConfirmation)
            self.message_user(request, str(error), messages.WARNING if stale else messages.ERROR)
        else:
            self.message_user(
                request,
                f"Backed up {len(summary.outcomes) - len(summary.removed)} tenant-owned entries "
                f"of {tenant.slug} on the server; the previous backup is replaced.",
                messages.SUCCESS,
            )
        return self._tenant_list_redirect(tenant.pk)

    def server_restore_view(self, request, tenant_id: int):
        """Restore: a confirmation page that shows what will change, then the one service."""
        permissions.require(request.user, permissions.DEPLOY, tenant_id)
        tenant = Tenant.objects.get(pk=tenant_id)
        preview = merging.restore_preview(tenant)
        if preview is None:
            self.message_user(
                request,
                f"Tenant {tenant.slug} has no server-side backup: back up first. Nothing was "
                "changed.",
                messages.ERROR,
            )
            return self._tenant_list_redirect(tenant.pk)
        if request.method == "POST":
            form = ServerRestoreForm(request.POST)
            if form.is_valid():
                try:
                    summary = merging.restore_server_backup(
                        tenant,
                        actor=acting_user(request),
                        replace=form.cleaned_data["mode"] == "replace",
                        expected_state=form.cleaned_data["state"],
                    )
                except services.KeystoreError as error:
                    stale = isinstance(error, merging.StaleConfirmation)
                    level = messages.WARNING if stale else messages.ERROR
                    self.message_user(request, str(error), level)
                    return self._tenant_list_redirect(tenant.pk)
                self._keep_summary(request, tenant, summary, "Keystore restore summary")
                self.message_user(
                    request,
                    f"Restored the server-side backup of {utc(preview.backup.made_at)} into "
                    f"{tenant.slug}: {len(summary.added)} added, {len(summary.overwritten)} "
                    f"overwritten, {len(summary.removed)} removed, {len(summary.rejected)} "
                    "rejected.",
                    messages.WARNING if summary.rejected else messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse(self.url_name("import_summary")))
        else:
            form = ServerRestoreForm(initial={"state": merging.keystore_state(tenant)})
        return self.render_page(
            request,
            "server_restore.html",
            f"Restore the keystore of {tenant.slug} from the server-side backup",
            form=form,
            tenant=tenant,
            preview=preview,
            cancel_url=self._tenant_list_redirect(tenant.pk).url,
        )

    # ---- bulk delete -----------------------------------------------------------------------

    @admin.action(description="Delete selected entries", permissions=["deploy"])
    def delete_selected_entries(self, request, queryset):
        selected = queryset.count()
        allowed = list(
            self.filter_selection(request, queryset, permissions.DEPLOY).select_related("tenant")
        )
        deletable = [entry for entry in allowed if not entry.is_sap_owned]
        sap_owned = [entry for entry in allowed if entry.is_sap_owned]
        not_allowed = selected - len(allowed)
        if request.POST.get("post") != "yes":
            if not deletable:
                self._report_refused(request, sap_owned, not_allowed)
                self.message_user(request, "Nothing to delete.", messages.WARNING)
                return None
            return self.render_page(
                request,
                "delete_selected_confirmation.html",
                "Delete keystore entries",
                deletable=deletable,
                sap_owned=sap_owned,
                not_allowed=not_allowed,
                selected_ids=[entry.pk for entry in allowed],
                action_checkbox_name=ACTION_CHECKBOX_NAME,
                action_name="delete_selected_entries",
            )
        deleted = []
        for entry in deletable:
            try:
                services.delete_entry(entry, actor=acting_user(request))
            except services.KeystoreError as error:
                self.message_user(request, str(error), messages.ERROR)
            else:
                deleted.append(entry.alias)
        if deleted:
            self.message_user(
                request,
                f"Deleted {len(deleted)} entries: {', '.join(sorted(deleted))}.",
                messages.SUCCESS,
            )
        self._report_refused(request, sap_owned, not_allowed)
        return None

    def _report_refused(self, request, sap_owned: list[KeystoreEntry], not_allowed: int) -> None:
        if sap_owned:
            self.message_user(
                request,
                "Not deleted, owned by SAP (they change only through New SAP Keys): "
                + ", ".join(sorted(entry.alias for entry in sap_owned))
                + ".",
                messages.ERROR,
            )
        if not_allowed:
            self.message_user(
                request,
                f"Not deleted: {not_allowed} entries in tenants where you may not change "
                "keystore content.",
                messages.ERROR,
            )


# -- audit log -------------------------------------------------------------------------------


@admin.register(AuditEvent)
class AuditEventAdmin(NoAdminForms, TenantFactsAdmin):
    """The audit log is written by the services only: nobody adds, changes or deletes here."""

    list_title = "Audit log"

    list_display = (
        "at",
        "tenant",
        "alias",
        "action",
        "actor_label",
        "old_fingerprint",
        "new_fingerprint",
    )
    list_filter = (TenantFilter, "action")
    search_fields = ("alias", "actor_label")
    list_select_related = ("tenant",)
    actions = None
    fields = (
        "at",
        "tenant",
        "alias",
        "action",
        "actor_label",
        "old_fingerprint",
        "new_fingerprint",
        "detail",
    )
    readonly_fields = fields
