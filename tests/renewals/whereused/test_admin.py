"""Where-used in the admin: the where-used page, CSV and renewal pack, the flow import page, the
flow list with its "Restart" action, and the hooks other pages use; with the permission matrix
(no role, ReadOnly, IntegrationDeveloper, Administrator, Administrator of another tenant).
"""

from __future__ import annotations

import csv
import io
import os
import zipfile

import pytest
from cryptography import x509
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from django.db import connection
from django.template.loader import render_to_string
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from keystore.models import KeystoreEntry
from renewals.whereused import admin as whereused_admin
from renewals.whereused import importing, parser
from renewals.whereused.admin import renewal_pack_url, whereused_url
from renewals.whereused.models import IntegrationFlow, KeyUsageRecord
from renewals.whereused.report import WhereUsedCounts, annotate_usage_counts
from renewals.whereused.restart import mark_restart_required
from tests.conftest import ROLE_NAMES, client_for
from tests.renewals.conftest import SAP_ALIAS
from tests.renewals.flowfactory import flow_zip, iflw, mail_receiver_with_unset_parameter
from tests.renewals.whereused.flows import (
    ORDERS,
    PARTNER,
    client_cert_flow,
    import_all,
    landscape,
    orders_flow,
    partner_flow,
    signer_only_flow,
)

READERS = {"none": 403, "ReadOnly": 200, "IntegrationDeveloper": 200}
READ_MATRIX = {**READERS, "Administrator": 200, "other_admin": 403}
# An object of tenant A: users who do not see tenant A get 404, like a missing object.
OBJECT_MATRIX = {**READ_MATRIX, "none": 404, "other_admin": 404}
CHANGELIST = reverse("admin:whereused_integrationflow_changelist")
IMPORT_URL = reverse("admin:whereused_integrationflow_import")


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/zip")


@pytest.fixture
def flows(tenant, sap_entry):
    landscape(tenant)
    return {flow.bundle_id: flow for flow in IntegrationFlow.objects.all()}


# --- where-used page, CSV and renewal pack ---------------------------------------------------


def test_where_used_page_csv_and_pack_permission_matrix(users, tenant, flows):
    for role in ROLE_NAMES:
        client = client_for(users[role])
        expected = OBJECT_MATRIX[role]
        page = client.get(whereused_url(tenant.pk, SAP_ALIAS))
        csv_response = client.get(whereused_url(tenant.pk, SAP_ALIAS) + "?format=csv")
        pack = client.get(renewal_pack_url(tenant.pk, SAP_ALIAS))
        statuses = (page.status_code, csv_response.status_code, pack.status_code)
        assert statuses == (expected,) * 3, role
        if expected == 200:
            assert b"To ERP" in page.content
            assert csv_response["Content-Type"].startswith("text/csv")
            assert pack["Content-Type"] == "application/zip"
        else:
            assert b"ERP_PROD" not in page.content + csv_response.content + pack.content


def test_where_used_page_shows_sections_counts_restart_and_links(users, tenant, flows):
    mark_restart_required(tenant, SAP_ALIAS, reason="activated")
    response = client_for(users["ReadOnly"]).get(whereused_url(tenant.pk, SAP_ALIAS))
    html = response.content.decode()
    uses, may_use = html.split('id="where-used-uses"', 1)[1].split('id="where-used-may-use"', 1)
    for text in ("ERP_PROD", "PARTNER", "S4_ODATA", "Sign order", "Sign.groovy", "Custom thing"):
        assert text in uses
    assert "CRM" in may_use and "Decrypt reply" in may_use and "CRM" not in uses
    assert "6</strong> components use this alias" in html
    assert "2</strong> may use it" in html
    # Both flows are marked, and every place a flow appears says so: Orders under ERP_PROD,
    # CRM and twice without backend; Partner under PARTNER, S4_ODATA and without backend.
    assert html.count("restart required since") == 7
    assert 'id="restart-after-activation"' in html
    assert 'id="restart-flows-link"' not in html  # reading roles cannot restart
    admin_page = client_for(users["Administrator"]).get(whereused_url(tenant.pk, SAP_ALIAS))
    assert b"restart_required__exact=1" in admin_page.content
    assert reverse("admin:whereused_integrationflow_change", args=[flows[ORDERS].pk]) in html
    assert 'href="' + renewal_pack_url(tenant.pk, SAP_ALIAS) + '"' in html
    assert "?format=csv" in html
    for absent in ("AS2_PARTNER", "LEGACY"):
        assert absent not in html


def test_csv_download_parses(users, tenant, flows):
    response = client_for(users["IntegrationDeveloper"]).get(
        whereused_url(tenant.pk, SAP_ALIAS) + "?format=csv"
    )
    assert f'filename="{SAP_ALIAS}_where-used.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert len(rows) == 8
    assert {row["flow"] for row in rows} == {"Orders to ERP", "Partner exchange"}


def test_pack_download_of_current_and_pending_key(users, tenant, flows, pending, sap_entry):
    client = client_for(users["ReadOnly"])
    current = client.get(renewal_pack_url(tenant.pk, SAP_ALIAS))
    new = client.get(renewal_pack_url(tenant.pk, SAP_ALIAS, pending=True))
    assert f'filename="{SAP_ALIAS}_renewal_pack.zip"' in current["Content-Disposition"]
    assert f'filename="{SAP_ALIAS}_new_key_renewal_pack.zip"' in new["Content-Disposition"]

    def leaf(response) -> x509.Certificate:
        with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
            assert "INSTRUCTIONS.txt" in archive.namelist()
            return x509.load_der_x509_certificate(archive.read(f"{SAP_ALIAS}.cer"))

    assert leaf(current) == sap_entry.certificate()
    assert leaf(new) == pending.certificate()
    page = client.get(whereused_url(tenant.pk, SAP_ALIAS, pending=True))
    assert b"new SAP key waiting for activation" in page.content
    assert pending.fingerprint_sha256.encode() in page.content
    # The current key's page points to the waiting key.
    assert b"?pending=1" in client.get(whereused_url(tenant.pk, SAP_ALIAS)).content


def test_missing_key_or_pending_key_is_404(users, tenant, flows):
    client = client_for(users["ReadOnly"])
    assert client.get(whereused_url(tenant.pk, "no_such_alias")).status_code == 404
    assert client.get(renewal_pack_url(tenant.pk, "no_such_alias")).status_code == 404
    # No new SAP key is waiting for the alias.
    assert client.get(whereused_url(tenant.pk, SAP_ALIAS, True)).status_code == 404
    assert client.get(renewal_pack_url(tenant.pk, SAP_ALIAS, True)).status_code == 404
    bad_format = whereused_url(tenant.pk, SAP_ALIAS) + "?format=xml"
    assert client.get(bad_format).status_code == 404
    # POST is not a way in.
    assert client.post(whereused_url(tenant.pk, SAP_ALIAS)).status_code == 405


def test_alias_with_slash_and_special_characters(users, tenant, pki):
    from keystore import services as keystore_services
    from tests import pki as pki_factory

    alias = "partner/a b?c"
    data = pki_factory.make_pkcs12_single("x", pki.leaf_key, pki.chain, "pw-secret")
    keystore_services.import_key_pair(tenant, alias, data, "pw-secret")
    import_all(tenant, client_cert_flow("com.example.slash", alias=alias))
    client = client_for(users["ReadOnly"])
    page = client.get(whereused_url(tenant.pk, alias))
    assert page.status_code == 200 and b"ERP_PROD" in page.content
    pack = client.get(renewal_pack_url(tenant.pk, alias))
    with zipfile.ZipFile(io.BytesIO(pack.content)) as archive:
        assert "partner_a b?c.cer" in archive.namelist()


@pytest.mark.parametrize("count", [5, 50])
def test_where_used_page_query_count_does_not_grow(users, tenant, sap_entry, count):
    import_all(tenant, *[client_cert_flow(f"com.example.f{n}") for n in range(count)])
    client = client_for(users["ReadOnly"])
    url = whereused_url(tenant.pk, SAP_ALIAS)
    client.get(url)  # session and permission map warmed the same way for both sizes
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    assert response.content.decode().count('class="where-used-flow"') == count
    # Session, user, permission map (2), key, index, "key waiting?", admin nav (2), banner.
    assert len(queries) <= 10, [q["sql"] for q in queries]
    pytest.where_used_page_queries = getattr(pytest, "where_used_page_queries", {})
    pytest.where_used_page_queries[count] = len(queries)
    if len(pytest.where_used_page_queries) == 2:
        assert pytest.where_used_page_queries[5] == pytest.where_used_page_queries[50]


# --- the flow list and detail ----------------------------------------------------------------


def test_flow_list_and_detail_permission_matrix(users, tenant, flows):
    detail_url = reverse("admin:whereused_integrationflow_change", args=[flows[ORDERS].pk])
    for role in ROLE_NAMES:
        client = client_for(users[role])
        listing = client.get(CHANGELIST)
        detail = client.get(detail_url)
        if role == "none":
            assert (listing.status_code, detail.status_code) == (403, 404)
            continue
        assert listing.status_code == 200
        if role == "other_admin":
            assert b"Orders to ERP" not in listing.content
            assert detail.status_code == 404
            continue
        assert b"Orders to ERP" in listing.content and b"Partner exchange" in listing.content
        assert detail.status_code == 200
        html = detail.content.decode()
        assert "To ERP" in html and "Decrypt reply" in html and "any key" in html
        assert 'name="_save"' not in html  # read-only
        may_import = role == "Administrator"
        assert ('id="import-flows-link"' in listing.content.decode()) is may_import, role
        assert (b"restart_selected" in listing.content) is may_import, role


@pytest.mark.parametrize("count", [5, 50])
def test_flow_list_query_count_does_not_grow(users, tenant, count):
    import_all(tenant, *[signer_only_flow(f"com.example.f{n}") for n in range(count)])
    client = client_for(users["Administrator"])
    client.get(CHANGELIST)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(CHANGELIST)
    assert response.status_code == 200 and response.content.count(b"com.example.f") >= count
    pytest.flow_list_queries = getattr(pytest, "flow_list_queries", {})
    pytest.flow_list_queries[count] = len(queries)
    if len(pytest.flow_list_queries) == 2:
        assert pytest.flow_list_queries[5] == pytest.flow_list_queries[50]


# --- import page -----------------------------------------------------------------------------


def test_import_permission_matrix(users, tenant, other_tenant):
    # The administrator comes last: until then nothing may have been imported.
    for role in ("none", "ReadOnly", "IntegrationDeveloper", "other_admin", "Administrator"):
        client = client_for(users[role])
        get = client.get(IMPORT_URL)
        post = client.post(
            IMPORT_URL, {"tenant": tenant.pk, "files": [upload("orders.zip", orders_flow())]}
        )
        if role == "Administrator":
            assert (get.status_code, post.status_code) == (200, 200)
            assert IntegrationFlow.objects.get().tenant == tenant
            continue
        if role == "other_admin":
            # May import into their own tenant only: the form offers it, a forged post is refused.
            assert get.status_code == 200 and b"tenant-b" in get.content
            assert b"tenant-a" not in get.content
        else:
            assert get.status_code == 403, role
        assert post.status_code == 403, role
        assert not IntegrationFlow.objects.exists(), role


def test_import_several_files_reports_each(users, tenant, sap_entry, monkeypatch):
    seen_types = []
    real_import = importing.import_flow_exports

    def spy(tenant, sources, *, actor=None):
        def remember():
            for name, source in sources:
                seen_types.append(type(source))
                yield name, source

        return real_import(tenant, remember(), actor=actor)

    monkeypatch.setattr(importing, "import_flow_exports", spy)
    monkeypatch.setattr(parser, "MAX_ZIP_BYTES", 20_000)
    big = flow_zip("com.example.big", iflw(), extra_members={"x.bin": os.urandom(30_000)})
    assert len(big) > 30_000
    response = client_for(users["Administrator"]).post(
        IMPORT_URL,
        {
            "tenant": tenant.pk,
            "files": [
                upload("orders.zip", orders_flow()),
                upload("notes.txt", b"not a zip"),
                upload("empty.zip", b""),
                upload("big.zip", big),
                upload("partner.zip", partner_flow()),
            ],
        },
    )
    assert response.status_code == 200
    html = response.content.decode()
    results = html.split('id="import-results"', 1)[1].split("</table>", 1)[0]
    assert results.count('class="import-ok"') == 2 and results.count('class="import-failed"') == 3
    assert "not a ZIP file" in results
    # The upload was cut off one byte past the cap on its way to disk, never kept whole.
    assert "ZIP file too large (20001 bytes; the limit is 20000)" in results
    assert "2 of 5 files imported into tenant-a. 3 failed" in html
    assert set(IntegrationFlow.objects.values_list("bundle_id", flat=True)) == {ORDERS, PARTNER}
    # Every upload was on disk (streamed), none held in memory.
    assert seen_types and all(t is TemporaryUploadedFile for t in seen_types)


def test_import_result_lists_the_unset_parameters_per_flow(users, tenant):
    mail = flow_zip(
        "com.example.mail",
        iflw(mail_receiver_with_unset_parameter(parameter="From email address")),
        parameters={},
    )
    response = client_for(users["Administrator"]).post(
        IMPORT_URL,
        {"tenant": tenant.pk, "files": [upload("mail.zip", mail), upload("o.zip", orders_flow())]},
    )
    html = response.content.decode()
    results = html.split('id="import-results"', 1)[1].split("</table>", 1)[0]
    assert results.count('class="import-ok"') == 2
    rows = results.split("<tr class=")[1:]
    assert "<code>{{From email address}}</code>" in rows[0]
    assert "<code>" not in rows[1]  # the orders flow sets every parameter it uses
    flow = IntegrationFlow.objects.get(bundle_id="com.example.mail")
    page = client_for(users["Administrator"]).get(
        reverse("admin:whereused_integrationflow_change", args=[flow.pk])
    )
    assert "{{From email address}}" in page.content.decode()


def test_import_again_replaces(users, tenant, sap_entry):
    client = client_for(users["Administrator"])
    client.post(IMPORT_URL, {"tenant": tenant.pk, "files": [upload("o.zip", orders_flow())]})
    response = client.post(
        IMPORT_URL,
        {"tenant": tenant.pk, "files": [upload("o.zip", orders_flow(with_crm=False))]},
    )
    assert "Imported (replaced)" in response.content.decode()
    assert IntegrationFlow.objects.count() == 1 and KeyUsageRecord.objects.count() == 3


def test_import_form_errors_change_nothing(users, tenant):
    client = client_for(users["Administrator"])
    no_files = client.post(IMPORT_URL, {"tenant": tenant.pk})
    assert no_files.status_code == 200 and b"Choose at least one ZIP file." in no_files.content
    no_tenant = client.post(IMPORT_URL, {"files": [upload("o.zip", orders_flow())]})
    assert b"Choose a tenant." in no_tenant.content
    assert not IntegrationFlow.objects.exists()


def test_import_checks_csrf(users, tenant):
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["Administrator"])
    response = client.post(
        IMPORT_URL, {"tenant": tenant.pk, "files": [upload("o.zip", orders_flow())]}
    )
    assert response.status_code == 403
    assert not IntegrationFlow.objects.exists()
    page = client.get(IMPORT_URL)
    token = page.cookies["csrftoken"].value
    response = client.post(
        IMPORT_URL,
        {
            "tenant": tenant.pk,
            "files": [upload("o.zip", orders_flow())],
            "csrfmiddlewaretoken": token,
        },
    )
    assert response.status_code == 200 and IntegrationFlow.objects.count() == 1


# --- the Restart action ----------------------------------------------------------------------


def test_restart_action_permission_matrix(users, tenant, flows):
    mark_restart_required(tenant, SAP_ALIAS, reason=f"{SAP_ALIAS} activated")
    marked = list(IntegrationFlow.objects.restart_required().values_list("pk", flat=True))
    assert len(marked) == 2
    # Direct POSTs by read roles and another tenant's administrator change nothing.
    for role in ("none", "ReadOnly", "IntegrationDeveloper", "other_admin", "Administrator"):
        response = client_for(users[role]).post(
            CHANGELIST, {"action": "restart_selected", "_selected_action": marked}
        )
        still_marked = IntegrationFlow.objects.restart_required().count()
        if role == "Administrator":
            assert response.status_code == 302 and still_marked == 0
            flow = IntegrationFlow.objects.get(bundle_id=ORDERS)
            assert flow.last_restart_by_label == users[role].username
            continue
        # No role: no page at all; read roles: the action is not offered; the other tenant's
        # administrator: the selection is outside what they see ("no items changed").
        expected = {"none": 403, "other_admin": 302}.get(role, 200)
        assert response.status_code == expected, role
        assert still_marked == 2, role
        assert not IntegrationFlow.objects.filter(last_restart_at__isnull=False).exists()


def test_restart_action_reports_a_failing_runtime(users, tenant, flows, settings):
    settings.WHEREUSED_RESTART_CALLABLE = "tests.renewals.whereused.test_restart.failing_restart"
    mark_restart_required(tenant, SAP_ALIAS, reason="activated")
    client = client_for(users["Administrator"])
    marked = list(IntegrationFlow.objects.restart_required().values_list("pk", flat=True))
    response = client.post(
        CHANGELIST, {"action": "restart_selected", "_selected_action": marked}, follow=True
    )
    texts = [str(message) for message in response.context["messages"]]
    assert any("restart failed: runtime unreachable" in text for text in texts)
    assert IntegrationFlow.objects.restart_required().count() == 2


# --- hooks for other pages -------------------------------------------------------------------


def test_hooks_for_other_pages(tenant, flows, pending, rf):
    context = whereused_admin.where_used_context(tenant, SAP_ALIAS, pending=True)
    summary = context["where_used"]
    assert summary["counts"] == WhereUsedCounts(6, 2, 4, 2)
    assert [flow.bundle_id for flow in summary["flows_to_restart"]] == [ORDERS, PARTNER]
    html = render_to_string("admin/whereused/summary.html", context)
    assert "6 components use sap_cloudintegrationcertificate" in html
    assert whereused_url(tenant.pk, SAP_ALIAS, True) in html
    assert "Orders to ERP, Partner exchange" in html

    buttons = whereused_admin.where_used_buttons(tenant.pk, SAP_ALIAS, pending=True)
    assert [label for label, _url, _css in buttons] == ["Where-used", "Renewal pack"]
    assert all(url.endswith("?pending=1") for _label, url, _css in buttons)

    entry = annotate_usage_counts(KeystoreEntry.objects.filter(alias=SAP_ALIAS)).get()
    cell = whereused_admin.where_used_cell(
        tenant.pk, entry.alias, entry.where_used_uses, entry.where_used_may_use
    )
    assert ">6 use, 2 may use</a>" in cell
    # The New SAP Keys list: the same numbers, in the list's one query.
    from renewals.models import PendingSapKey

    with CaptureQueriesContext(connection) as queries:
        (waiting,) = annotate_usage_counts(PendingSapKey.objects.all())
    assert len(queries) == 1
    assert (waiting.pk, waiting.where_used_uses, waiting.where_used_may_use) == (pending.pk, 6, 2)


def test_restart_action_refilters_the_selection_per_tenant(users, tenant, other_tenant, flows):
    """A reader of tenant A who administers tenant B sees A's flows and is offered the action
    (for B), but a POST naming A's flows changes nothing."""
    from keystore import roles

    mixed = users["ReadOnly"]
    roles.assign_role(mixed, other_tenant, "Administrator")
    mark_restart_required(tenant, SAP_ALIAS, reason="activated")
    import_all(other_tenant, client_cert_flow("com.example.b"))
    mark_restart_required(other_tenant, SAP_ALIAS, reason="activated")
    selected = list(IntegrationFlow.objects.restart_required().values_list("pk", flat=True))
    assert len(selected) == 3
    response = client_for(mixed).post(
        CHANGELIST, {"action": "restart_selected", "_selected_action": selected}, follow=True
    )
    texts = [str(message) for message in response.context["messages"]]
    assert any("2 selected flows are in tenants where you may not restart" in t for t in texts)
    assert set(IntegrationFlow.objects.restart_required().values_list("tenant", flat=True)) == {
        tenant.pk
    }
    assert IntegrationFlow.objects.get(tenant=other_tenant).last_restart_by_label == mixed.username


# --- the Remove action ------------------------------------------------------------------------


def test_remove_action_confirms_then_removes(users, tenant, flows):
    client = client_for(users["Administrator"])
    selected = [flows[ORDERS].pk, flows[PARTNER].pk]
    listing = client.get(CHANGELIST)
    assert b'value="remove_selected"' in listing.content
    confirm = client.post(CHANGELIST, {"action": "remove_selected", "_selected_action": selected})
    assert confirm.status_code == 200
    assert b"will be removed from the where-used index" in confirm.content
    assert b"Orders to ERP" in confirm.content and b"Partner exchange" in confirm.content
    assert IntegrationFlow.objects.filter(pk__in=selected).count() == 2  # nothing yet
    done = client.post(
        CHANGELIST,
        {"action": "remove_selected", "_selected_action": selected, "post": "yes"},
        follow=True,
    )
    texts = [str(message) for message in done.context["messages"]]
    assert any("Orders to ERP removed with its" in text for text in texts)
    assert not IntegrationFlow.objects.filter(pk__in=selected).exists()
    assert not KeyUsageRecord.objects.filter(flow_id__in=selected).exists()
    assert IntegrationFlow.objects.filter(tenant=tenant).count() == len(flows) - 2
    # The same confirmation posted again (a double click) changes nothing and says so.
    again = client.post(
        CHANGELIST,
        {"action": "remove_selected", "_selected_action": selected, "post": "yes"},
        follow=True,
    )
    assert again.status_code == 200
    assert IntegrationFlow.objects.filter(tenant=tenant).count() == len(flows) - 2


def test_remove_action_permission_matrix(users, tenant, flows):
    selected = list(IntegrationFlow.objects.values_list("pk", flat=True))
    # Direct POSTs, confirmed, by read roles and another tenant's administrator change nothing.
    for role in ("none", "ReadOnly", "IntegrationDeveloper", "other_admin"):
        response = client_for(users[role]).post(
            CHANGELIST,
            {"action": "remove_selected", "_selected_action": selected, "post": "yes"},
        )
        expected = {"none": 403, "other_admin": 302}.get(role, 200)
        assert response.status_code == expected, role
        assert IntegrationFlow.objects.count() == len(selected), role
        if role in ("ReadOnly", "IntegrationDeveloper"):
            listing = client_for(users[role]).get(CHANGELIST)
            assert b'value="remove_selected"' not in listing.content
    assert not IntegrationFlow.objects.exclude(pk__in=selected).exists()


def test_remove_action_refilters_the_selection_per_tenant(users, tenant, other_tenant, flows):
    from keystore import roles

    mixed = users["ReadOnly"]
    roles.assign_role(mixed, other_tenant, "Administrator")
    import_all(other_tenant, client_cert_flow("com.example.b"))
    selected = list(IntegrationFlow.objects.values_list("pk", flat=True))
    response = client_for(mixed).post(
        CHANGELIST,
        {"action": "remove_selected", "_selected_action": selected, "post": "yes"},
        follow=True,
    )
    texts = [str(message) for message in response.context["messages"]]
    assert any(f"{len(flows)} selected flows are in tenants where you may not" in t for t in texts)
    assert not IntegrationFlow.objects.filter(tenant=other_tenant).exists()
    assert IntegrationFlow.objects.filter(tenant=tenant).count() == len(flows)
