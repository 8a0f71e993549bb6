"""Renewal plans, step 1 of issue 17: the plan is made with the new key (provision, import,
revert), lists the backends from where-used with usage, flows and status, is rebuilt on demand,
says plainly when no backend (or no flow) is known; backends are marked not affected with a
reason; contacts are remembered per tenant and system; the admin pages and the command."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from keystore.models import AuditEvent
from renewals.activation import activate_pending_key, add_back_to_pending
from renewals.models import SapKeyBackup
from renewals.plans import services
from renewals.plans.models import BackendContact, BackendStatus, PlanState, RenewalPlan
from tests.conftest import client_for
from tests.renewals.conftest import SAP_ALIAS
from tests.renewals.plans.conftest import crm_channel, import_flows

pytestmark = pytest.mark.django_db


def plan_for(pending):
    return RenewalPlan.objects.get(occasion=pending.material_id)


def by_system(plan):
    return {backend.system: backend for backend in plan.backends.all()}


def test_provision_makes_the_plan_with_the_backends_of_where_used(plan):
    assert plan.current_state() == PlanState.WAITING
    assert plan.alias == SAP_ALIAS
    assert plan.fingerprint_sha256 == plan.pending_key().fingerprint_sha256
    backends = by_system(plan)
    assert set(backends) == {"ERP_PROD", "CRM"}
    erp, crm = backends["ERP_PROD"], backends["CRM"]
    assert (erp.address, erp.usage, erp.status) == (
        "https://erp.example:443/sap/bc/srt",
        "uses",
        BackendStatus.TO_INFORM,
    )
    assert crm.usage == "may use"
    assert erp.flows == [
        {
            "bundle_id": "com.example.orders",
            "bundle_name": "com.example.orders",
            "components": ["To ERP (SOAP Receiver)"],
        }
    ]


def test_a_replaced_key_gets_a_new_plan_and_the_old_one_is_marked_replaced(plan, provide):
    newer = provide(plan.tenant, replace=True)
    plan.refresh_from_db()
    assert plan.current_state() == PlanState.REPLACED
    assert plan.pending_key() is None
    assert plan_for(newer).current_state() == PlanState.WAITING


def test_activation_keeps_the_plan_and_revert_makes_a_new_one(plan, admin_user):
    activate_pending_key(plan.tenant, SAP_ALIAS, actor=admin_user)
    plan.refresh_from_db()
    assert plan.current_state() == PlanState.ACTIVATED  # the record stays
    with pytest.raises(services.PlanError, match="is activated; only the plan of a waiting"):
        services.rebuild_plan(plan.tenant, SAP_ALIAS, actor=admin_user)
    backup = SapKeyBackup.objects.get(tenant=plan.tenant, alias=SAP_ALIAS)
    reverted = add_back_to_pending(backup, actor=admin_user)
    again = plan_for(reverted)
    assert again.pk != plan.pk
    plan.refresh_from_db()
    assert plan.state == PlanState.ACTIVATED  # settled by the next plan
    assert set(by_system(again)) == {"ERP_PROD", "CRM"}


def test_refused_provision_makes_no_plan(plan, provide):
    from renewals.activation import PendingKeyExists

    with pytest.raises(PendingKeyExists):
        provide(plan.tenant)  # no replace: refused, and the transaction takes no plan with it
    assert RenewalPlan.objects.count() == 1


def test_rebuild_adds_new_backends_and_keeps_statuses(plan, admin_user):
    erp = by_system(plan)["ERP_PROD"]
    services.mark_not_affected(erp, "ERP uses basic auth since May", actor=admin_user)
    import_flows(
        plan.tenant,
        crm_channel(address="https://hr.example/api", receiver="HR"),
        bundle="com.example.hr",
    )
    rebuilt = services.rebuild_plan(plan.tenant, SAP_ALIAS, actor=admin_user)
    assert rebuilt.pk == plan.pk
    backends = by_system(rebuilt)
    assert set(backends) == {"ERP_PROD", "CRM", "HR"}
    assert backends["ERP_PROD"].status == BackendStatus.NOT_AFFECTED
    assert backends["HR"].status == BackendStatus.TO_INFORM
    assert AuditEvent.objects.filter(detail__startswith="renewal plan: rebuilt").count() == 1


def test_rebuild_refused_for_a_reader_and_changes_nothing(plan, users):
    with pytest.raises(services.PlanError, match="not allowed"):
        services.rebuild_plan(plan.tenant, SAP_ALIAS, actor=users["ReadOnly"])


def test_not_affected_needs_a_reason_and_is_undone(plan, admin_user):
    erp = by_system(plan)["ERP_PROD"]
    with pytest.raises(services.PlanError, match="Say why"):
        services.mark_not_affected(erp, "   ", actor=admin_user)
    erp.refresh_from_db()
    assert erp.status == BackendStatus.TO_INFORM
    services.mark_not_affected(erp, "decommissioned", actor=admin_user)
    erp.refresh_from_db()
    assert (erp.status, erp.status_reason, erp.status_by) == (
        BackendStatus.NOT_AFFECTED,
        "decommissioned",
        "admin_a",
    )
    with pytest.raises(services.PlanError, match="already"):
        services.mark_not_affected(erp, "again", actor=admin_user)
    services.reopen_backend(erp, actor=admin_user)
    erp.refresh_from_db()
    assert (erp.status, erp.status_reason) == (BackendStatus.TO_INFORM, "")


def test_contacts_are_remembered_per_tenant_and_system(plan, admin_user, provide):
    with pytest.raises(services.PlanError, match="not a mail address"):
        services.save_contact(plan.tenant, "ERP_PROD", "Eva", "eva-at-example", actor=admin_user)
    assert not BackendContact.objects.exists()
    services.save_contact(plan.tenant, "ERP_PROD", "Eva Berg", "eva@example.com", actor=admin_user)
    services.save_contact(plan.tenant, "ERP_PROD", "Eva Berg", "eva.berg@example.com")
    assert BackendContact.objects.get().email == "eva.berg@example.com"
    # The next plan of the tenant finds the contact.
    newer = plan_for(provide(plan.tenant, replace=True))
    erp = services.plan_json(newer)["backends"][
        [b.system for b in newer.backends.all()].index("ERP_PROD")
    ]
    assert erp["contact"] == {"name": "Eva Berg", "email": "eva.berg@example.com"}


def test_no_flows_indexed_is_said_plainly(sap_entry, provide):
    plan = plan_for(provide(sap_entry.tenant))
    words = services.nothing_to_do(plan, services.flow_index(plan.tenant))
    assert words.startswith(f"No integration flow of tenant {plan.tenant.slug} is indexed")
    assert "Import the tenant's integration flows first." in words


def test_no_affected_backend_is_said_plainly(sap_entry, provide):
    from tests.renewals import flowfactory as flows

    # A flow that signs with another key only.
    import_flows(
        sap_entry.tenant,
        flows.step("CallActivity_1", "Sign", "PKCS7Signer", {"privateKeyAlias": "other_key"}),
        bundle="com.example.other",
    )
    plan = plan_for(provide(sap_entry.tenant))
    assert not plan.backends.exists()
    words = services.nothing_to_do(plan, services.flow_index(plan.tenant))
    assert words.startswith(
        "No imported integration flow uses or may use this key: no backend needs the new "
        "certificate (1 flow indexed, last imported "
    )


# -- the command ----------------------------------------------------------------------------


def test_command_json_has_exactly_the_fields_of_the_issue(plan, admin_user):
    services.save_contact(plan.tenant, "ERP_PROD", "Eva", "eva@example.com")
    out = StringIO()
    call_command("renewal_plan", SAP_ALIAS, "--tenant", plan.tenant.slug, "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert set(data) == {"alias", "planned_activation", "gate", "backends"}
    assert (data["alias"], data["planned_activation"], data["gate"]) == (SAP_ALIAS, None, "warn")
    erp = next(b for b in data["backends"] if b["system"] == "ERP_PROD")
    assert set(erp) == {
        "system",
        "address",
        "usage",
        "status",
        "contact",
        "confirm_url",
        "probe",
    }
    assert (erp["usage"], erp["status"], erp["contact"]) == (
        "uses",
        "to inform",
        {"name": "Eva", "email": "eva@example.com"},
    )


def test_command_rebuild_and_text(plan):
    import_flows(plan.tenant, crm_channel(receiver="HR"), bundle="com.example.hr")
    out = StringIO()
    call_command("renewal_plan", SAP_ALIAS, "--tenant", plan.tenant.slug, "--rebuild", stdout=out)
    text = out.getvalue()
    assert "Renewal plan of sap_cloudintegrationcertificate" in text
    assert "HR" in text and "may use, to inform, no contact" in text


def test_command_without_a_key_is_one_clear_error(sap_entry):
    with pytest.raises(CommandError, match="No new SAP key is waiting"):
        call_command("renewal_plan", SAP_ALIAS, "--tenant", sap_entry.tenant.slug)


# -- the admin ------------------------------------------------------------------------------


def test_new_sap_key_page_links_to_the_plan_page(plan, users):
    client = client_for(users["ReadOnly"])
    page = client.get(reverse("admin:renewals_pendingsapkey_change", args=[plan.pending_key().pk]))
    url = reverse("admin:plans_renewalplan_for_alias", args=[plan.tenant.pk, SAP_ALIAS])
    assert url in page.content.decode()
    answer = client.get(url)
    assert answer.status_code == 302
    page = client.get(answer["Location"])
    html = page.content.decode()
    assert "ERP_PROD" in html and "https://crm.example:8443/api" in html
    assert "Backends: 0 of 2 settled" in html
    assert "Not affected" not in html  # a reader is offered no change


def test_plan_page_for_another_tenant_is_404(plan, users):
    client = client_for(users["other_admin"])
    assert client.get(reverse("admin:plans_renewalplan_change", args=[plan.pk])).status_code == 404
    url = reverse("admin:plans_renewalplan_for_alias", args=[plan.tenant.pk, SAP_ALIAS])
    assert client.get(url).status_code == 404


def test_admin_marks_not_affected_and_saves_a_contact(plan, admin_user):
    client = client_for(admin_user)
    erp = by_system(plan)["ERP_PROD"]
    url = reverse("admin:plans_renewalplan_backend", args=[plan.pk])
    page = client.post(
        url, {"backend": erp.pk, "action": "not_affected", "reason": ""}, follow=True
    )
    assert "Say why the backend is not affected" in page.content.decode()
    erp.refresh_from_db()
    assert erp.status == BackendStatus.TO_INFORM
    client.post(url, {"backend": erp.pk, "action": "not_affected", "reason": "retired"})
    erp.refresh_from_db()
    assert erp.status == BackendStatus.NOT_AFFECTED
    contact_url = reverse("admin:plans_renewalplan_contact", args=[plan.pk])
    page = client.post(
        contact_url, {"backend": erp.pk, "name": "Eva", "email": "nope"}, follow=True
    )
    assert "is not a mail address" in page.content.decode()
    client.post(contact_url, {"backend": erp.pk, "name": "Eva", "email": "eva@example.com"})
    assert BackendContact.objects.get(system="ERP_PROD").name == "Eva"
    page = client.get(reverse("admin:plans_renewalplan_change", args=[plan.pk]))
    assert "Eva &lt;eva@example.com&gt;" in page.content.decode()


def test_reader_cannot_post_changes(plan, users):
    client = client_for(users["ReadOnly"])
    erp = by_system(plan)["ERP_PROD"]
    url = reverse("admin:plans_renewalplan_backend", args=[plan.pk])
    answer = client.post(url, {"backend": erp.pk, "action": "not_affected", "reason": "x"})
    assert answer.status_code == 403
    erp.refresh_from_db()
    assert erp.status == BackendStatus.TO_INFORM


def test_plan_page_without_flows_links_to_the_flow_import(sap_entry, provide, admin_user):
    plan = plan_for(provide(sap_entry.tenant))
    html = (
        client_for(admin_user)
        .get(reverse("admin:plans_renewalplan_change", args=[plan.pk]))
        .content.decode()
    )
    assert "is indexed, so where-used cannot tell" in html
    assert reverse("admin:whereused_integrationflow_import") in html


def test_rebuild_button(plan, admin_user):
    import_flows(plan.tenant, crm_channel(receiver="HR"), bundle="com.example.hr")
    client = client_for(admin_user)
    page = client.post(
        reverse("admin:plans_renewalplan_rebuild", args=[plan.tenant.pk, SAP_ALIAS]), follow=True
    )
    assert "Rebuilt the renewal plan" in page.content.decode()
    assert "HR" in set(by_system(plan))
