"""The "Connectivity test (TLS)" page, its result page and the list of recorded tests.

Every page needs NodeManager.readcredentials on the run's tenant (or, for the form, on the tenant
posted); adding the server's root to the keystore needs NodeManager.deploysecuritycontent as well.
The views are thin: running a test is `run_connectivity_test`, adding a root is
`add_server_root_to_keystore`. Records are never added, changed or deleted through the admin's
own forms. Pages show public facts only; no private key is ever put in a page.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST, require_safe

from keystore import permissions
from keystore.adminmixins import (
    FORM_METHODS,
    AdminRoute,
    NoAdminForms,
    TenantFilter,
    TenantScopedAdmin,
    acting_user,
)
from keystore.downloads import file_response
from keystore.models import KeystoreEntry
from keystore.services import Download
from keystore.timefmt import utc
from renewals.connectivity.forms import AddRootForm, ConnectivityTestForm
from renewals.connectivity.models import ConnectivityTestRun, KeyUsed
from renewals.connectivity.services import (
    ConnectivityError,
    add_server_root_to_keystore,
    root_index,
    run_connectivity_test,
    trusted_aliases,
)

PAGE_TITLE = "Connectivity test (TLS)"
BOOLEAN_FIELDS = ("include_pending", "verify_server", "use_system_trust")
PREFILL_FIELDS = ("tenant", "host", "port", "timeout", "entry")


def yes_no(value: bool | None, unknown: str = "Unknown") -> str:
    if value is None:
        return unknown
    return "Yes" if value else "No"


def _file_stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "server"


def _alias_suggestion(subject: str) -> str:
    """A tenant alias from the root's common name: "CN=Example Root CA,O=X" -> example_root_ca."""
    match = re.search(r"(?:^|,)CN=((?:[^,\\]|\\.)+)", subject)
    stem = re.sub(r"[^a-z0-9]+", "_", (match.group(1) if match else "server_root").lower())
    stem = stem.strip("_") or "server_root"
    # Aliases starting like SAP's are reserved; a root named "SAP ..." must not look like one.
    return f"root_{stem}" if stem.startswith(("sap_", "hcicertificate")) else stem


@admin.register(ConnectivityTestRun)
class ConnectivityTestRunAdmin(NoAdminForms, TenantScopedAdmin):
    """Read-only records; the object tools lead to the test page."""

    view_permission = permissions.READ_CREDENTIALS
    list_display = (
        "started",
        "tenant",
        "actor_label",
        "target_link",
        "alias",
        "key_used",
        "outcome_coloured",
        "elapsed",
    )
    list_display_links = None
    list_filter = (TenantFilter, "outcome", "key_used")
    search_fields = ("host", "alias", "actor_label")
    list_select_related = ("tenant",)
    list_per_page = 100
    actions = None

    def get_queryset(self, request: HttpRequest):
        # The stored chain (DER) and CA names are for the result page, not for the list.
        return super().get_queryset(request).defer("server_chain", "acceptable_ca_names")

    # ---- changelist columns ----------------------------------------------------------------

    @admin.display(description="started", ordering="started_at")
    def started(self, run: ConnectivityTestRun) -> str:
        return utc(run.started_at, seconds=True, label=True)

    @admin.display(description="target", ordering="host")
    def target_link(self, run: ConnectivityTestRun):
        return format_html('<a href="{}">{}</a>', self._result_url(run.pk), run.target)

    @admin.display(description="outcome", ordering="outcome")
    def outcome_coloured(self, run: ConnectivityTestRun):
        return format_html(
            '<span class="outcome outcome-{}">{}</span>',
            "success" if run.succeeded else "failure",
            run.get_outcome_display(),
        )

    @admin.display(description="elapsed", ordering="elapsed_ms")
    def elapsed(self, run: ConnectivityTestRun) -> str:
        return f"{run.elapsed_ms} ms"

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(
            request, {**(extra_context or {}), "run_url": self._url("run"), "run_label": PAGE_TITLE}
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # A record has no edit form; its page is the result page.
        if not str(object_id).isdigit():
            raise Http404("No such connectivity test.")
        run = self.get_object_for(request, int(object_id), self.view_permission)
        return HttpResponseRedirect(self._result_url(run.pk))

    def history_view(self, request, object_id, extra_context=None):
        raise Http404("Connectivity tests are records; they have no change history.")

    # ---- custom URLs -----------------------------------------------------------------------

    def _url(self, suffix: str, *args) -> str:
        return reverse(self.url_name(suffix), args=args)

    def _result_url(self, pk: int) -> str:
        return self._url("result", pk)

    def get_urls(self):
        routes: list[AdminRoute] = [
            ("run/", self.run_view, "run", FORM_METHODS),
            ("<int:pk>/result/", self.result_view, "result", require_safe),
            (
                "<int:pk>/server-cert/<int:index>/",
                self.server_cert_view,
                "server_cert",
                require_safe,
            ),
            ("<int:pk>/add-root/", self.add_root_view, "add_root", require_POST),
        ]
        return self.tenant_urls(routes) + super().get_urls()

    @staticmethod
    def _prefill(query) -> dict:
        """Initial values from a "Run again" link; the form validates whatever is posted."""
        initial = {name: query[name] for name in PREFILL_FIELDS if query.get(name)}
        for name in BOOLEAN_FIELDS:
            if name in query:
                initial[name] = query[name] in ("1", "on", "true")
        return initial

    def run_view(self, request: HttpRequest) -> HttpResponse:
        permissions.require_anywhere(
            request.user, permissions.READ_CREDENTIALS, "run connectivity tests"
        )
        if request.method == "POST":
            self.check_posted_tenant(
                request,
                permissions.READ_CREDENTIALS,
                "You may not run connectivity tests in this tenant.",
            )
            form = ConnectivityTestForm(request.POST, user=request.user)
            if form.is_valid():
                data = form.cleaned_data
                try:
                    run = run_connectivity_test(
                        data["tenant"],
                        data["host"],
                        data["port"],
                        alias=data["alias"],
                        include_pending=data["include_pending"],
                        verify_server=data["verify_server"],
                        use_system_trust=data["use_system_trust"],
                        timeout=data["timeout"],
                        actor=acting_user(request),
                    )
                except ConnectivityError as error:
                    form.add_error(None, str(error))
                else:
                    # Post/redirect/get: reloading the result does not connect again.
                    return HttpResponseRedirect(self._result_url(run.pk))
        else:
            form = ConnectivityTestForm(initial=self._prefill(request.GET), user=request.user)
        return self.render_page(request, "run.html", PAGE_TITLE, form=form)

    # ---- the result ------------------------------------------------------------------------

    def result_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        run = self.get_object_for(request, pk, permissions.READ_CREDENTIALS)
        return self._result_page(request, run)

    def _run_again_url(self, run: ConnectivityTestRun) -> str:
        query = {
            "tenant": run.tenant_id,
            "host": run.host,
            "port": run.port,
            "timeout": f"{run.timeout:g}",
            "include_pending": int(run.include_pending),
            "verify_server": int(run.verify_server),
            "use_system_trust": int(run.use_system_trust),
        }
        if run.alias:
            entry_id = (
                KeystoreEntry.objects.for_tenant(run.tenant_id)
                .filter(alias=run.alias)
                .values_list("pk", flat=True)
                .first()
            )
            if entry_id is not None:
                query["entry"] = entry_id
        return f"{self._url('run')}?{urlencode(query)}"

    def _result_page(
        self, request: HttpRequest, run: ConnectivityTestRun, add_root_form=None
    ) -> TemplateResponse:
        certificates = run.server_certificates()
        fingerprints = [cert["fingerprint_sha256"] for cert in certificates]
        in_keystore = trusted_aliases(run.tenant_id, fingerprints)
        for cert in certificates:
            cert["download_url"] = self._url("server_cert", run.pk, cert["index"])
            cert["in_keystore"] = in_keystore.get(cert["fingerprint_sha256"], "")
        index = root_index(run)
        root = certificates[index] if index is not None else None
        may_add_root = permissions.may(request.user, permissions.DEPLOY, run.tenant_id)
        if may_add_root and root is not None and not root["in_keystore"] and add_root_form is None:
            add_root_form = AddRootForm(
                initial={
                    "index": index,
                    "fingerprint": root["fingerprint_sha256"],
                    "alias": _alias_suggestion(root["subject"]),
                }
            )
        return self.render_page(
            request,
            "result.html",
            f"{PAGE_TITLE}: {run.target}",
            run=run,
            test_rows=[
                ("Tenant", run.tenant.slug),
                ("Host and port", run.target),
                ("Server name (SNI)", run.host),
                ("Started", utc(run.started_at, seconds=True, label=True)),
                ("Run by", run.actor_label),
                ("Duration", f"{run.elapsed_ms} ms (timeout {run.timeout:g} s)"),
                (
                    "Server certificate validation",
                    (
                        "Against the tenant's trusted certificates"
                        + (" and the system trust store" if run.use_system_trust else "")
                    )
                    if run.verify_server
                    else "Off",
                ),
                ("TLS version", run.tls_version or "Not negotiated"),
                ("Cipher", run.cipher or "Not negotiated"),
            ],
            client_rows=self._client_rows(run),
            certificates=certificates,
            root=root,
            top_issuer=certificates[-1]["issuer"] if certificates and root is None else "",
            may_add_root=may_add_root,
            add_root_form=add_root_form if may_add_root else None,
            add_root_url=self._url("add_root", run.pk),
            run_again_url=self._run_again_url(run),
        )

    @staticmethod
    def _client_rows(run: ConnectivityTestRun) -> list[tuple[str, str]]:
        requested = run.client_certificate_requested
        if not requested:
            ca_names = "" if requested is False else "Unknown"
        elif run.acceptable_ca_names:
            ca_names = "; ".join(run.acceptable_ca_names)
        else:
            ca_names = "None listed (the server names no issuers)"
        rows = [
            ("Alias", run.alias or "None"),
            ("Key used", f"{run.get_key_used_display()}. {run.key_note}"),
        ]
        if run.key_used != KeyUsed.NONE:
            rows.append(("Client certificate SHA-256", run.key_fingerprint))
        rows += [
            ("Server asked for a client certificate", yes_no(requested)),
            ("Issuers the server accepts", ca_names or "Not asked"),
            ("Our certificate sent", yes_no(run.client_certificate_sent)),
            (
                "Our certificate accepted",
                yes_no(
                    run.client_certificate_accepted,
                    "Not sent" if not run.client_certificate_sent else "Unknown",
                ),
            ),
        ]
        return rows

    def server_cert_view(self, request: HttpRequest, pk: int, index: int) -> HttpResponse:
        run = self.get_object_for(request, pk, permissions.READ_CREDENTIALS)
        der = run.server_certificate_der(index)
        if der is None:
            raise Http404("The server's chain in this test has no such certificate.")
        suffix = "_rootCA" if run.server_chain[index].get("self_signed") else f"_{index}"
        filename = f"{_file_stem(run.host)}_{run.port}{suffix}.cer"
        return file_response(Download(filename, "application/pkix-cert", der))

    # ---- adding the root -------------------------------------------------------------------

    def add_root_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        run = self.get_object_for(request, pk, permissions.READ_CREDENTIALS)
        permissions.require(request.user, permissions.DEPLOY, run.tenant)
        form = AddRootForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                entry = add_server_root_to_keystore(
                    run,
                    data["index"],
                    data["alias"],
                    data["fingerprint"],
                    actor=acting_user(request),
                )
            except ConnectivityError as error:
                form.add_error(None, str(error))
            else:
                self.message_user(
                    request,
                    f"The root certificate was added to the keystore of {run.tenant.slug} as "
                    f"{entry.alias!r}. Run the test again to check that the server is trusted now.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(self._result_url(run.pk))
        return self._result_page(request, run, add_root_form=form)
